"""One trial: prune the baseline to a configuration, briefly fine-tune, measure.

``run_trial(config, report)`` is all the orchestrator calls; it has no Ray and no
MLflow in it, so every step runs and is tested on a CPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice

import torch
from torch import nn

from trials.adapruner import choose_criterion
from trials.baseline import ModelInfo, load_model, load_weights
from trials.budget import MacsModel, project_ratios
from trials.cost import count_cost
from trials.criteria import AUTO_CANDIDATES
from trials.data import DataConfig, load_train_val
from trials.errors import TrialFailed, UserError
from trials.groups import build_graph
from trials.latency import OBJECTIVES, LatencySettings, Timing, measure_side_by_side
from trials.latency_table import LatencyTable
from trials.models import create_model
from trials.prune import apply_spec, rebuild
from trials.regularizers import make_regularizer
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate, finetune, recalibrate_bn

Report = Callable[[dict], None]
EVALUATIONS = ("finetune", "adaptive_bn")


@dataclass
class TrialConfig:
    arch: str
    baseline: Mapping[str, torch.Tensor] | str  # a state_dict, or a checkpoint path
    data: DataConfig = field(default_factory=DataConfig)
    spec: ChannelSpec | None = None  # exact counts per group ...
    keep: float | Mapping[str, float] | None = None  # ... or keep ratios (one, or per group)
    round_to: int = 1
    objective: str = "macs"  # what target budgets: macs, params or latency (then ``latency`` says where)
    target: float | None = None  # budget mode: scale keep ratios to this fraction of the baseline's objective
    keep_min: float = 0.05  # bounds of the scaled ratios in budget mode
    keep_max: float = 1.0
    criterion: str = "l1"  # one of trials.criteria.CRITERIA, or "auto" (AdaPruner's choice per spec)
    auto_candidates: tuple[str, ...] = AUTO_CANDIDATES
    auto_batches: int = 4  # train batches for BN recalibration and val batches to score with
    learned_scores: Mapping[str, list[float]] | None = None  # PAAM scores (group -> scores)
    taylor_batches: int = 4
    adaptive_bn_batches: int = 0  # > 0: recalibrate BN before fine-tuning and evaluation
    evaluation: str = "finetune"  # or "adaptive_bn": EagleEye, BN recalibration (adaptive_bn_batches) and no training
    screen: bool = False  # report the adaptive-BN score as epoch 0 (fidelity 0) before the fine-tune
    regularizer: str = "none"  # "ffr": feature-flow regularization during the fine-tune
    regularizer_options: Mapping[str, float] = field(default_factory=dict)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    latency: LatencySettings | None = None  # set to also measure latency, side by side with the baseline
    latency_table: Mapping | None = None  # a LatencyTable's dict: latency predicted, budget mode bisects on it
    latency_tolerance: float = 0.05  # budget mode on latency: measured within this share of the target
    timer: Timer | None = None  # where latency is timed (default: here, measure_side_by_side with ``latency``)
    device: str = "auto"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trial.device '{name}': no CUDA device is available here")
    return torch.device(name)


def _baseline_model(cfg: TrialConfig, info: ModelInfo) -> nn.Module:
    if isinstance(cfg.baseline, str):
        return load_model(cfg.baseline, info)[0]
    model = create_model(info.arch, num_classes=info.num_classes, in_channels=info.in_channels)
    return load_weights(model, dict(cfg.baseline), "the baseline state_dict")


def _target_spec(cfg: TrialConfig, groups: list) -> ChannelSpec:
    if cfg.spec is not None and cfg.keep is not None:
        raise UserError("trial: give either spec or keep ratios, not both")
    if cfg.spec is not None:
        return ChannelSpec(dict(cfg.spec.channels), cfg.arch)
    return ChannelSpec.from_ratios(groups, 1.0 if cfg.keep is None else cfg.keep, cfg.round_to, cfg.arch)


def _finite(metrics: dict, where: str) -> dict:
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise TrialFailed(f"{where}: metric '{k}' is {v}")
    return metrics


Timer = Callable[[list[nn.Module], tuple[int, ...]], list[Timing]]  # networks, input shape -> their timings


def _time(config: TrialConfig, models: list[nn.Module], shape: tuple[int, ...]) -> list[Timing]:
    """The networks timed side by side where ``config.timer`` says (default: here)."""
    if config.timer is not None:
        return config.timer(models, shape)
    return measure_side_by_side(models, shape, config.latency)


def _budget(config: TrialConfig, graph, info: ModelInfo, base, table, unpruned, shape) -> dict:
    """How budget mode scales onto ``config.target``: the objective's model (bisected on),
    its real value per spec (each round's check) and the goal in the model's units."""
    if config.objective == "macs":
        return {"target": config.target * base.macs}
    if config.objective == "params":
        rebuilt = lambda spec: rebuild(config.arch, spec, info.num_classes, shape[0], shape[-1])  # noqa: E731
        return {
            "target": config.target * base.params,
            "cost": MacsModel(graph, params=True),
            "real": lambda spec: count_cost(rebuilt(spec), shape).params,
        }
    if table is None or config.latency is None:
        raise UserError("trial: a latency target needs latency settings and a latency table")
    full_pred = table.predict({g.name: g.channels for g in graph.groups})

    def measured(spec: ChannelSpec) -> float:  # in the table's units: measured ratio x predicted baseline
        net = rebuild(config.arch, spec, info.num_classes, shape[0], shape[-1])
        cut, full = _time(config, [net, copy.deepcopy(unpruned)], shape)
        return cut.median_ms / full.median_ms * full_pred

    return {
        "target": config.target * full_pred,
        "cost": table.predict,
        "real": measured,
        "tol": config.latency_tolerance,
    }


def run_trial(config: TrialConfig, report: Report | None = None) -> dict:
    """Prune, optionally recalibrate BN, fine-tune, evaluate, count; return final metrics.

    ``report(metrics)`` is called after each fine-tuning epoch with the epoch's val
    metrics. The result holds ``val_accuracy``, ``val_loss``, ``macs``, ``params``,
    ``macs_ratio``, ``params_ratio`` and ``spec`` (a dict); a NaN loss raises
    ``TrialFailed``.
    """
    t0, started_at = time.perf_counter(), time.time()
    _check(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.finetune.seed)
    splits = load_train_val(config.data, device)
    side = splits.image_size
    shape = (splits.in_channels, side, side)
    info = ModelInfo(config.arch, splits.num_classes, splits.in_channels, side)
    model = _baseline_model(config, info)
    base = count_cost(model, shape)
    graph = build_graph(model, shape, config.arch)
    table = LatencyTable.from_dict(config.latency_table) if config.latency_table else None
    unpruned = copy.deepcopy(model) if config.latency else None  # timed beside the pruned network
    spec = _spec(config, graph, info, base, table, unpruned, shape)
    model, extra = _cut(config, model, graph, spec, splits, shape, device)
    del graph
    cost = count_cost(model, shape)
    costs = {"macs": cost.macs, "macs_ratio": cost.macs / base.macs}
    last = _train(config, model, splits, device, costs, extra, report)
    result = {
        **extra,
        "val_accuracy": last["accuracy"],
        "val_loss": last["loss"],
        "epoch": last["epoch"],
        **costs,
        "params": cost.params,
        "params_ratio": cost.params / base.params,
        "baseline_macs": base.macs,
        "baseline_params": base.params,
        "spec": spec.to_dict(),
        "trial_seconds": time.perf_counter() - t0,
        "started_at": started_at,  # wall clock (s since the epoch)
    }
    if config.latency:
        pruned, full = _time(config, [copy.deepcopy(model).cpu(), unpruned], shape)
        result.update(
            latency_ms=pruned.median_ms,
            latency_spread_ms=pruned.spread_ms,
            baseline_latency_ms=full.median_ms,
            latency_ratio=pruned.median_ms / full.median_ms,
        )
    if table is not None:
        result["latency_pred_ms"] = table.predict(spec.channels)
    result["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return result


def _check(config: TrialConfig) -> None:
    """What can be refused before any work."""
    if config.objective not in OBJECTIVES:
        raise UserError(f"trial.objective '{config.objective}' is unknown: use one of {', '.join(OBJECTIVES)}")
    if config.evaluation not in EVALUATIONS:
        raise UserError(f"trial.evaluation '{config.evaluation}' is unknown: use one of {', '.join(EVALUATIONS)}")


def _spec(config: TrialConfig, graph, info: ModelInfo, base, table, unpruned, shape) -> ChannelSpec:
    """The counts to keep: as given, or (budget mode) scaled onto the objective's target."""
    spec = _target_spec(config, graph.groups)
    if config.target is None:
        return spec
    raw = config.keep if isinstance(config.keep, Mapping) else spec.ratios(graph.groups)
    spec, _ = project_ratios(
        graph,
        raw,
        keep_min=config.keep_min,
        keep_max=config.keep_max,
        round_to=config.round_to,
        arch=config.arch,
        num_classes=info.num_classes,
        **_budget(config, graph, info, base, table, unpruned, shape),
    )
    return spec


def _cut(config: TrialConfig, model: nn.Module, graph, spec: ChannelSpec, splits, shape, device):
    """Cut ``model`` to ``spec`` by the criterion (``auto``: the one whose cut scores best
    after adaptive BN); the pruned network and what the choice logs."""
    learned = {k: torch.as_tensor(v) for k, v in config.learned_scores.items()} if config.learned_scores else None
    criterion, extra = config.criterion, {}
    if criterion == "auto":
        criterion, by_criterion = choose_criterion(
            model,
            shape,
            spec,
            splits.train,
            splits.val,
            device,
            candidates=config.auto_candidates,
            batches=config.auto_batches,
            taylor_batches=config.taylor_batches,
            seed=config.finetune.seed,
            learned=learned,
        )
        extra = {"criterion": criterion, "criterion_scores": by_criterion}
    batches = None
    if criterion == "taylor":
        batches = [(x.cpu(), y.cpu()) for x, y in islice(splits.train, config.taylor_batches)]
    apply_spec(graph, spec, criterion, batches=batches, seed=config.finetune.seed, learned=learned)
    return copy.deepcopy(model), extra  # the copy drops the graph's hooks and references


def _train(config: TrialConfig, model: nn.Module, splits, device, costs: dict, extra: dict, report) -> dict:
    """Recalibrate BN, fine-tune (or only recalibrate: EagleEye), evaluate on val after
    each epoch; the last evaluation (accuracy, loss, epoch). ``report`` hears each epoch,
    and the adaptive-BN score first as epoch 0 with ``config.screen``."""
    last: dict = {}

    def on_epoch(epoch: int, train_loss: float) -> None:
        if config.adaptive_bn_batches:
            recalibrate_bn(model, splits.train, config.adaptive_bn_batches, device)
        m = _finite(evaluate(model, splits.val, device), f"epoch {epoch}")
        last.update(m, epoch=epoch)
        if report is not None:
            report(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_accuracy": m["accuracy"],
                    "val_loss": m["loss"],
                    **costs,
                }
            )

    if config.evaluation == "adaptive_bn":  # EagleEye: BN statistics re-estimated, no training
        recalibrate_bn(model, splits.train, config.adaptive_bn_batches, device)  # 0: as cut
        m = _finite(evaluate(model, splits.val, device), "adaptive-BN evaluation")
        last.update(m, epoch=0)
        return last
    if config.adaptive_bn_batches:
        recalibrate_bn(model, splits.train, config.adaptive_bn_batches, device)
    if config.screen and report is not None:  # a scheduler may stop the trial on this score
        m = _finite(evaluate(model, splits.val, device), "adaptive-BN evaluation")
        report({"epoch": 0, "fidelity": 0, "val_accuracy": m["accuracy"], "val_loss": m["loss"], **costs})
    reg = make_regularizer(config.regularizer, **dict(config.regularizer_options))
    finetune(model, splits.train, config.finetune, device, on_epoch, reg=reg)
    if reg is not None and reg.history:
        extra["regularizer_history"] = reg.history
    return last
