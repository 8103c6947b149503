"""The driver-side Tune callback: records each trial in MLflow as its results arrive and
prints progress (trials done of total, the best points so far).

MLflow writes go through a queue: when the tracking server cannot be reached, they wait
and are replayed in order at the next event (an exception escaping a Tune callback
would end the whole search). ``drain`` retries at the end and, if the server is still
gone, saves what is left to a JSON file, so no result is lost.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

from ray.tune import Callback

from orchestrator.tracking import SearchRecord, front_rows


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
        self,
        uri: str | None,
        experiment: str,
        parent_run_id: str,
        total: int,
        baseline: dict,
        spill: Path,
        say=print,
        drain_timeout: float = 300.0,
    ) -> None:
        self.spill, self.drain_timeout = spill, drain_timeout
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.total, self.baseline, self.say = total, baseline, say
        self._record: SearchRecord | None = None
        self.pending: deque = deque()  # (SearchRecord method, args) not yet written
        self.done: dict[str, dict] = {}  # trial id -> final row (for progress; MLflow-independent)
        self.failed: set[str] = set()
        self._outage_since: float | None = None

    def __getstate__(self) -> dict:  # Tune pickles callbacks with its state: no client inside
        state = self.__dict__.copy()
        state["_record"], state["say"] = None, None
        return state

    def _print(self, text: str) -> None:
        (self.say or print)(text)

    # -- buffered MLflow writes ---------------------------------------------------------
    def _write(self, op: str, *args) -> None:
        self.pending.append((op, args))
        self.flush()

    def flush(self) -> bool:
        """Replay queued writes in order; False (and the queue kept) while MLflow is down."""
        while self.pending:
            op, args = self.pending[0]
            try:
                if self._record is None:
                    self._record = SearchRecord(self.uri, self.experiment, self.parent_run_id)
                    self._record.baseline = {k: self.baseline[k] for k in ("val_accuracy", "macs")}
                getattr(self._record, op)(*args)
            except Exception as exc:  # noqa: BLE001 - any tracking failure: keep the write, retry later
                if self._outage_since is None:
                    self._outage_since = time.time()
                    self._print(f"MLflow unreachable ({type(exc).__name__}); buffering results and retrying")
                return False
            self.pending.popleft()
        if self._outage_since is not None:
            self._print(f"MLflow reachable again after {time.time() - self._outage_since:.0f} s; buffer written")
            self._outage_since = None
        return True

    def drain(self, timeout: float, spill: Path) -> bool:
        """At the end: retry for up to ``timeout`` seconds, then save the rest to ``spill``."""
        deadline = time.time() + timeout
        while not self.flush() and time.time() < deadline:
            time.sleep(2.0)
        if self.pending:
            spill.write_text(json.dumps([{"op": op, "args": args} for op, args in self.pending], default=str))
            self._print(f"MLflow still unreachable: {len(self.pending)} writes saved to {spill}")
            return False
        return True

    # -- Tune events ----------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        params = dict(trial.config)
        if result.get("trial_failed"):
            self.failed.add(trial.trial_id)
            self._write("log_failure", trial.trial_id, params, str(result.get("error", "failed")))
            self._print(f"[{self._count()}/{self.total}] trial {trial.trial_id} failed: {result.get('error')}")
        elif result.get("final"):
            row = {k: result[k] for k in ("val_accuracy", "macs", "macs_ratio", "params")}
            self.done[trial.trial_id] = {**row, "trial": trial.trial_id, "run_id": ""}
            if not result.get("replayed"):  # a replayed trial's child run is already complete
                self._write("log_final", trial.trial_id, params, dict(result))
            self._progress(trial.trial_id, result)
        else:
            self._write("log_epoch", trial.trial_id, params, dict(result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed.add(trial.trial_id)
        message = f"trial errored: {trial.error_file or 'see the Ray logs'}"
        self._write("log_failure", trial.trial_id, dict(trial.config), message)
        self._print(f"[{self._count()}/{self.total}] trial {trial.trial_id} errored (worker or node lost)")

    def on_experiment_end(self, trials, **info) -> None:
        self.drain(self.drain_timeout, self.spill)

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.pending and iteration % 20 == 0:  # keep retrying during quiet stretches
            self.flush()

    def _count(self) -> int:
        return len(self.done) + len(self.failed)

    def _progress(self, trial_id: str, result: dict) -> None:
        front = [r for r in front_rows(list(self.done.values())) if r["pareto"]]
        base = self.baseline["val_accuracy"]
        half = [r for r in front if r["macs_ratio"] <= 0.5]
        best_half = f", best at <=0.5x MACs {max(r['val_accuracy'] for r in half):.4f}" if half else ""
        self._print(
            f"[{self._count()}/{self.total}] trial {trial_id}: val_acc {result['val_accuracy']:.4f} "
            f"at {result['macs_ratio']:.3f}x MACs | front {len(front)} points (baseline {base:.4f}){best_half}"
        )
