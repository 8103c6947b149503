"""Promotion: fully fine-tune one trial's configuration with Ray Train, evaluate it once
on the test split, and register it in MLflow.

The spec and the search's config come from MLflow (the trial's ``spec.json``, the
search's ``config.yaml`` and ``baseline/baseline.pt``), so a promotion needs nothing
but the tracking store and the data.
"""

from __future__ import annotations

import copy
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import torch
import yaml
from mlflow.exceptions import MlflowException

from orchestrator.config import SearchConfig, validate_config
from orchestrator.deployment import checked_onnx, deploy_latency, speed
from orchestrator.promote_train import fine_tune, follow
from orchestrator.readback import read_front
from orchestrator.store import client_for, get_experiment, search_all
from orchestrator.tracking import (
    BASELINE_ARTIFACT,
    CRITERION,
    RESUMED,
    ROLE,
    RUNTIME,
    TRIAL_ID,
    open_promote_run,
    record_promotion,
    run_with_role,
)
from trials.baseline import ModelInfo, load_model, load_weights, read_scores
from trials.cost import count_cost
from trials.data import load_test, load_train_val
from trials.errors import UserError
from trials.latency import (
    check_runtime,
)
from trials.prune import prune, rebuild
from trials.spec import ChannelSpec
from trials.train import evaluate, recalibrate_bn


@dataclass(frozen=True)
class PromoteOptions:
    epochs: int = 30
    workers: int = 2
    lr: float | None = None  # default: the search's trial lr
    batch_size: int | None = None
    register_as: str | None = None
    max_macs_ratio: float | None = None
    max_latency_ratio: float | None = None  # a latency search: the best front point at or under it
    use_gpu: bool | None = None  # None: when the cluster has a GPU per worker
    max_failures: int = 3


def resolve_trial_run(client, target: str, max_macs_ratio: float | None, max_latency_ratio: float | None = None):
    """The child run to promote: ``target`` as a run id, a run-id prefix or a trial id
    (as prunetune's tables print them), or the best front point of the experiment
    ``target`` with ``macs_ratio <= max_macs_ratio`` (and, or instead, a measured
    ``latency_ratio <= max_latency_ratio``)."""
    limits = {k: v for k, v in (("macs_ratio", max_macs_ratio), ("latency_ratio", max_latency_ratio)) if v is not None}
    if limits:
        rows, _ = read_front(client.tracking_uri, target)
        fit = [
            r
            for r in rows
            if r["pareto"] and not r.get("baseline") and all(r.get(k, float("inf")) <= v for k, v in limits.items())
        ]
        if not fit:
            said = " and ".join(f"{k} <= {v}" for k, v in limits.items())
            raise UserError(f"experiment '{target}' has no front point with {said}")
        target = max(fit, key=lambda r: (r["val_accuracy"], -r["macs"]))["run_id"]
    else:
        target = _trial_run_id(client, target)
    run = run_with_role(client, target, "trial")
    if run.info.status != "FINISHED":
        raise UserError(f"trial run '{target}' did not finish (status {run.info.status}): nothing to promote")
    return run


def _trial_run_id(client, target: str) -> str:
    """The run id ``target`` names: itself, the trial run whose trial id it is, or the one
    trial run whose id starts with it. An experiment's name says what is missing."""
    if get_experiment(client, target) is not None:
        raise UserError(
            f"'{target}' is an experiment: name one of its points (a run id, run-id prefix or trial id from "
            f"`prunetune pareto {target}`) or pick the best front point under a cost with --max-macs-ratio R "
            "(or --max-latency-ratio R for a latency search)"
        )
    if re.fullmatch(r"[0-9a-f]{32}", target):
        return target
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return target
    trials = search_all(client, exp_ids, f"tags.`{TRIAL_ID}` = '{target}'") if "'" not in target else []
    if not trials and re.fullmatch(r"[0-9a-f]{4,31}", target):
        trials = [
            r for r in search_all(client, exp_ids, f"tags.`{ROLE}` = 'trial'") if r.info.run_id.startswith(target)
        ]
    if len(trials) > 1:
        raise UserError(f"'{target}' names {len(trials)} trial runs: give more of the run id")
    return trials[0].info.run_id if trials else target


def trial_criterion(trial, cfg: SearchConfig) -> str:
    """The criterion the trial cut its network with: under ``criterion: auto`` the one it
    chose (its tag), else the search's."""
    chosen = trial.data.tags.get(CRITERION)
    if chosen:
        return chosen
    if cfg.trial.criterion == "auto":
        raise UserError(
            f"trial run '{trial.info.run_id}' searched with criterion auto but records no chosen criterion "
            f"(tag {CRITERION}): it cannot be cut again as it was"
        )
    return cfg.trial.criterion


def _download(client, run_id: str, path: str, dst: str) -> Path:
    try:
        return Path(client.download_artifacts(run_id, path, dst))
    except (MlflowException, OSError) as exc:
        raise UserError(f"run '{run_id}' has no artifact '{path}' ({exc})") from None


def promote(target: str, opts: PromoteOptions, tracking_uri: str | None = None, say=print) -> dict:
    """Promote one trial; returns the promote run id and its metrics."""
    client = client_for(tracking_uri)
    trial = resolve_trial_run(client, target, opts.max_macs_ratio, opts.max_latency_ratio)
    cfg, info, spec, baseline, pruned = _cut_as_the_trial_did(client, trial)
    deploy = cfg.latency.settings()  # where the search measured latency (default: torch on this CPU)
    check_runtime(deploy)  # before the fine-tune: a runtime missing here is refused now
    name = f"promote-{trial.info.run_id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = open_promote_run(client, trial, info)  # at the start: the curves appear as they come
    say(f"promoting trial {trial.info.run_id} ({cfg.name}): {opts.epochs} epochs on {opts.workers} Ray Train workers")
    say(f"promote run {run_id}: per-epoch metrics are logged there live")
    live = {"uri": client.tracking_uri, "run_id": run_id}
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(client, run_id, opts.epochs, say, stop), daemon=True)
    follower.start()
    try:
        state, history, resumes = fine_tune(cfg, info, spec, pruned.state_dict(), opts, name, live)
    finally:
        stop.set()
        follower.join(timeout=10)
    if resumes:
        say(f"a worker was lost: training resumed from the checkpoint of epoch(s) {resumes}")
    model = load_weights(
        rebuild(info.arch, spec, info.num_classes, info.in_channels, info.input_size), state, "the promoted checkpoint"
    ).eval()
    metrics = {
        "trial_val_accuracy": float(trial.data.metrics.get("val_accuracy", float("nan"))),
        "val_accuracy": history[-1]["val_accuracy"],
        **_scored(cfg, info, baseline, model, deploy),
    }
    onnx, parity = checked_onnx(model.cpu(), (info.in_channels, info.input_size, info.input_size), say)
    metrics.update(parity)
    tags = {RUNTIME: deploy.key(), **({RESUMED: ",".join(map(str, resumes))} if resumes else {})}
    meta = promoted_meta(trial, cfg, info, spec)
    record_promotion(client, run_id, model.cpu(), meta=meta, metrics=metrics, history=history, opts=opts,
                     tracking_uri=tracking_uri, onnx=onnx, tags=tags)  # fmt: skip
    say(
        f"test_accuracy {metrics['test_accuracy']:.4f} (baseline {metrics['baseline_test_accuracy']:.4f}) at "
        f"{metrics['macs_ratio']:.3f}x MACs; latency on "
        f"{deploy.runtime} ({deploy.device}, batch {deploy.batch_size}) {metrics['latency_ms']:.3f} ms against the "
        f"baseline's {metrics['baseline_latency_ms']:.3f} ms: {metrics['latency_speedup']:.2f}x faster; "
        f"promote run {run_id}"
    )
    return {"run_id": run_id, **metrics}


def _cut_as_the_trial_did(client, trial):
    """The search's config, the trial's spec and the baseline, all from MLflow; the
    baseline cut exactly as the trial cut it (its criterion, PAAM's learned scores) and
    its BN statistics re-estimated, as trials do. Returns (cfg, info, spec, baseline, pruned)."""
    parent_id = trial.data.tags["mlflow.parentRunId"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = validate_config(yaml.safe_load(_download(client, parent_id, "config.yaml", tmp).read_text()))
        spec = ChannelSpec.from_json(_download(client, trial.info.run_id, "spec.json", tmp).read_text())
        baseline_path = _download(client, parent_id, BASELINE_ARTIFACT, tmp)
        splits = load_train_val(cfg.data_config(), "cpu")
        info = ModelInfo(cfg.model.arch, splits.num_classes, splits.in_channels, splits.image_size)
        baseline, _ = load_model(baseline_path, info)
        scores = read_scores(baseline_path)  # PAAM's learned filter scores, when the baseline has them
    criterion = trial_criterion(trial, cfg)
    pruned = prune(
        copy.deepcopy(baseline),
        spec,
        criterion,
        input_shape=(info.in_channels, info.input_size, info.input_size),
        arch=info.arch,
        batches=list(islice(splits.train, 4)) if criterion == "taylor" else None,
        seed=cfg.search.seed,
        learned=scores or None,
    )
    recalibrate_bn(pruned, splits.train, cfg.trial.adaptive_bn_batches or 10, torch.device("cpu"))
    return cfg, info, spec, baseline, pruned


def _scored(cfg: SearchConfig, info: ModelInfo, baseline, model, deploy) -> dict:
    """The promoted network against the baseline: test accuracy (the only read of the test
    split), MACs and params, latency on the training device and on the deployment runtime."""
    shape = (info.in_channels, info.input_size, info.input_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    test_split = load_test(cfg.data_config(), device)
    test = evaluate(model, test_split, device)
    base_test = evaluate(copy.deepcopy(baseline).to(device).eval(), test_split, device)
    cost, base_cost = count_cost(model.cpu(), shape), count_cost(baseline, shape)
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "baseline_test_accuracy": base_test["accuracy"],  # the drop at one glance
        "macs": cost.macs,
        "params": cost.params,
        "macs_ratio": cost.macs / base_cost.macs,
        "params_ratio": cost.params / base_cost.params,
        **speed(baseline, model, shape, device),
        **deploy_latency(baseline, model.cpu(), shape, deploy),
    }


def promoted_meta(trial, cfg: SearchConfig, info: ModelInfo, spec: ChannelSpec) -> dict:
    """What rebuilds the promoted network from data (``MODEL_META``): its architecture,
    sizes, kept counts and the criterion that chose the filters."""
    return {"format": "prunetune/1", **asdict(info), "spec": spec.to_dict(), "criterion": trial_criterion(trial, cfg)}
