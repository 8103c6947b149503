"""Many cheap candidates, few expensive ones: the screening rung of a budget search.

A trial of a screened search reports once before its fine-tune: its val accuracy after
the cut and adaptive BN (EagleEye's score, seconds), as epoch 0 with ``fidelity: 0``.
``ScreenScheduler`` lets it go on to the fine-tune only when that score is among the
best ``keep`` share of the scores reported before it (the first rung of ASHA, Li et al.
2020, with the cutoff computed the same way); the others stop there, screened out. In
budget mode every candidate has the same MACs, so their scores compare directly.
"""

from __future__ import annotations

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

SCREEN = "fidelity"  # a trial's report carries fidelity 0 (adaptive BN) before its fine-tune


class ScreenScheduler(FIFOScheduler):
    def __init__(self, keep: float, metric: str = "val_accuracy") -> None:
        super().__init__()
        self.keep, self.score_key = keep, metric
        self.scores: dict[str, float] = {}  # trial id -> its screening score

    def cutoff(self) -> float | None:
        """The score a new candidate must reach: the (1 - keep) quantile of those before it."""
        if not self.scores:
            return None
        return float(np.nanpercentile(list(self.scores.values()), (1 - self.keep) * 100))

    def decide(self, trial_id: str, score: float) -> str:
        if trial_id in self.scores:  # a retried trial keeps the decision it had
            return TrialScheduler.CONTINUE
        cutoff = self.cutoff()
        self.scores[trial_id] = score
        return TrialScheduler.STOP if cutoff is not None and score < cutoff else TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(SCREEN) == 0 and self.score_key in result:
            return self.decide(trial.trial_id, float(result[self.score_key]))
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"ScreenScheduler: {len(self.scores)} screened, keep {self.keep:.0%}"
