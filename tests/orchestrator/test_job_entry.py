"""A submitted job's entry point (orchestrator.job_entry): it runs prunetune from a copy of
its own, so Ray removing the job's working_dir mid-run takes nothing away."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_job_runs_the_cli_from_its_own_copy_of_the_packages(tmp_path):
    code = (
        "import sys, runpy; sys.argv = ['job_entry', 'inspect', 'resnet20', '--in-channels', '1'];"
        "runpy.run_module('orchestrator.job_entry', run_name='__main__')"
    )
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "12 channel groups" in proc.stdout
    (home,) = tmp_path.glob("prunetune-job-run-*")
    assert {p.name for p in home.iterdir()} >= {"orchestrator", "trials", "cluster"}
    assert list((home / "trials" / "assets").iterdir())  # the data shipped with the package came along
    assert (home / "orchestrator" / "cli.py").read_text() == (ROOT / "orchestrator" / "cli.py").read_text()
