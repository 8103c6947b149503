from __future__ import annotations

import math

import optuna

from orchestrator.gaps import FrontFillSampler
from orchestrator.pareto import hypervolume
from orchestrator.space import SPREAD, TARGET

SPACE = {
    "a": optuna.distributions.FloatDistribution(0.25, 1.0, step=0.05),
    "b": optuna.distributions.FloatDistribution(0.25, 1.0, step=0.05),
    SPREAD: optuna.distributions.FloatDistribution(0.0, 1.0, step=0.05),
    TARGET: optuna.distributions.FloatDistribution(0.06, 1.0, step=0.01),
}


def accuracy(target: float) -> float:
    return 0.9 - 0.8 * math.exp(-12 * target)  # steep at the cheap end, flat above a third


def _search(share: float, n: int, seed: int = 0) -> optuna.Study:
    base = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=FrontFillSampler(base, share, low=0.06))
    for t in (0.06, 0.48, 0.9):  # the starting points: a sweep of 3
        study.enqueue_trial({"a": 0.5, "b": 0.5, SPREAD: 0.0, TARGET: t})
    for _ in range(n):
        trial = study.ask(SPACE)
        target = trial.params[TARGET]
        study.tell(trial, [accuracy(target), target])
    return study


def test_a_fill_trial_takes_the_middle_of_the_widest_gap_with_the_cheaper_neighbours_shape():
    sampler = FrontFillSampler(optuna.samplers.RandomSampler(seed=0), 1.0, low=0.06)
    front = [(0.06, 0.5), (0.2, 0.8), (0.9, 0.85)]  # (macs, accuracy)
    # areas: 0.06 to 0.2: 0.3 * 0.14 = 0.042; 0.2 to 0.9: 0.05 * 0.7 = 0.035
    assert sampler.widest_gap(front, []) == (0, 0.13)
    # a running trial at 0.12 halves the first gap: the second is now the widest
    assert sampler.widest_gap(front, [0.12]) == (1, 0.55)
    # below the cheapest point, down to low
    assert sampler.widest_gap([(0.3, 0.8), (0.35, 0.81)], []) == (0, 0.18)
    assert sampler.widest_gap([(0.06, 0.5), (0.07, 0.8)], []) is None  # nothing between: the sampler's turn

    study = _search(1.0, 6)
    trials = study.trials
    assert [t.params[TARGET] for t in trials[:3]] == [0.06, 0.48, 0.9]  # enqueued points are left alone
    filled = trials[3:]
    assert all(t.system_attrs.get("fill_gap") for t in filled)
    assert filled[0].params[TARGET] == 0.27  # the steep half first
    assert all(t.params[SPREAD] == 0.0 and t.params["a"] == 0.5 for t in filled)  # the neighbours' shape
    assert [t.params[TARGET] for t in filled] == [0.27, 0.16, 0.11]  # where accuracy climbs, halving as it goes


def test_filling_beats_the_wrapped_sampler_and_an_even_sweep_on_a_steep_front_and_shares_the_trials():
    def hv(study: optuna.Study) -> float:
        return hypervolume([(t.values[0], t.values[1]) for t in study.trials], (0.1, 1.0))

    filled = hv(_search(1.0, 9))
    drawn = [hv(_search(0.0, 9, seed)) for seed in range(5)]
    even = hypervolume([(accuracy(0.06 + i * 0.84 / 11), 0.06 + i * 0.84 / 11) for i in range(12)], (0.1, 1.0))
    assert filled > max(drawn) and filled > even, (filled, drawn, even)

    half = _search(0.5, 11).trials[3:]  # 8 sampled after the 3 starting points
    assert sum(bool(t.system_attrs.get("fill_gap")) for t in half) == 4  # every other sampled trial


def test_a_failed_fill_target_is_not_proposed_again():
    study = _search(1.0, 4)  # the 3 starting points and one fill trial, at 0.27
    trial = study.ask(SPACE)
    first = trial.params[TARGET]
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # e.g. its loss went NaN
    again = study.ask(SPACE)
    assert again.params[TARGET] != first and study.trials[-1].system_attrs.get("fill_gap"), (first, again.params)


def test_a_fill_target_whose_trial_fell_off_the_front_is_not_proposed_again():
    study = _search(1.0, 3)  # the 3 starting points
    trial = study.ask(SPACE)
    first = trial.params[TARGET]
    study.tell(trial, [0.4, first])  # below the cheaper neighbour: dominated, off the front
    again = study.ask(SPACE)
    assert again.params[TARGET] != first and study.trials[-1].system_attrs.get("fill_gap"), (first, again.params)
