"""Start-up noise held back unless --verbose (orchestrator.noise)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_start_up_noise_is_held_back_unless_verbose(tmp_path):
    """A first command on a new store: MLflow's database INFO lines only with --verbose."""
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "prunetune")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}  # as a new shell has it
    outs = {}
    for flag in ([], ["--verbose"]):
        uri = f"sqlite:///{tmp_path}/m{len(flag)}.db"
        done = subprocess.run(
            [cli, "pareto", "none", "--tracking-uri", uri, *flag], capture_output=True, text=True, env=env
        )
        assert done.returncode == 2 and "experiment 'none' not found" in done.stderr
        outs[bool(flag)] = done.stderr
    assert "INFO mlflow" not in outs[False] and "INFO mlflow" in outs[True]


@pytest.mark.parametrize("verbose", [False, True])
def test_optunas_new_study_line_only_with_verbose(verbose):
    """Importing Optuna resets its logger to INFO after the CLI quieted it; the searcher sets
    it back where it makes the study, so a quickstart's stderr does not end with "A new
    study created". A quiet call followed by a verbose one in the same process is not held back."""
    code = (
        "from orchestrator.cli import quiet\n"
        "quiet(False)\n"  # an earlier quiet command in the same process
        f"quiet({verbose})\n"
        "import optuna\n"
        "from orchestrator.searcher import PrunetuneOptunaSearch\n"
        "space = {'a': optuna.distributions.FloatDistribution(0.3, 1.0)}\n"
        "PrunetuneOptunaSearch(space=space, metric='val_accuracy', mode='max')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("A new study created" in done.stderr) is verbose
