"""The searcher (orchestrator/searcher.py) on real Optuna, driven as Tune drives it."""

from __future__ import annotations

import optuna

from orchestrator.searcher import PrunetuneOptunaSearch
from orchestrator.space import REUSE


def _searcher(points: list[dict]) -> PrunetuneOptunaSearch:
    space = {n: optuna.distributions.FloatDistribution(0.25, 1.0, step=0.05) for n in ("stage0", "stage1")}
    return PrunetuneOptunaSearch(space=space, metric="val_accuracy", mode="max", points_to_evaluate=points)


def _final(acc: float) -> dict:
    return {"val_accuracy": acc, "macs": 5e6, "macs_ratio": 0.5, "spec_json": "{}", "trial_seconds": 3.0, "final": 1}


def test_a_configuration_proposed_again_gets_the_stored_result_instead_of_a_fine_tune():
    a, b = {"stage0": 0.5, "stage1": 0.7}, {"stage0": 0.6, "stage1": 0.7}
    searcher = _searcher([a, b, a])  # warm starts repeat; samplers do too
    first = searcher.suggest("t1")
    assert first == a and REUSE not in first
    searcher.on_trial_complete("t1", _final(0.91))
    second = searcher.suggest("t2")
    assert second == b and REUSE not in second
    searcher.on_trial_complete("t2", {"trial_failed": 1, "final": 1})  # a failure is never reused
    third = searcher.suggest("t3")
    stored = third[REUSE]
    assert {k: third[k] for k in a} == a and stored["reused_from"] == "t1"
    assert stored["val_accuracy"] == 0.91 and stored["trial_seconds"] == 0.0 and "final" not in stored
    searcher.on_trial_complete("t3", {**stored, "final": 1})  # the repeat's report: it stays t1's
    assert searcher._stored()[tuple(sorted(a.items()))]["reused_from"] == "t1"
    assert len(searcher._ot_study.trials) == 3  # Optuna still sees every trial, the repeat with t1's value
