"""The driver-side Tune callback: records each trial in MLflow as its results arrive and
prints progress (trials done of total, the best points so far).

MLflow writes go through a queue that a background thread writes in order, so Tune's
event loop (which starts the next trial) never waits on the tracking server. When the
server cannot be reached, writes wait in the queue and are retried every few seconds (an
exception escaping a Tune callback would end the whole search). ``drain`` retries at the
end and, if the server is still gone, saves what is left to a JSON file, so no result
is lost.

A search of thousands of trials keeps thousands of Tune trial objects alive in the driver,
and each of Python's full garbage collections walks all of them: the per-trial cost grows
with the number of trials. Every ``freeze_every`` finished trials the callback collects
once and moves what survives into the permanent generation (``gc.freeze``), so later
collections walk only what is new; ``on_experiment_end`` unfreezes it.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections import deque
from pathlib import Path

from ray.tune import Callback

from orchestrator.pareto import Front
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
        self,
        uri: str | None,
        experiment: str,
        parent_run_id: str,
        total: int,
        baseline: dict,
        spill: Path,
        say=print,
        drain_timeout: float = 300.0,
        freeze_every: int = 200,
    ) -> None:
        self.spill, self.drain_timeout, self.freeze_every = spill, drain_timeout, freeze_every
        self.frozen = 0  # how many times the driver's heap was frozen
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.total, self.baseline, self.say = total, baseline, say
        self._record: SearchRecord | None = None
        self.pending: deque = deque()  # (SearchRecord method, args) not yet written
        self.done: dict[str, dict] = {}  # trial id -> final row (for progress; MLflow-independent)
        self.failed: set[str] = set()
        self.front = Front()  # of the finished trials, for the progress line
        self.write_seconds = 0.0  # time the writer spent on MLflow calls
        self._outage_since: float | None = None
        self._init_writer()

    def _init_writer(self) -> None:
        self._lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:  # Tune pickles callbacks with its state: no client, no thread
        state = self.__dict__.copy()
        if self._lock is not None:
            with self._lock:  # the writer pops from the queue
                state["pending"] = deque(self.pending)
        for k in ("_record", "say", "_lock", "_wake", "_thread"):
            state[k] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_writer()

    def _print(self, text: str) -> None:
        (self.say or print)(text)

    # -- buffered MLflow writes ---------------------------------------------------------
    def _write(self, op: str, *args) -> None:
        self.pending.append((op, args))
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._writer, name="prunetune-mlflow", daemon=True)
            self._thread.start()
        self._wake.set()

    def _writer(self) -> None:
        """Write queued results as they come; while MLflow is down, retry every 2 s."""
        while not self._stop:
            self._wake.wait(timeout=2.0)
            self._wake.clear()
            if self.pending and not self.flush():
                time.sleep(2.0)

    def flush(self) -> bool:
        """Replay queued writes in order; False (and the queue kept) while MLflow is down."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        while self.pending:
            op, args = self.pending[0]
            t0, c0 = time.perf_counter(), time.thread_time()
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
            finally:
                self._timed(op, args, time.perf_counter() - t0, time.thread_time() - c0)
            self.pending.popleft()
        if self._outage_since is not None:
            self._print(f"MLflow reachable again after {time.time() - self._outage_since:.0f} s; buffer written")
            self._outage_since = None
        return True

    def _timed(self, op: str, args: tuple, seconds: float, cpu_seconds: float) -> None:
        """Called after each MLflow write with its wall time and the writer thread's CPU time."""
        self.write_seconds += seconds

    def drain(self, timeout: float, spill: Path) -> bool:
        """At the end: retry for up to ``timeout`` seconds, then save the rest to ``spill``."""
        deadline = time.time() + timeout
        if self._thread is not None:  # the writer stops after its current write
            self._stop = True
            self._wake.set()
            self._thread.join(timeout)
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
            self.front.add(trial.trial_id, row["val_accuracy"], row["macs"])
            if not result.get("replayed"):  # a replayed trial's child run is already complete
                self._write("log_final", trial.trial_id, params, dict(result))
            self._progress(trial.trial_id, result)
            if self.freeze_every and len(self.done) % self.freeze_every == 0:
                gc.collect()
                gc.freeze()
                self.frozen += 1
        else:
            self._write("log_epoch", trial.trial_id, params, dict(result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed.add(trial.trial_id)
        message = f"trial errored: {trial.error_file or 'see the Ray logs'}"
        self._write("log_failure", trial.trial_id, dict(trial.config), message)
        self._print(f"[{self._count()}/{self.total}] trial {trial.trial_id} errored (worker or node lost)")

    def on_experiment_end(self, trials, **info) -> None:
        self.drain(self.drain_timeout, self.spill)
        self.thaw()

    def thaw(self) -> None:
        """Let the driver collect the search's objects again (after the search, or when it
        was cut short)."""
        if self.frozen:
            gc.unfreeze()

    def _count(self) -> int:
        return len(self.done) + len(self.failed)

    def _progress(self, trial_id: str, result: dict) -> None:
        base = self.baseline["val_accuracy"]
        best = self.front.best_within(0.5 * self.baseline["macs"])
        best_half = f", best at <=0.5x MACs {self.done[best]['val_accuracy']:.4f}" if best else ""
        self._print(
            f"[{self._count()}/{self.total}] trial {trial_id}: val_acc {result['val_accuracy']:.4f} "
            f"at {result['macs_ratio']:.3f}x MACs | front {len(self.front)} points (baseline {base:.4f}){best_half}"
        )
