"""The multi-fidelity screen (orchestrator.screen): the promising go on to the fine-tune, the rest stop after their adaptive-BN score."""

from __future__ import annotations


def test_the_screen_keeps_the_promising_and_stops_the_rest():
    import random

    from ray.tune.schedulers import TrialScheduler

    from orchestrator.screen import ScreenScheduler

    sched = ScreenScheduler(keep=0.25)
    assert sched.decide("t0", 0.5) == TrialScheduler.CONTINUE  # nothing to compare with yet
    assert sched.decide("t1", 0.4) == TrialScheduler.STOP  # below everything before it
    assert sched.decide("t2", 0.9) == TrialScheduler.CONTINUE  # above everything before it
    assert sched.decide("t1", 0.0) == TrialScheduler.CONTINUE  # a retried trial keeps its decision
    rng = random.Random(0)
    sched = ScreenScheduler(keep=0.25)
    went_on = sum(sched.decide(f"r{i}", rng.random()) == TrialScheduler.CONTINUE for i in range(400))
    assert 0.2 * 400 <= went_on <= 0.33 * 400  # about the share it keeps
    trial = type("T", (), {"trial_id": "x"})()
    assert sched.on_trial_result(None, trial, {"val_accuracy": -1.0, "epoch": 1}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, trial, {"val_accuracy": -1.0, "fidelity": 0}) == TrialScheduler.STOP
