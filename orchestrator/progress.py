"""The driver-side Tune callback: records each trial in MLflow as its results arrive and
prints progress (trials done of total, the best points so far)."""

from __future__ import annotations

from ray.tune import Callback

from orchestrator.tracking import SearchRecord


def format_rows(rows: list[dict], limit: int | None = None) -> str:
    head = f"{'rank':>4}  {'val_acc':>8}  {'MACs (M)':>9}  {'ratio':>6}  {'params':>9}  trial"
    lines = [head]
    for r in rows[:limit]:
        lines.append(
            f"{r['rank']:>4}  {r['val_accuracy']:>8.4f}  {r['macs'] / 1e6:>9.2f}  "
            f"{r['macs_ratio']:>6.3f}  {r['params']:>9}  {r['trial']}"
        )
    return "\n".join(lines)


class TrackingCallback(Callback):
    def __init__(
        self, uri: str | None, experiment: str, parent_run_id: str, total: int, baseline: dict, say=print
    ) -> None:
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.total, self.baseline, self.say = total, baseline, say
        self._record: SearchRecord | None = None
        self.failed = 0

    def __getstate__(self) -> dict:  # Tune pickles callbacks with its state: no client inside
        state = self.__dict__.copy()
        state["_record"], state["say"] = None, None
        return state

    @property
    def record(self) -> SearchRecord:
        if self._record is None:
            self._record = SearchRecord(self.uri, self.experiment, self.parent_run_id)
            self._record.baseline = {"val_accuracy": self.baseline["val_accuracy"], "macs": self.baseline["macs"]}
        return self._record

    def _print(self, text: str) -> None:
        (self.say or print)(text)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        params = dict(trial.config)
        if result.get("trial_failed"):
            self.failed += 1
            self.record.log_failure(trial.trial_id, params, str(result.get("error", "failed")))
            self._print(f"[{self._done()}/{self.total}] trial {trial.trial_id} failed: {result.get('error')}")
        elif result.get("final"):
            self.record.log_final(trial.trial_id, params, result)
            self._progress(trial.trial_id, result)
        else:
            self.record.log_epoch(trial.trial_id, params, result)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed += 1
        message = f"trial errored: {trial.error_file or 'see the Ray logs'}"
        self.record.log_failure(trial.trial_id, dict(trial.config), message)
        self._print(f"[{self._done()}/{self.total}] trial {trial.trial_id} errored (node or worker lost)")

    def _done(self) -> int:
        return len(self.record.finished) + self.failed

    def _progress(self, trial_id: str, result: dict) -> None:
        rows = self.record.rows()
        front = [r for r in rows if r["pareto"]]
        base = self.baseline["val_accuracy"]
        half = [r for r in front if r["macs_ratio"] <= 0.5]
        best_half = f", best at <=0.5x MACs {max(r['val_accuracy'] for r in half):.4f}" if half else ""
        self._print(
            f"[{self._done()}/{self.total}] trial {trial_id}: val_acc {result['val_accuracy']:.4f} "
            f"at {result['macs_ratio']:.3f}x MACs | front {len(front)} points (baseline {base:.4f}){best_half}"
        )
