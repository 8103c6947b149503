"""The search's own parts (orchestrator.search) that need no Ray cluster: runs of at most trials_per_run, node resources checked before any work."""

from __future__ import annotations

import pytest


def test_a_long_search_is_split_into_tune_runs_of_at_most_trials_per_run():
    from orchestrator.config import validate_config
    from orchestrator.search import run_name, run_sizes

    assert run_sizes(2000, 500) == [500] * 4
    assert run_sizes(1201, 500) == [500, 500, 201] and run_sizes(16, 500) == [16]
    assert [run_name(i) for i in range(3)] == ["tune", "tune-1", "tune-2"]
    assert validate_config({"name": "t"}).search.trials_per_run == 500
    with pytest.raises(Exception, match="trials_per_run"):
        validate_config({"name": "t", "search": {"trials_per_run": 0}})


def test_a_resume_marks_the_runs_a_killed_driver_left_running_killed(tmp_path):
    """A driver killed outright leaves its trials' runs RUNNING; the resume that opens the
    record marks them KILLED before any trial runs (Tune runs again those its snapshot
    holds, and their runs finish then), so none stays RUNNING for good."""
    from mlflow.tracking import MlflowClient

    from orchestrator.baseline import Baseline
    from orchestrator.config import validate_config
    from orchestrator.search import _record
    from tests.orchestrator.conftest import _result
    from trials.baseline import ModelInfo
    from trials.models import create_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = validate_config({"name": "killed", "tracking": {"uri": uri}, "storage": str(tmp_path / "runs")})
    info = ModelInfo("resnet20", 10, 1, 8)
    base = Baseline(create_model("resnet20", num_classes=10, in_channels=1), {"val_accuracy": 0.9, "macs": 1e7}, info)
    said: list[str] = []
    first, _ = _record(cfg, base, False, said.append)
    first.log_epoch("t0", {"stage0": 0.5}, _result(0.5, 10**6, epoch=1))  # the driver dies mid-trial
    first.log_final("t1", {"stage0": 0.6}, _result(0.8, 2 * 10**6))
    assert said == []
    again, _ = _record(cfg, base, True, said.append)
    assert again.parent_run_id == first.parent_run_id
    status = {
        r.data.tags["prunetune.trial_id"]: r.info.status
        for r in MlflowClient(uri).search_runs([again.experiment_id])
        if "prunetune.trial_id" in r.data.tags
    }
    assert status == {"t0": "KILLED", "t1": "FINISHED"}
    assert len(said) == 1 and said[0].startswith("1 trial run(s)")
