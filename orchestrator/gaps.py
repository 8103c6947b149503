"""search.fill: trials that fill the front where it is thinnest.

A front's hypervolume, and what a user can read off it, is lost where two neighbouring
points are far apart in MACs *and* in accuracy: there the staircase hides the most. On
Fashion-MNIST (bench/front_fmnist.py) that is the cheap end, where accuracy climbs
steeply, so an evenly spaced sweep leaves most of its error there, and a sampler's
draws cluster where they please. A fill trial takes the neighbouring front points with
the largest gap (accuracy difference times MACs difference; running trials' targets split
gaps they fall in), and runs at the middle of it with the shape of the cheaper neighbour
(its per-layer ratios and spread, scaled onto the new target). The other trials are the
wrapped sampler's own (``share`` of the sampled trials fill; enqueued starting points
are neither).
"""

from __future__ import annotations

import statistics

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from orchestrator.pareto import pareto_front
from orchestrator.space import TARGET

PLAN = "fill_gap"  # a fill trial's Optuna system attribute: the gap it fills


def _enqueued(trial: FrozenTrial) -> bool:
    return "fixed_params" in trial.system_attrs


class FrontFillSampler(optuna.samplers.BaseSampler):
    def __init__(self, base: optuna.samplers.BaseSampler, share: float, low: float, step: float = 0.01):
        self.base, self.share, self.low, self.step = base, share, low, step
        self._plans: dict[int, dict | None] = {}

    # -- the wrapped sampler's, unless this trial fills ------------------------------
    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space) -> dict:
        plan = self._plan(study, trial)
        if plan is None:
            return self.base.sample_relative(study, trial, search_space)
        return {k: v for k, v in plan.items() if k in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution):
        plan = self._plan(study, trial)
        if plan is not None and param_name in plan:
            return plan[param_name]
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._plans.pop(trial.number, None)
        self.base.after_trial(study, trial, state, values)

    # -- the fill ---------------------------------------------------------------------
    def _plan(self, study, trial: FrozenTrial) -> dict | None:
        if trial.number not in self._plans:
            self._plans[trial.number] = self._make_plan(study, trial)
        return self._plans[trial.number]

    def _make_plan(self, study, trial: FrozenTrial) -> dict | None:
        if _enqueued(trial) or self.share <= 0:
            return None
        trials = study.get_trials(deepcopy=False)
        k = sum(1 for t in trials if t.number < trial.number and not _enqueued(t))  # sampled before this one
        if int((k + 1) * self.share) == int(k * self.share):
            return None  # the wrapped sampler's turn
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values and TARGET in t.params]
        if len(done) < 2:
            return None
        front = [done[i] for i in pareto_front([(t.values[0], t.values[1]) for t in done])]
        # the cost may be counted (MACs), not a fraction of the baseline's: every trial was
        # scaled onto its target, so cost over target is the baseline's count
        scale = statistics.median(t.values[1] / float(t.params[TARGET]) for t in done)
        # every other trial's target splits the gap it falls in: a running one's, and a
        # finished one's that fell off the front or failed (else its gap, still the
        # widest, would have the same target proposed again and again)
        on_front = {t.number for t in front}
        pending = sorted(
            float(t.params[TARGET])
            for t in trials
            if t.number != trial.number and t.number not in on_front and TARGET in t.params
        )
        gap = self.widest_gap([(t.values[1] / scale, t.values[0]) for t in front], pending)
        if gap is None:
            return None
        index, target = gap
        shape = front[index].params
        plan = {**shape, TARGET: target}
        study._storage.set_trial_system_attr(trial._trial_id, PLAN, {"target": target, "from": front[index].number})
        return plan

    def widest_gap(self, front: list[tuple[float, float]], pending: list[float]) -> tuple[int, float] | None:
        """Among the intervals between neighbouring front points ``(macs, accuracy)`` (MACs
        ascending), and below the cheapest down to ``low``, the one with the largest
        accuracy difference times MACs difference, once running trials' targets have split
        the intervals they fall in; its middle, snapped to ``step``, and the index of the
        front point whose shape fills it (the cheaper end; the cheapest below it)."""
        best: tuple[float, int, float] | None = None
        ends = [(self.low, None)] + [(x, i) for i, (x, _) in enumerate(front)]
        for (x0, i0), (x1, i1) in zip(ends, ends[1:]):
            y1 = front[i1][1]
            y0 = front[i0][1] if i0 is not None else y1 / 2  # below the cheapest: half its accuracy, a guess
            cuts = [x0] + [p for p in pending if x0 < p < x1] + [x1]
            widest = max(zip(cuts, cuts[1:]), key=lambda c: c[1] - c[0])
            area = (y1 - y0) * (widest[1] - widest[0])
            middle = round(round((widest[0] + widest[1]) / 2 / self.step) * self.step, 6)
            if area > 0 and widest[0] < middle < widest[1] and (best is None or area > best[0]):
                best = (area, i0 if i0 is not None else i1, middle)
        return None if best is None else (best[1], best[2])
