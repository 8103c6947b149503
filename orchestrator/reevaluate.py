"""``search.reevaluate: {top: K, seeds: N}``: fronts that are not a winner's curse.

A search selects on one brief fine-tune per configuration, so its best points are partly
lucky draws of the data order. After the trials, the top K configurations (the front's
first, then by val accuracy) are fine-tuned again N times, each over a data order of its
own (the fine-tune seed reaches the training loader), as Ray tasks over the cluster. Each
trial run gets ``val_accuracy_reeval`` per seed, ``val_accuracy_mean``, ``val_accuracy_std``
and ``reevaluations``; the front the user reads then ranks those configurations on their
mean (``orchestrator.tracking``), the search's own score kept as ``val_accuracy_search``.

With ``uniform`` (the default), a configuration that is not the uniform cut is compared,
seed for seed, with the uniform cut scaled onto its own MACs (or params): its run gets
``uniform_val_accuracy_mean`` and the paired difference ``vs_uniform_mean`` /
``vs_uniform_std``, which the front shows. Whether a searched allocation beats pruning
every layer alike is then read off each point, not assumed. Where the uniform cut wins on
those same data orders, it takes the configuration's place: it becomes a trial run of its
own (its counts, its scores; tag ``prunetune.comparator_of``, promotable like any trial),
and the configuration it beat is kept off the front (``beaten_by_uniform``). The front a
user reads then never holds a searched shape that pruning every layer alike beat at its
cost.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mlflow.entities import Metric

from orchestrator.settings import TrialSettings
from orchestrator.space import is_uniform
from orchestrator.tracking import CRITERION, SearchRecord

SEED_STRIDE = 1000  # re-evaluation j fine-tunes with seed search.seed + SEED_STRIDE * (j + 1)


UNIFORM = "uniform_at"  # a job's spec {UNIFORM: ratio, "objective": ...}: the uniform cut at that cost


KEEP = ("val_accuracy", "macs", "macs_ratio", "params", "params_ratio", "epoch")  # of a re-evaluation's result


def run_one(settings: TrialSettings, state, scores, spec: dict, criterion: str, seed: int) -> dict:
    """One re-evaluation: the trial's exact counts (or the uniform cut at a cost, for a
    ``{UNIFORM: ratio}`` spec), cut by the criterion it used, fine-tuned over the data order
    of ``seed``; its val accuracy and cost, and the counts it cut to (``spec_json``)."""
    from orchestrator.trainable import trial_config
    from trials.spec import ChannelSpec
    from trials.trial import run_trial

    tc = trial_config(settings, state, scores)
    if UNIFORM in spec:  # keep 1.0 everywhere, scaled onto the cost as budget mode scales
        cut = {"spec": None, "keep": 1.0, "target": spec[UNIFORM], "objective": spec["objective"]}
    else:
        cut = {"spec": ChannelSpec.from_dict(spec), "target": None}
    tc = replace(tc, **cut, criterion=criterion, latency=None, timer=None, finetune=replace(tc.finetune, seed=seed))
    result = run_trial(tc)
    return {**{k: result[k] for k in KEEP}, "spec_json": json.dumps(result["spec"])}


def uniform_job(row: dict, params: dict, objective: str) -> dict | None:
    """The uniform cut to compare ``row`` with, or None (it is uniform itself, or the
    search's cost is latency, which a re-evaluation does not time)."""
    if objective not in ("macs", "params") or is_uniform(params):
        return None
    ratio = row.get(f"{objective}_ratio")
    return None if ratio is None else {UNIFORM: float(ratio), "objective": objective}


def picks(rows: list[dict], top: int) -> list[dict]:
    """The configurations to re-evaluate: front points first, then the most accurate."""
    trials = [r for r in rows if not r.get("baseline") and "reevaluations" not in r]  # each once
    return sorted(trials, key=lambda r: (r["rank"], -r["val_accuracy"]))[:top]


def reevaluate(cfg, record: SearchRecord, settings: TrialSettings, state: dict, scores, say=print) -> int:
    """Re-evaluate the top configurations of the search ``record`` holds as Ray tasks over
    the cluster (``rounds`` says which); returns how many were re-evaluated."""
    import ray

    r = cfg.search.reevaluate
    task = ray.remote(num_cpus=cfg.trial.cpu, num_gpus=cfg.trial.gpu, max_retries=cfg.trial.max_failures)(run_one)
    state_ref = ray.put(state)

    def run_all(jobs: list[tuple[dict, str, int]]) -> list[dict]:
        return ray.get([task.remote(settings, state_ref, scores, *job) for job in jobs])

    objective = cfg.search.objective if r.uniform else None
    return rounds(record, r.top, r.seeds, cfg.search.seed, run_all, settings.criterion, say, uniform=objective)


def rounds(
    record: SearchRecord,
    top: int,
    seeds: int,
    seed: int,
    run_all,
    default_criterion: str,
    say=print,
    *,
    uniform: str | None = None,
) -> int:
    """Up to ``top`` configurations of the search ``record`` holds (read from MLflow, as the
    writer left it), each fine-tuned over ``seeds`` more data orders by ``run_all`` (a list
    of (spec, criterion, seed) -> ``run_one``'s results), in rounds: a lucky point re-evaluated
    below its single draw leaves the front, and a configuration that comes onto it in its
    place is re-evaluated next, so the front a user reads is of means wherever the budget
    reaches. ``uniform``: the search's objective, to compare each configuration with the
    uniform cut at its cost (None: no comparison). Returns how many were re-evaluated."""
    left, done = top, 0
    while left > 0:
        final = SearchRecord(record.uri, record.experiment, record.parent_run_id, record.objective)
        final.baseline = record.baseline
        rows = picks(final.rows(), left)  # the front first, then the most accurate
        chosen = [row for row in rows if row["pareto"]] or rows
        if not chosen:
            break
        what = f"{len(chosen)} more" if done else f"the top {len(chosen)} configurations"
        say(f"reevaluate: {what}, {seeds} more data orders each ...")
        _round(final, chosen, (seeds, seed), run_all, default_criterion, say, uniform)
        left, done = left - len(chosen), done + len(chosen)
    return done


def _round(
    record: SearchRecord, chosen: list[dict], seeding: tuple[int, int], run_all, default_criterion: str, say, uniform
) -> None:
    """One round: every chosen configuration's fine-tunes (and those of the uniform cut at
    its cost, seed for seed) run at once, their values, mean and spread logged to its run;
    a uniform cut that beat its configuration logged in its place."""
    client, (seeds, seed) = record.client, seeding
    orders = [seed + SEED_STRIDE * (j + 1) for j in range(seeds)]
    jobs, against = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in chosen:
            run = client.get_run(row["run_id"])
            spec = json.loads(Path(client.download_artifacts(row["run_id"], "spec.json", tmp)).read_text())
            criterion = run.data.tags.get(CRITERION, default_criterion)
            jobs += [(spec, criterion, s) for s in orders]
            job = uniform and uniform_job(row, run.data.params, uniform)
            against[row["run_id"]] = (job, is_uniform(run.data.params), criterion)
            jobs += [(job, criterion, s) for s in orders] if job else []
    values = iter(run_all(jobs))
    for row in chosen:
        got = [float(next(values)["val_accuracy"]) for _ in range(seeds)]
        job, flat, criterion = against[row["run_id"]]
        base = [next(values) for _ in range(seeds)] if job else None
        _log(client, row, got, base and [float(b["val_accuracy"]) for b in base], say, flat)
        if base and statistics.mean(b["val_accuracy"] for b in base) > statistics.mean(got):
            run_id = record.log_comparator(row, job, base, criterion)
            say(f"  the uniform cut at its cost takes trial {row['trial']}'s place on the front (run {run_id[:8]})")


def _log(client, row: dict, got: list[float], base: list[float] | None, say, flat: bool) -> None:
    now, seeds = int(time.time() * 1000), len(got)
    mean, sd = statistics.mean(got), statistics.stdev(got)
    metrics = [Metric("val_accuracy_reeval", v, now, j) for j, v in enumerate(got)]
    metrics += [
        Metric("val_accuracy_mean", mean, now, 0),
        Metric("val_accuracy_std", sd, now, 0),
        Metric("reevaluations", float(seeds), now, 0),
        Metric("uniform_cut", float(flat), now, 0),  # the configuration is the uniform cut itself
    ]
    line = f"  trial {row['trial']}: val_acc {row['val_accuracy']:.4f} in the search, {mean:.4f} +- {sd:.4f}"
    line += f" over {seeds} more data orders"
    if base is not None:
        deltas = [a - b for a, b in zip(got, base)]
        d_mean, d_sd = statistics.mean(deltas), statistics.stdev(deltas)
        metrics += [
            Metric("uniform_val_accuracy_mean", statistics.mean(base), now, 0),
            Metric("vs_uniform_mean", d_mean, now, 0),
            Metric("vs_uniform_std", d_sd, now, 0),
        ]
        line += f"; against the uniform cut at its cost {100 * d_mean:+.2f} +- {100 * d_sd:.2f} points"
    client.log_batch(row["run_id"], metrics=metrics)
    say(line)
