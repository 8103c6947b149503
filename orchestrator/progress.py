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
import time
from pathlib import Path

from ray.tune import Callback

from orchestrator import faults
from orchestrator.axis import ROW_EXTRAS, axis, baseline_cost, has_latency
from orchestrator.front_table import BASELINE_KEYS
from orchestrator.pareto import Front
from orchestrator.tracking import SearchRecord
from orchestrator.writer import BufferedWriter, Spill
from trials.train import duration


def trial_params(config: dict) -> dict:
    """A trial's sampled values, as its run's params: the searcher's own keys (``_reuse``:
    a stored result; ``_fill``: whose shape a fill trial took) are not params."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def format_rows(rows: list[dict], limit: int | None = None) -> str:
    """A table of ranked rows; its ``run`` column (a run-id prefix) and its ``trial``
    column are both ids ``prunetune promote`` takes."""
    lat = has_latency(rows)  # a latency search: measured ms and ratio beside MACs
    sd = any("val_accuracy_std" in r for r in rows)  # search.reevaluate: val_acc is a mean, with its sd
    head = (
        f"{'rank':>4}  {'val_acc':>8}  "
        + (f"{'sd':>6}  " if sd else "")
        + f"{'MACs (M)':>9}  {'ratio':>6}  {'params':>9}  "
    )
    head += f"{'lat (ms)':>9}  {'ratio':>6}  " if lat else ""
    vs = any("vs_uniform" in r or r.get("uniform") for r in rows)  # reevaluate.uniform: paired, in points
    head += f"{'vs uniform':>13}  " if vs else ""
    lines = [head + f"{'run':<8}  trial"]
    for r in rows[:limit]:
        run = (r.get("run_id") or "-")[:8]
        line = f"{r['rank']:>4}  {r['val_accuracy']:>8.4f}  "
        if sd:
            line += f"{r['val_accuracy_std']:>6.4f}  " if "val_accuracy_std" in r else f"{'-':>6}  "
        line += f"{r['macs'] / 1e6:>9.2f}  {r['macs_ratio']:>6.3f}  {r['params']:>9}  "
        if lat:
            ms = r.get("latency_ms")
            line += f"{'-' if ms is None else f'{ms:.3f}':>9}  {r.get('latency_ratio', float('nan')):>6.3f}  "
        if vs:
            line += f"{_vs_uniform(r):>13}  "
        lines.append(line + f"{run:<8}  {r['trial']}")
    return "\n".join(lines)


def _vs_uniform(row: dict) -> str:
    """The paired difference against the uniform cut at the row's cost, in points (``-``:
    not compared; ``uniform``: the row is the uniform cut)."""
    if "vs_uniform" in row:
        return f"{100 * row['vs_uniform']:+.2f}±{100 * row['vs_uniform_std']:.2f}"
    return "uniform" if row.get("uniform") else "-"


# Set by the driver before Tune restores a run's snapshot (which holds the callback as it
# was pickled when the run started): what the restored callback takes from this process
# rather than from the snapshot (the tracking URI a --resume may change, the printer).
RESTORING: dict = {}


class TrackingCallback(Callback):
    def __init__(
        self,
        uri: str | None,
        experiment: str,
        parent_run_id: str,
        total: int,
        baseline: dict,
        spill: Path,
        *,
        say=print,
        drain_timeout: float = 300.0,
        freeze_every: int = 200,
        objective: str = "macs",
    ) -> None:
        self.objective = objective  # what the front ranks cost on (orchestrator.axis)
        self.spill, self.drain_timeout, self.freeze_every = Path(spill), drain_timeout, freeze_every
        self.frozen = 0  # how many times the driver's heap was frozen
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.total, self.baseline, self.say = total, baseline, say
        self.done: dict[str, dict] = {}  # trial id -> final row (for progress; MLflow-independent)
        self.failed: set[str] = set()
        self.screened: set[str] = set()  # stopped by search.screen before their fine-tune
        self.retries: dict[str, int] = {}  # trial id -> times Tune restarted it
        self.front = Front()  # of the finished trials, for the progress line
        self.write_seconds = 0.0  # time the writer spent on MLflow calls
        self._started: float | None = None  # when Tune started the first trial (for elapsed / ETA)
        self._seeded = 0  # trials done before this driver (a resume)
        self.fault = faults.driver_fault()
        self.writer = BufferedWriter(
            self._open_record,
            Spill(self.spill, experiment=experiment, parent_run_id=parent_run_id),
            say=self._print,
            on_write=self._timed,
        )

    def __setstate__(self, state: dict) -> None:
        """Tune restores its callbacks from the run's snapshot on --resume: what belongs to
        the process (the writer's thread, an injected fault) comes from this one."""
        self.__dict__.update(state)
        self.fault = faults.driver_fault()
        for key, value in RESTORING.items():  # where this driver records: --resume may change it
            if key != "finished":
                setattr(self, key, value)
        self._merge_finished()
        self._started, self._seeded = None, len(self.done)  # elapsed and ETA: this driver's share
        self.writer.say, self.writer.on_write, self.writer.open_target = self._print, self._timed, self._open_record

    def get_state(self) -> dict:
        """What Tune snapshots with the run (public Callback API): the trials done, so a
        resumed search's count and front go on from them."""
        return {
            "done": dict(self.done),
            "failed": sorted(self.failed),
            "screened": sorted(self.screened),
            "retries": dict(self.retries),
        }

    def set_state(self, state: dict) -> None:
        self.done, self.failed = {}, set(state.get("failed", []))
        self.screened = set(state.get("screened", []))
        self.retries = dict(state.get("retries", {}))
        self.front = Front()
        self.seed(state.get("done", {}))
        self._merge_finished()
        self._seeded = self._count()

    def _merge_finished(self) -> None:
        """What MLflow holds as finished counts too: a driver killed hard (SIGKILL, a lost
        head) may have written trials that its last snapshot of this state does not hold."""
        for tid, row in RESTORING.get("finished", {}).items():
            if tid not in self.done:
                self.done[tid] = row
                self._add(tid, row)

    def _open_record(self) -> SearchRecord:
        record = SearchRecord(self.uri, self.experiment, self.parent_run_id, self._objective)
        record.baseline = {k: self.baseline[k] for k in BASELINE_KEYS if k in self.baseline}
        return record

    @property
    def _objective(self) -> str:
        return getattr(self, "objective", "macs")  # a snapshot from before objectives: MACs

    def _add(self, tid: str, row: dict) -> None:
        key = axis(self._objective).key
        if row.get(key) is not None:
            self.front.add(tid, row["val_accuracy"], row[key])

    def _print(self, text: str) -> None:
        (self.say or print)(text)

    def seed(self, finished: dict[str, dict]) -> None:
        """A resumed search: count and rank the trials MLflow already holds as finished."""
        self._seeded = len(finished)
        for tid, row in finished.items():
            self.done[tid] = row
            self._add(tid, row)

    # -- buffered MLflow writes (orchestrator.writer) -------------------------------------
    @property
    def pending(self):
        return self.writer.pending

    def _write(self, op: str, *args) -> None:
        self.writer.put(op, *args)

    def flush(self) -> bool:
        return self.writer.flush()

    def _timed(self, op: str, args: tuple, seconds: float, cpu_seconds: float) -> None:
        """Called after each MLflow write with its wall time and the writer thread's CPU time."""
        self.write_seconds += seconds

    def drain(self, timeout: float, spill: Path | None = None) -> bool:
        """At the end: retry for up to ``timeout`` seconds, then save the rest to the spill file."""
        return self.writer.drain(timeout)

    # -- Tune events ----------------------------------------------------------------------
    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        params = trial_params(trial.config)
        if result.get("trial_failed"):
            self.failed.add(trial.trial_id)
            self._write("log_failure", trial.trial_id, params, str(result.get("error", "failed")))
            self._print(f"[{self._count()}/{self.total}] trial {trial.trial_id} failed: {result.get('error')}")
        elif result.get("final"):
            row = {k: result[k] for k in ("val_accuracy", "macs", "macs_ratio", "params")}
            row.update({k: result[k] for k in ROW_EXTRAS if result.get(k) is not None})
            self.done[trial.trial_id] = {**row, "trial": trial.trial_id, "run_id": ""}
            self._add(trial.trial_id, row)
            if not result.get("replayed"):  # a replayed trial's child run is already complete
                self._write("log_final", trial.trial_id, params, dict(result))
            if result.get("reused_from"):
                self._print(
                    f"trial {trial.trial_id}: the configuration of trial {result['reused_from']}, not trained again"
                )
            self._progress(trial.trial_id, result)
            if self.fault and len(self.done) == self.fault[1]:  # a test's injected driver fault
                faults.strike(self.fault[0], self._print)
            if self.freeze_every and len(self.done) % self.freeze_every == 0:
                gc.collect()
                gc.freeze()
                self.frozen += 1
        else:
            self._write("log_epoch", trial.trial_id, params, dict(result))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        """A trial that ended on its screening report was stopped by search.screen."""
        tid, last = trial.trial_id, trial.last_result or {}
        if tid in self.done or tid in self.failed or tid in self.screened or last.get("fidelity") != 0:
            return
        self.screened.add(tid)
        self._write("log_screened", tid, trial_params(trial.config), dict(last))
        self._print(
            f"[{self._count()}/{self.total}] trial {tid}: screened out (adaptive-BN val_acc "
            f"{last.get('val_accuracy', float('nan')):.4f}, below the share search.screen keeps) | {self._clock()}"
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.failed.add(trial.trial_id)
        message = f"trial errored: {trial.error_file or 'see the Ray logs'}"
        self._write("log_failure", trial.trial_id, trial_params(trial.config), message)
        self._print(f"[{self._count()}/{self.total}] trial {trial.trial_id} errored (worker or node lost)")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self._started is None:
            self._started = time.time()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """A trial lost with its worker or node, started again (``trial.max_failures``)."""
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self._write("log_retry", trial.trial_id, trial_params(trial.config), self.retries[trial.trial_id])
        self._print(f"trial {trial.trial_id} lost its worker: retry {self.retries[trial.trial_id]}")

    def on_experiment_end(self, trials, **info) -> None:
        self.drain(self.drain_timeout)
        self.thaw()

    def thaw(self) -> None:
        """Let the driver collect the search's objects again (after the search, or when it
        was cut short)."""
        if self.frozen:
            gc.unfreeze()

    def _count(self) -> int:
        return len(self.done) + len(self.failed) + len(self.screened)

    def _progress(self, trial_id: str, result: dict) -> None:
        base, ax = self.baseline["val_accuracy"], axis(self._objective)
        best = self.front.best_within(0.5 * baseline_cost(self.baseline, ax))
        best_half = f", best at <=0.5x {ax.label} {self.done[best]['val_accuracy']:.4f}" if best else ""
        cost = f"{result['macs_ratio']:.3f}x MACs"
        if result.get("latency_ms") is not None:
            cost += f", {result['latency_ms']:.3f} ms ({result.get('latency_ratio', float('nan')):.3f}x latency)"
        self._print(
            f"[{self._count()}/{self.total}] trial {trial_id}: val_acc {result['val_accuracy']:.4f} "
            f"at {cost} | front {len(self.front)} points (baseline {base:.4f}){best_half} | {self._clock()}"
        )

    def _clock(self) -> str:
        """Elapsed time of this driver's share of the search, and the time left at its pace."""
        if self._started is None:
            self._started = time.time()
        elapsed = time.time() - self._started
        ran = self._count() - self._seeded
        left = self.total - self._count()
        eta = f", about {duration(elapsed / ran * left)} left" if ran > 0 and left > 0 else ""
        return f"{duration(elapsed)} elapsed{eta}"
