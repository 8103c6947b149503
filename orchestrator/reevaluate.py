"""``search.reevaluate: {top: K, seeds: N}``: fronts that are not a winner's curse.

A search selects on one brief fine-tune per configuration, so its best points are partly
lucky draws of the data order. After the trials, the top K configurations (the front's
first, then by val accuracy) are fine-tuned again N times, each over a data order of its
own (the fine-tune seed reaches the training loader), as Ray tasks over the cluster. Each
trial run gets ``val_accuracy_reeval`` per seed, ``val_accuracy_mean``, ``val_accuracy_std``
and ``reevaluations``; the front the user reads then ranks those configurations on their
mean (``orchestrator.tracking``), the search's own score kept as ``val_accuracy_search``.
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
from orchestrator.tracking import CRITERION, SearchRecord

SEED_STRIDE = 1000  # re-evaluation j fine-tunes with seed search.seed + SEED_STRIDE * (j + 1)


def run_one(settings: TrialSettings, state, scores, spec: dict, criterion: str, seed: int) -> float:
    """One re-evaluation: the trial's exact counts, cut by the criterion it used, fine-tuned
    over the data order of ``seed``; its val accuracy."""
    from orchestrator.trainable import trial_config
    from trials.spec import ChannelSpec
    from trials.trial import run_trial

    tc = trial_config(settings, state, scores)
    tc = replace(
        tc,
        spec=ChannelSpec.from_dict(spec),
        target=None,
        criterion=criterion,
        latency=None,
        timer=None,
        finetune=replace(tc.finetune, seed=seed),
    )
    return float(run_trial(tc)["val_accuracy"])


def picks(rows: list[dict], top: int) -> list[dict]:
    """The configurations to re-evaluate: front points first, then the most accurate."""
    trials = [r for r in rows if not r.get("baseline") and "reevaluations" not in r]  # each once
    return sorted(trials, key=lambda r: (r["rank"], -r["val_accuracy"]))[:top]


def reevaluate(cfg, record: SearchRecord, settings: TrialSettings, state: dict, scores, say=print) -> int:
    """Re-evaluate the top configurations of the search ``record`` holds (read from
    MLflow, as the writer left it); returns how many were re-evaluated."""
    import ray

    r = cfg.search.reevaluate
    final = SearchRecord(record.uri, record.experiment, record.parent_run_id, record.objective)
    final.baseline = record.baseline
    chosen = picks(final.rows(), r.top)
    if not chosen:
        return 0
    client, default = final.client, settings.criterion
    say(f"reevaluate: the top {len(chosen)} configurations, {r.seeds} more data orders each ...")
    task = ray.remote(num_cpus=cfg.trial.cpu, num_gpus=cfg.trial.gpu, max_retries=cfg.trial.max_failures)(run_one)
    state_ref = ray.put(state)
    refs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in chosen:
            run = client.get_run(row["run_id"])
            spec = json.loads(Path(client.download_artifacts(row["run_id"], "spec.json", tmp)).read_text())
            criterion = run.data.tags.get(CRITERION, default)
            for j in range(r.seeds):
                seed = cfg.search.seed + SEED_STRIDE * (j + 1)
                refs[(row["run_id"], j)] = task.remote(settings, state_ref, scores, spec, criterion, seed)
    values = dict(zip(refs, ray.get(list(refs.values()))))
    now = int(time.time() * 1000)
    for row in chosen:
        got = [values[(row["run_id"], j)] for j in range(r.seeds)]
        mean, sd = statistics.mean(got), statistics.stdev(got)
        metrics = [Metric("val_accuracy_reeval", v, now, j) for j, v in enumerate(got)]
        metrics += [
            Metric("val_accuracy_mean", mean, now, 0),
            Metric("val_accuracy_std", sd, now, 0),
            Metric("reevaluations", float(r.seeds), now, 0),
        ]
        client.log_batch(row["run_id"], metrics=metrics)
        say(
            f"  trial {row['trial']}: val_acc {row['val_accuracy']:.4f} in the search, "
            f"{mean:.4f} +- {sd:.4f} over {r.seeds} more data orders"
        )
    return len(chosen)
