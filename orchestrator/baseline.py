"""The search's starting point: the trained, unpruned network every trial cuts, loaded
from a checkpoint, from the storage cache, or trained here (regularized when
``baseline.regularizer`` says so); and the warm-start points the methods derive from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from orchestrator.config import SearchConfig
from orchestrator.space import grid, sweep_targets
from trials.adapruner import allocate
from trials.baseline import ModelInfo, load_model, read_scores, save_checkpoint, train_baseline
from trials.cost import count_cost
from trials.data import load_train_val
from trials.errors import UserError
from trials.regularizers import bn_sparsity, make_regularizer, threshold_spec
from trials.train import FinetuneConfig, evaluate


@dataclass
class Baseline:
    model: nn.Module  # on the CPU
    metrics: dict  # val_accuracy, val_loss, macs, params (+ bn_sparsity when regularized)
    info: ModelInfo
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # PAAM's learned scores
    history: list[dict] = field(default_factory=list)  # the regularizer's course while training


def prepare_baseline(cfg: SearchConfig, device, say=print) -> Baseline:
    """Load or train the baseline (regularized when ``baseline.regularizer`` says so).

    A trained baseline is saved under the storage directory and reused by later runs of
    the same config; a regularized one is trained on from ``baseline.path`` when given.
    """
    device = torch.device(device)
    b = cfg.baseline
    data = cfg.data_config(b.batch_size)
    splits = load_train_val(data, device)
    info = ModelInfo(cfg.model.arch, splits.num_classes, splits.in_channels, splits.image_size)
    saved = cfg.storage_dir() / ("baseline.pt" if b.regularizer == "none" else f"baseline-{b.regularizer}.pt")
    history: list[dict] = []
    if (b.path and b.regularizer == "none") or saved.is_file():
        path = b.path if b.regularizer == "none" and b.path else str(saved)  # the user's checkpoint first
        model, spec = load_model(path, info)
        if spec is not None:
            raise UserError(f"baseline.path '{path}' holds a pruned network; a search starts from an unpruned one")
        scores = read_scores(path)
        say(f"baseline: loaded {path}")
    else:
        init = None
        if b.path:
            init, spec = load_model(b.path, info)
            if spec is not None:
                raise UserError(
                    f"baseline.path '{b.path}' holds a pruned network; a search starts from an unpruned one"
                )
        how = "training" if init is None else f"training on from {b.path}"
        with_reg = "" if b.regularizer == "none" else f" with regularizer {b.regularizer}"
        say(f"baseline: {how} {info.arch} on {data.name} for {b.epochs:g} epochs{with_reg} ...")
        reg = make_regularizer(b.regularizer, **b.regularizer_options())
        ft = FinetuneConfig(epochs=b.epochs, lr=b.lr, seed=cfg.search.seed)
        model, trained = train_baseline(info, data, ft, device, log=say, reg=reg, init=init)
        scores, history = trained.get("scores", {}), trained.get("regularizer_history", [])
        save_checkpoint(saved, model, info, scores=scores)
        say(f"baseline: saved to {saved}")
    acc = evaluate(model, splits.val, device)
    shape = (info.in_channels, info.input_size, info.input_size)
    cost = count_cost(model.cpu(), shape)
    metrics = {"val_accuracy": acc["accuracy"], "val_loss": acc["loss"], "macs": cost.macs, "params": cost.params}
    if b.regularizer == "dafp":
        metrics["bn_sparsity"] = bn_sparsity(model, b.sparsity_threshold)
    needs_scores = cfg.trial.criterion == "paam" or "paam" in cfg.search.warm_start_methods
    if needs_scores and not scores:
        raise UserError("criterion paam / the paam warm start: the baseline carries no learned scores")
    return Baseline(model, metrics, info, scores, history)


SENSITIVITY_FRONT_TARGETS = (0.25, 0.5, 0.75)  # front mode: the sensitivity warm start's MACs targets


def method_points(
    cfg: SearchConfig, base: Baseline, graph, var_map: dict[str, list[str]], smap=None
) -> list[tuple[str, dict]]:
    """Warm-start points from the methods named in ``search.warm_start_methods``, as
    sampled variables on the search grid (``smap``: the sensitivity map, when named),
    each with the method it came from ("sensitivity@0.5": the map bisected onto that target)."""
    s = cfg.search
    values = grid(s.keep_min, s.keep_max, s.keep_step)
    allocations = []
    sweep = sweep_targets(s) if s.sweep else None
    for method in s.warm_start_methods:
        if method == "adapruner":
            # a latency or params target is taken as a MACs target here: trials scale onto the objective
            for t in sweep or [s.budget_target or 0.5]:
                kw = {"keep_min": s.keep_min, "keep_max": s.keep_max, "round_to": s.round_to}
                spec, _ = allocate(graph, t * base.metrics["macs"], **kw)
                allocations.append((f"{method}@{t:g}" if sweep else method, spec.ratios(graph.groups)))
        elif method == "sensitivity":
            from trials.sensitivity import allocate as by_sensitivity

            for t in [s.budget_target] if s.budget_target else sweep or SENSITIVITY_FRONT_TARGETS:
                kw = {"keep_min": s.keep_min, "keep_max": s.keep_max, "round_to": s.round_to}
                spec, _, _ = by_sensitivity(graph, smap, t * base.metrics["macs"], **kw)
                allocations.append((f"{method}@{t:g}", spec.ratios(graph.groups)))
        else:  # paam: the filters whose learned score clears the threshold
            spec = threshold_spec(base.scores, graph.groups, cfg.baseline.paam_threshold)
            allocations.append((method, spec.ratios(graph.groups)))
    points = []
    for origin, ratios in allocations:
        point = {}
        for var, groups in var_map.items():
            r = sum(ratios[g] for g in groups) / len(groups)
            point[var] = min(values, key=lambda v: abs(v - r))
        points.append((origin, point))
    return points
