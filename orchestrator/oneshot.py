"""``prunetune prune``: one allocation by a method, pruned, fine-tuned, logged as one run.

Methods: ``adapruner`` (counts from BN importance, one global factor bisected onto the
MACs target), ``uniform`` (every group keeps the same share, bisected onto the target)
``paam`` (counts from thresholding the learned scores of a PAAM baseline; with a
MACs target, those counts are scaled onto it) and ``sensitivity`` (the per-group
sensitivity map, one global threshold on the accepted loss of accuracy bisected onto the
MACs target: NVIDIA ModelOpt FastNAS's and AIMET's default, with coupled layers cut as
one group). The fine-tune is the config's trial
fine-tune (its criterion, ``auto`` included, its epochs, its regularizer).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from orchestrator.baseline import Baseline, prepare_baseline
from orchestrator.config import SearchConfig, dump_config
from orchestrator.sensitivity import log_sensitivity
from orchestrator.store import client_for, experiment_id
from orchestrator.tracking import record_prune
from trials.adapruner import allocate
from trials.baseline import save_checkpoint
from trials.budget import project_ratios
from trials.errors import UserError
from trials.groups import build_graph
from trials.regularizers import threshold_spec
from trials.spec import ChannelSpec
from trials.trial import TrialConfig, resolve_device, run_trial

METHODS = ("adapruner", "uniform", "paam", "sensitivity")


def check_method(method: str, macs_target: float | None) -> None:
    """Refuse a bad method or target before any baseline is trained."""
    if method not in METHODS:
        raise UserError(f"--method '{method}' is unknown: use one of {', '.join(METHODS)}")
    if macs_target is not None and not 0 < macs_target < 1:
        raise UserError(f"--macs-target must be in (0, 1), got {macs_target}")
    if method in ("adapruner", "uniform", "sensitivity") and macs_target is None:
        raise UserError(f"--method {method} needs --macs-target (the fraction of baseline MACs to keep)")


def method_spec(cfg: SearchConfig, base: Baseline, method: str, macs_target: float | None, say=print) -> ChannelSpec:
    """The per-group counts ``method`` gives for the baseline."""
    check_method(method, macs_target)
    info, s = base.info, cfg.search
    graph = build_graph(base.model, (info.in_channels, info.input_size, info.input_size), info.arch)
    kw = {"keep_min": s.keep_min, "keep_max": s.keep_max, "round_to": s.round_to, "arch": info.arch}
    kw["num_classes"] = info.num_classes
    target = None if macs_target is None else macs_target * base.metrics["macs"]
    if method == "adapruner":
        return allocate(graph, target, **kw)[0]
    if method == "uniform":
        return project_ratios(graph, {g.name: 1.0 for g in graph.groups}, target, **kw)[0]
    if method == "sensitivity":
        from orchestrator.sensitivity import sensitivity_map
        from trials.sensitivity import allocate as by_sensitivity

        smap = sensitivity_map(cfg, base, graph, say)
        spec, _, threshold = by_sensitivity(graph, smap, target, **kw)
        say(f"sensitivity: threshold {100 * threshold:.2f} points of val accuracy per group")
        return spec
    if not base.scores:
        raise UserError("--method paam needs a baseline trained with baseline.regularizer: paam")
    spec = threshold_spec(base.scores, graph.groups, cfg.baseline.paam_threshold, info.arch)
    if target is None:
        return spec
    return project_ratios(graph, spec.ratios(graph.groups), target, **kw)[0]


def run_prune(cfg: SearchConfig, method: str, macs_target: float | None, say=print) -> dict:
    """Prune the baseline by ``method``, fine-tune it as a trial does, log one MLflow run."""
    check_method(method, macs_target)
    device = resolve_device(cfg.trial.device) if cfg.trial.gpu > 0 else "cpu"
    cfg.storage_dir().mkdir(parents=True, exist_ok=True)
    base = prepare_baseline(cfg, device, say)
    from orchestrator.latency import resolve_round_to

    cfg = resolve_round_to(cfg, base, say)  # round_to: auto, measured here
    spec = method_spec(cfg, base, method, macs_target, say)
    t = cfg.trial
    say(f"{method}: {sum(spec.channels.values())} channels kept over {len(spec.channels)} groups; fine-tuning ...")
    tc = TrialConfig(
        arch=cfg.model.arch,
        baseline={k: v.detach().clone() for k, v in base.model.state_dict().items()},
        data=cfg.data_config(),
        spec=spec,
        learned_scores={k: v.tolist() for k, v in base.scores.items()} or None,
        device=str(device),
        **t.trial_kwargs(cfg.search.seed),
    )
    result = run_trial(tc, report=lambda m: say(f"  epoch {m['epoch']}: val_accuracy {m['val_accuracy']:.4f}"))
    state = result.pop("state_dict")
    result.pop("regularizer_history", None)
    texts = {"config.yaml": dump_config(cfg), "finetune.json": json.dumps(asdict(tc.finetune))}
    if result.get("criterion_scores"):
        texts["criterion_scores.json"] = json.dumps(result["criterion_scores"], sort_keys=True)
    from trials.prune import rebuild

    model = rebuild(cfg.model.arch, spec, base.info.num_classes, base.info.in_channels, base.info.input_size)
    model.load_state_dict(state)
    client = client_for(cfg.tracking.uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(
            Path(tmp) / "pruned.pt", model, base.info, spec, {"val_accuracy": result["val_accuracy"]}
        )
        rid = record_prune(
            client,
            experiment_id(client, cfg.name),
            method=method,
            macs_target=macs_target,
            result={"criterion": t.criterion, **result},
            baseline=base.metrics,
            texts=texts,
            checkpoint=path,
        )
    if method == "sensitivity":  # the map the counts came from (cached: computed for method_spec)
        from orchestrator.sensitivity import sensitivity_map

        graph = build_graph(base.model, (base.info.in_channels,) + (base.info.input_size,) * 2, base.info.arch)
        log_sensitivity(client, rid, sensitivity_map(cfg, base, graph, lambda _m: None))
    return {"run_id": rid, "method": method, **{k: v for k, v in result.items() if k != "spec"}}
