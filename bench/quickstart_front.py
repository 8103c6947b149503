"""The quickstart's front, checked: its size, its time, and each point against the uniform
cut at the same MACs.

Runs ``prunetune search examples/quickstart.yaml`` as a new user does (the CLI, a fresh
name, storage and MLflow store under runs/bench/quickstart_front/), timing it. Then, for
every trial on the front, it fine-tunes again, with ``--seeds`` data orders, both the
trial's own counts and the uniform cut scaled onto the trial's MACs (the same brief
fine-tune, the same baseline), and compares the two on the val split (the split the
search selects on; the test split is not read). A point "below uniform" is one whose
mean over the seeds is under the uniform cut's mean at its MACs.

``python -m bench.quickstart_front`` (about 6 minutes on 2 cores); writes
bench/results/quickstart_front.json and the section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.report import machine, publish
from orchestrator.baseline import prepare_baseline
from orchestrator.config import load_config
from orchestrator.readback import read_front
from orchestrator.settings import trial_settings
from orchestrator.space import variables
from orchestrator.store import client_for
from orchestrator.trainable import trial_config
from trials.groups import build_graph
from trials.spec import ChannelSpec
from trials.trial import run_trial

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "quickstart.yaml"


def run_quickstart(workdir: Path, name: str, extra: list[str]) -> tuple[float, str]:
    uri = f"sqlite:///{workdir}/mlflow.db"
    cli = str(Path(sys.executable).parent / "prunetune")
    cmd = [cli, "search", str(CONFIG), "--set", f"name={name}", "--set", f"storage={workdir}/runs"]
    cmd += ["--tracking-uri", uri, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=workdir)
    return time.perf_counter() - t0, uri


def spec_of(client, run_id: str) -> ChannelSpec:
    with tempfile.TemporaryDirectory() as tmp:
        return ChannelSpec.from_json(Path(client.download_artifacts(run_id, "spec.json", tmp)).read_text())


def compare(workdir: Path, name: str, uri: str, extra: list[str], seeds: int) -> list[dict]:
    sets = [e for flag, e in zip(extra[::2], extra[1::2]) if flag == "--set"]
    cfg = load_config(CONFIG, [*sets, f"name={name}", f"storage={workdir}/runs", f"tracking.uri={uri}"])
    base = prepare_baseline(cfg, "cpu", say=lambda _t: None)  # the search's cached baseline
    info = base.info
    graph = build_graph(base.model, (info.in_channels, info.input_size, info.input_size), info.arch)
    settings = trial_settings(cfg, variables(graph.groups, cfg.search.granularity))
    state = {k: v.detach().clone() for k, v in base.model.state_dict().items()}
    client = client_for(uri)
    rows, _ = read_front(uri, name)
    out = []
    for r in [r for r in rows if r["pareto"] and not r.get("baseline")]:
        spec = spec_of(client, r["run_id"])
        own, uni = [], []
        for seed in range(seeds):
            tc = trial_config(settings, state, None)
            ft = dataclasses.replace(
                tc.finetune, seed=5000 + seed
            )  # other data orders than the search's (and its reevaluation)
            own.append(run_trial(dataclasses.replace(tc, spec=spec, finetune=ft))["val_accuracy"])
            uniform = dataclasses.replace(tc, keep=1.0, objective="macs", target=r["macs_ratio"], finetune=ft)
            got = run_trial(uniform)
            uni.append(got["val_accuracy"])
        deltas = [a - b for a, b in zip(own, uni)]
        out.append(
            {
                "macs_ratio": r["macs_ratio"],
                # what the point is: a searched shape, the uniform cut (a warm start, or spread 0),
                # or a uniform cut reevaluate logged in the place of a shape it beat
                "kind": "replaced" if r.get("comparator") else "uniform" if r.get("uniform") else "searched",
                "search_val": r["val_accuracy"],
                "own_mean": statistics.mean(own),
                "uniform_mean": statistics.mean(uni),
                "uniform_macs_ratio": got["macs_ratio"],
                "delta_mean": statistics.mean(deltas),
                "delta_sd": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
                "own": own,
                "uniform": uni,
            }
        )
        p = out[-1]
        print(
            f"  {p['macs_ratio']:.3f}x: front {p['own_mean']:.4f}, uniform {p['uniform_mean']:.4f} "
            f"(at {p['uniform_macs_ratio']:.3f}x), delta {p['delta_mean']:+.4f} +- {p['delta_sd']:.4f}",
            flush=True,
        )
    return out


def report(result: dict) -> str:
    lines = [
        "## The quickstart's front against the uniform cut",
        "",
        f"`python -m bench.quickstart_front` on {result['machine']}, {result['date']}: `make quickstart`'s "
        f"search ({result['extra'] or 'examples/quickstart.yaml as shipped'}) run through the CLI in "
        f"{result['seconds'] / 60:.1f} min, its front {result['front_points']} points "
        f"({result['trial_points']} trials and the baseline when it is on it). Each front trial and the uniform "
        f"cut at its MACs fine-tuned again over {result['seeds']} other data orders, val accuracy (the search's "
        "selection split; one val image is 0.35 points):",
        "",
        "| MACs ratio | point | search's val | front config, mean | uniform at its MACs, mean | paired Δ ± sd |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['macs_ratio']:.3f} | {p.get('kind', '')} | {p['search_val']:.4f} | {p['own_mean']:.4f} | {p['uniform_mean']:.4f} | "
            f"{100 * p['delta_mean']:+.2f} ± {100 * p['delta_sd']:.2f} |"
        )
    below = [p for p in result["points"] if p["delta_mean"] < 0]
    lines += [
        "",
        f"Points below the uniform cut at their MACs (mean Δ < 0): {len(below)} of {len(result['points'])}.",
        "",
        "Point: `searched` a sampled shape; `uniform` the uniform cut (a warm start, or spread 0); "
        "`replaced` the uniform cut that `search.reevaluate` logged in the place of a shape it beat. "
        "`search's val` is the front's value: with reevaluate, the mean over its data orders.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="override the quickstart config (repeatable)")
    ap.add_argument("--reuse", help="a finished run's folder under runs/bench/quickstart_front: compare only")
    args = ap.parse_args()
    extra = [x for s in args.set for x in ("--set", s)]
    name = "quickstart"
    if args.reuse:
        workdir = Path(args.reuse).resolve()
        seconds, uri = json.loads((workdir / "seconds.json").read_text()), f"sqlite:///{workdir}/mlflow.db"
    else:
        workdir = ROOT / "runs" / "bench" / "quickstart_front" / time.strftime("%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True)
        seconds, uri = run_quickstart(workdir, name, extra)
        (workdir / "seconds.json").write_text(json.dumps(seconds))
    rows, _ = read_front(uri, name)
    front = [r for r in rows if r["pareto"]]
    torch.set_num_threads(1)
    points = compare(workdir, name, uri, extra, args.seeds)
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "extra": " ".join(args.set),
        "seconds": seconds,
        "front_points": len(front),
        "trial_points": sum(not r.get("baseline") for r in front),
        "seeds": args.seeds,
        "points": points,
    }
    publish("quickstart_front", result, report(result))


if __name__ == "__main__":
    main()
