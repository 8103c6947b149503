"""Scale: a search of 2,000 cheap trials. Does the driver's bookkeeping stay flat?

The search machinery is the real one: Ray Tune (local Ray), prunetune's Optuna searcher
(NSGA-II over the per-stage keep ratios of a ResNet-20), and prunetune's tracking
callback writing every trial to MLflow (a local SQLite store) and updating the Pareto
front. Only the trial is cheap: instead of pruning and training, it reports an accuracy
and MACs computed from its keep ratios (no training). Measured, over windows ending at
trial 100, 500 and 2,000: the mean time per trial spent in the callback (MLflow writes,
front update, progress line; the writes run in the callback's writer thread, off Tune's
event loop, and are timed there), and the driver's peak resident memory.
Results: bench/results/scale.json and docs/benchmarks.md.
Run: `python -m bench.scale` (three tracked searches and one untracked, about 10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import ray
from ray import tune

from bench.report import machine, publish
from orchestrator.config import SearchSection
from orchestrator.progress import TrackingCallback
from orchestrator.search import run_name, run_sizes
from orchestrator.searcher import PrunetuneOptunaSearch
from orchestrator.space import distributions
from orchestrator.tracking import SearchRecord

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["stage0", "stage1", "stage2"]
CHECKPOINTS = (100, 500, 2000)
PER_RUN = SearchSection.model_fields["trials_per_run"].default  # trials per Tune run


def cheap_trial(config: dict) -> None:
    """Accuracy falls and MACs shrink as the keep ratios fall: a smooth, cheap stand-in."""
    r = [config[s] for s in STAGES]
    macs = 40e6 * sum(x * x for x in r) / 3
    acc = 0.98 - 0.3 * sum((1 - x) ** 2 for x in r) / 3
    tune.report(
        {
            "val_accuracy": acc,
            "macs": macs,
            "macs_ratio": macs / 40e6,
            "params": int(2.7e5 * r[2]),
            "epoch": 1,
            "spec_json": json.dumps({"channels": config}),
            "final": 1,
        }
    )


class TimedCallback(TrackingCallback):
    """Bookkeeping of a trial = time in Tune's callback for its results (progress, front,
    queueing) + the MLflow writes of that trial (in the writer thread, off Tune's event
    loop), as wall time and as CPU time; each write is counted to its own trial, however
    late the writer gets to it."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, say=lambda _t: None, **kw)
        self.order: list[str] = []  # trial ids in the order they finished
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss: dict[int, float] = {}
        self.own: dict[int, float] = {}

    def _add(self, tid: str, wall: float, cpu: float) -> None:
        self.wall[tid] = self.wall.get(tid, 0.0) + wall
        self.cpu[tid] = self.cpu.get(tid, 0.0) + cpu

    def _timed(self, op: str, args: tuple, seconds: float, cpu_seconds: float) -> None:
        super()._timed(op, args, seconds, cpu_seconds)
        self._add(args[0], seconds, cpu_seconds)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        super().on_trial_result(iteration, trials, trial, result, **info)
        self._add(trial.trial_id, time.perf_counter() - t0, time.thread_time() - c0)
        if result.get("final"):
            self.order.append(trial.trial_id)
            n = len(self.order)
            if n in CHECKPOINTS:
                self.rss[n] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
                self.own[n] = self.own_state_mib()

    def own_state_mib(self) -> float:
        """prunetune's per-trial state in the driver (the callback's rows and front, the
        record's maps), pickled: what of the driver's memory growth is ours."""
        parts = [self.done, self.failed, self.front.members]
        with self._lock:  # the writer thread's record: read between writes
            r = self._record
            if r is not None:
                parts += [r.finished, r.children, r._tagged, r._params_logged, r.front.members]
            return sum(len(pickle.dumps(x)) for x in parts) / 2**20


class Untracked(TimedCallback):
    """The same callback with its MLflow writes left out: what Tune and Optuna cost alone."""

    def _write(self, op: str, *args) -> None:
        pass


def run(n: int, tracked: bool = True, per_run: int = PER_RUN) -> dict:
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        record = SearchRecord.open(uri, "bench-scale", tmp, False)
        record.log_baseline({"val_accuracy": 0.98, "macs": 40e6})
        callback = (TimedCallback if tracked else Untracked)(
            uri,
            "bench-scale",
            record.parent_run_id,
            n,
            {"val_accuracy": 0.98, "macs": 40e6},
            spill=Path(tmp) / "spill.json",
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        searcher = PrunetuneOptunaSearch(
            space=distributions(STAGES, 0.3, 1.0, 0.05),
            metric=["val_accuracy", "macs"],
            mode=["max", "min"],
            sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=50),
        )
        t0 = time.perf_counter()
        for i, size in enumerate(run_sizes(n, per_run)):  # as run_search does: runs over one searcher
            tune.Tuner(
                tune.with_resources(cheap_trial, {"cpu": 1}),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, num_samples=size, max_concurrent_trials=2, reuse_actors=True
                ),
                run_config=tune.RunConfig(
                    name=run_name(i), storage_path=f"{tmp}/runs", verbose=0, callbacks=[callback]
                ),
            ).fit()
        wall = time.perf_counter() - t0
        ray.shutdown()
        t1 = time.perf_counter()  # what the driver does at the end: read the record back, final front
        final = SearchRecord(uri, "bench-scale", record.parent_run_id)
        final.baseline = {"val_accuracy": 0.98, "macs": 40e6}
        final.finish()
        finish = time.perf_counter() - t1
    windows = {}
    for end in CHECKPOINTS:
        if end <= len(callback.order):
            ids = callback.order[max(0, end - 100) : end]
            windows[str(end)] = {
                "ms_per_trial": 1000 * sum(callback.wall[t] for t in ids) / len(ids),
                "cpu_ms_per_trial": 1000 * sum(callback.cpu[t] for t in ids) / len(ids),
                "peak_rss_mib": callback.rss.get(end),
                "prunetune_state_mib": callback.own.get(end),
            }
    buckets = [callback.order[i : i + 100] for i in range(0, len(callback.order), 100)]
    return {
        "trials": len(callback.order),
        "wall_seconds": wall,
        "final_front_seconds": finish,
        "heap_freezes": callback.frozen,
        "trials_per_run": per_run,
        "windows": windows,
        # CPU ms per trial in each run of 100 trials: the whole curve, not three points of it
        "cpu_ms_per_100": [round(1000 * sum(callback.cpu[t] for t in b) / len(b), 2) for b in buckets],
    }


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ({min(values):.1f} to {max(values):.1f})"


def section(res: dict) -> str:
    runs, bare = res["runs"], res["untracked"]["windows"]
    one = res.get("untracked_one_run", {}).get("windows", {})
    k = len(runs)
    lines = [
        "## Scale: 2,000 cheap trials",
        "",
        f"`python -m bench.scale` on {res['machine']}, {res['date']}: real Ray Tune (local), prunetune's "
        "NSGA-II searcher (population 50) and tracking callback (MLflow in a local SQLite store, front updated "
        "after every trial); trials are cheap (no training). Bookkeeping of a trial = time in the callback "
        "for its results (progress, front update) plus its MLflow writes (done in the callback's writer thread, "
        "each counted to its own trial), mean over the 100 trials ending at each mark; peak = the "
        f"driver's peak resident memory by then. {k} searches, each in its own process: mean (lowest to highest). "
        f"Like `prunetune search`, each search runs as Tune runs of {runs[0]['trials_per_run']} trials over one "
        "searcher (`search.trials_per_run`): Tune keeps every trial of a run in the driver.",
        "",
        "| trials | bookkeeping per trial: CPU ms | wall ms | driver peak RSS (MiB) | "
        "peak RSS without the MLflow writes (MiB) | the same, all trials in one Tune run (MiB) | "
        "prunetune's own state (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for end in runs[0]["windows"]:
        ws = [r["windows"][end] for r in runs if end in r["windows"]]
        alone, single = bare.get(end, {}).get("peak_rss_mib"), one.get(end, {}).get("peak_rss_mib")
        lines.append(
            f"| {end} | {_spread([w['cpu_ms_per_trial'] for w in ws])} | {_spread([w['ms_per_trial'] for w in ws])} | "
            f"{_spread([w['peak_rss_mib'] for w in ws])} | {'-' if alone is None else f'{alone:.0f}'} | "
            f"{'-' if single is None else f'{single:.0f}'} | "
            f"{statistics.mean(w['prunetune_state_mib'] for w in ws):.2f} |"
        )
    growth = [r["windows"]["2000"]["cpu_ms_per_trial"] / r["windows"]["500"]["cpu_ms_per_trial"] - 1 for r in runs]
    curve = [statistics.mean(c) for c in zip(*(r["cpu_ms_per_100"] for r in runs))]
    lines += [
        "",
        "CPU per trial from 500 to 2,000 trials, per search: "
        + ", ".join(f"{100 * g:+.0f}%" for g in growth)
        + ". The whole curve (CPU ms per trial in each run of 100 trials, mean of the searches): "
        + ", ".join(f"{c:.0f}" for c in curve)
        + ".",
        "",
        f"The same search without the MLflow writes: {res['untracked']['trials']} trials in "
        f"{res['untracked']['wall_seconds']:.0f} s. Wall time counts the writer thread's waits for the GIL (Tune's "
        "event loop runs beside it); CPU time is the driver threads' own work, garbage collection included. "
        "The driver freezes its heap every 200 finished trials (`TrackingCallback.freeze_every`), so Python's "
        "full collections do not walk Tune's growing trial state.",
        "",
        "Whole search: "
        + ", ".join(f"{r['trials']} trials in {r['wall_seconds']:.0f} s" for r in runs)
        + f"; final front (the record read back from MLflow, front tagged, json, csv, html and png written): "
        f"{_spread([r['final_front_seconds'] for r in runs])} s.",
    ]
    return "\n".join(lines)


def _one(trials: int, variant: str, per_run: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--trials",
            str(trials),
            "--one",
            variant,
            "--trials-per-run",
            str(per_run),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="tracked searches (the machine is noisy)")
    parser.add_argument(
        "--trials-per-run", type=int, default=PER_RUN, help="trials per Tune run (search.trials_per_run)"
    )
    parser.add_argument("--one", choices=["tracked", "untracked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # one search in this process (peak RSS is per process): print its figures
        print("RESULT " + json.dumps(run(args.trials, tracked=args.one == "tracked", per_run=args.trials_per_run)))
        return
    res = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    res["runs"] = [_one(args.trials, "tracked", args.trials_per_run) for _ in range(args.repeats)]
    res["untracked"] = _one(args.trials, "untracked", args.trials_per_run)
    res["untracked_one_run"] = _one(args.trials, "untracked", args.trials)  # all trials in one Tune run
    publish("scale", res, section(res))


if __name__ == "__main__":
    main()
