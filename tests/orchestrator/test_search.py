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
