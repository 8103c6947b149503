"""Orchestration overhead: how much of the cluster's trial-slot time is spent inside trials?

A local 3-node Ray cluster (a head that only schedules, two 1-CPU worker nodes: two
trial slots), token authentication on; a real `prunetune search` of trials with fixed
work, recorded into a local MLflow store. A trial is a ResNet-20 fine-tune of a fixed
number of steps on the digits data, about 30 s on one core; in budget mode (the target
setting) every trial's network has the same MACs (0.5x, within 1%), so the work is fixed.
A front-mode search beside it shows what uneven trials cost: its trials' MACs, and so
their times, follow the sampled keep ratios. Busy share = sum of the trials'
own wall time (``trial_seconds``: data, pruning, fine-tune, evaluation) / (slots x Tune's
wall time, ``tune_seconds``). Target: >= 95%. The rest is split into the gap between
two trials on a slot (result handling, the driver's MLflow writes, the next config), a
slot's start (Tune's start to its first trial's code: placement, worker process,
imports, the baseline fetch) and its end: idle while the other slot runs its last trial
(trials of different lengths), then Tune's shutdown.
Results: bench/results/overhead.json and docs/benchmarks.md.
Run: `python -m bench.overhead` (about 15 min: budget searches of 10 and 30 trials, a
front search of 10).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from bench.report import machine, publish
from cluster.local import LocalCluster
from orchestrator.tracking import ROLE

ROOT = Path(__file__).resolve().parent.parent
PRUNETUNE = str(Path(sys.executable).parent / "prunetune")


def run(mode: str, trials: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(workers=2, cpus_per_worker=1, head_cpus=0) as cluster:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cfg = {
            "name": "bench-overhead",
            "model": {"arch": "resnet20"},
            "data": {"name": "digits"},
            "baseline": {"epochs": 1},
            "search": {
                "granularity": "stage",
                "num_trials": trials,
                "max_concurrent": 2,
                "warm_start": [0.5],
                **({"mode": "budget", "macs_target": 0.5} if mode == "budget" else {"mode": "front"}),
            },
            "trial": {"steps": steps, "batch_size": 64, "adaptive_bn_batches": 2, "cpu": 1},
            "tracking": {"uri": uri},
            "cluster": {"address": cluster.address},
            "storage": f"{tmp}/runs",
        }
        path = Path(tmp) / "overhead.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t0 = time.perf_counter()
        done = subprocess.run(
            [PRUNETUNE, "search", str(path)], env=cluster.env, cwd=tmp, capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("bench-overhead")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        parent = next(r for r in runs if r.data.tags.get(ROLE) == "search")
        secs = [r.data.metrics["trial_seconds"] for r in runs if r.data.tags.get(ROLE) == "trial"]
        finals = []
        for path in Path(tmp, "runs", "bench-overhead", "tune").glob("*/result.json"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            finals += [r for r in rows if r.get("final") and "started_at" in r]
        return {
            "mode": mode,
            "trials": trials,
            "steps": steps,
            "command_seconds": wall,
            **_shares(parent, secs, finals, trials),
        }


def _shares(parent, secs: list[float], finals: list[dict], trials: int) -> dict:
    """Where the Tune run's slot time went: trials, the last round's tail, between trials on
    a slot, and the start and end, from the trials' own times and Tune's final results."""
    tune = parent.data.metrics["tune_seconds"]
    slots = 2
    busy = sum(secs) / (slots * tune)
    rounds = -(-trials // slots)
    # the tail: in the last round, the slots that have no trial to run
    tail = (rounds * slots - trials) * (sum(secs) / len(secs)) / (slots * tune)
    # Between trials on one slot: from a trial's end to the next trial's start there
    # (Tune's result handling, the actor's reset, the next config, the trial's setup).
    gaps, starts, ends = [], [], []
    began = parent.data.metrics["tune_started_at"]
    for node in {r["node_id"] for r in finals}:
        mine = sorted((r for r in finals if r["node_id"] == node), key=lambda r: r["started_at"])
        gaps += [b["started_at"] - a["started_at"] - a["trial_seconds"] for a, b in zip(mine, mine[1:])]
        starts.append(mine[0]["started_at"] - began)  # Tune's start to the slot's first trial code
        ends.append(began + tune - mine[-1]["started_at"] - mine[-1]["trial_seconds"])  # last trial to Tune's end
    between = sum(gaps) / (slots * tune)
    return {
        "mean_trial_seconds": sum(secs) / len(secs),
        "min_trial_seconds": min(secs),
        "max_trial_seconds": max(secs),
        "tune_seconds": tune,
        "busy_share": busy,
        "tail_share": tail,
        "per_trial_gap_seconds": (slots * tune * (1 - tail) - sum(secs)) / trials,
        "between_trials_share": between,
        "between_trials_seconds": sum(gaps) / max(1, len(gaps)),
        "start_and_end_share": 1 - busy - tail - between,
        "first_start_seconds": sum(starts) / len(starts),
        "last_end_seconds": sum(ends) / len(ends),
        # from the search's last trial to Tune's end: Tune's shutdown alone
        "shutdown_seconds": min(ends),
        # a slot idle while the other runs its last trial (trial times differ)
        "imbalance_seconds": sum(e - min(ends) for e in ends) / len(ends),
    }


def section(res: dict) -> str:
    rs = res["results"]
    r0 = rs[0]

    def row(label: str, fmt) -> str:
        return f"| {label} | " + " | ".join(fmt(r) for r in rs) + " |"

    return "\n".join(
        [
            "## Orchestration overhead",
            "",
            f"`python -m bench.overhead` on {res['machine']}, {res['date']}: a local Ray cluster of a head and two "
            f"1-CPU worker nodes (two trial slots, token auth), searches of trials of fixed work ({r0['steps']} "
            "fine-tune steps of a ResNet-20 on the digits data; in budget mode every trial's network has 0.5x the "
            "baseline's MACs, within 1%), "
            "MLflow in a local store. The head, the driver and both slots share the machine's 2 cores.",
            "",
            "| figure | " + " | ".join(f"{r['trials']} trials, {r['mode']} mode" for r in rs) + " |",
            "|---|" + "---|" * len(rs),
            row(
                "**busy share**: sum of trial time / (2 slots x Tune wall time), target 95%",
                lambda r: f"**{100 * r['busy_share']:.1f}%**",
            ),
            row("Tune wall time", lambda r: f"{r['tune_seconds']:.0f} s"),
            row(
                "trial time: mean (shortest to longest)",
                lambda r: (
                    f"{r['mean_trial_seconds']:.1f} s ({r['min_trial_seconds']:.1f} to {r['max_trial_seconds']:.1f} s)"
                ),
            ),
            row("idle tail (last round, trials not dividing over 2 slots)", lambda r: f"{100 * r['tail_share']:.1f}%"),
            row("gap per trial, all told", lambda r: f"{r['per_trial_gap_seconds']:.2f} s"),
            row(
                "... between two trials on one slot (result handling, MLflow, next config): share, mean gap",
                lambda r: f"{100 * r['between_trials_share']:.1f}%, {r['between_trials_seconds']:.2f} s",
            ),
            row("... the first start and the last end, share", lambda r: f"{100 * r['start_and_end_share']:.1f}%"),
            row(
                "... Tune's start to a slot's first trial (placement, worker process, imports, baseline fetch)",
                lambda r: f"{r['first_start_seconds']:.1f} s per slot",
            ),
            row(
                "... a slot's last trial to Tune's end, of which:",
                lambda r: f"{r['last_end_seconds']:.1f} s per slot",
            ),
            row(
                "...... the slot idle while the other runs its last trial (uneven trial times)",
                lambda r: f"{r['imbalance_seconds']:.1f} s per slot",
            ),
            row("...... the search's last trial to Tune's end (shutdown)", lambda r: f"{r['shutdown_seconds']:.1f} s"),
            row(
                "whole command (baseline training, Ray connect, final front)", lambda r: f"{r['command_seconds']:.0f} s"
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", nargs="+", default=["budget:10", "budget:30", "front:10"], help="searches to run, MODE:TRIALS"
    )
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    res = {
        "results": [run(m, int(n), args.steps) for m, n in (r.split(":") for r in args.runs)],
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    publish("overhead", res, section(res))


if __name__ == "__main__":
    main()
