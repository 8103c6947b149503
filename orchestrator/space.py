"""The search space: one keep-ratio variable per channel group (or per stage).

``suggest_ratios`` defines the space by run (testable with ``optuna.trial.FixedTrial``);
``distributions`` gives the same space as a dict of Optuna distributions, which is what
Ray's OptunaSearch receives, so warm-start points are honoured (ray issue 35319).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import optuna

from trials.budget import MacsModel
from trials.groups import ChannelGroup
from trials.spec import ChannelSpec

if TYPE_CHECKING:
    from orchestrator.config import SearchConfig


def variables(groups: list[ChannelGroup], granularity: str) -> dict[str, list[str]]:
    """Variable name -> the groups it sets. Names never contain '/'."""
    if granularity == "layer":
        return {g.name: [g.name] for g in groups}
    out: dict[str, list[str]] = {}
    for g in groups:
        out.setdefault(f"stage{g.stage}", []).append(g.name)
    return out


def grid(low: float, high: float, step: float) -> list[float]:
    n = int(math.floor((high - low) / step + 1e-9))
    return [round(low + i * step, 10) for i in range(n + 1)]


def _upper(low: float, high: float, step: float) -> float:
    return grid(low, high, step)[-1]  # Optuna needs high - low to be a multiple of step


def distributions(
    names: list[str], low: float, high: float, step: float
) -> dict[str, optuna.distributions.FloatDistribution]:
    upper = _upper(low, high, step)
    return {n: optuna.distributions.FloatDistribution(low, upper, step=step) for n in names}


def suggest_ratios(trial: optuna.Trial, names: list[str], low: float, high: float, step: float) -> dict[str, float]:
    """Define-by-run form of ``distributions``: one suggest_float per variable."""
    upper = _upper(low, high, step)
    return {n: trial.suggest_float(n, low, upper, step=step) for n in names}


SPREAD = "spread"  # search.spread: how far the ratios depart from their mean (0: uniform, 1: as sampled)


def group_ratios(params: Mapping[str, float], var_to_groups: Mapping[str, list[str]]) -> dict[str, float]:
    """Expand sampled variables into a keep ratio per group; with ``spread`` among the
    params, each ratio is first pulled towards the variables' mean (``search.spread``)."""
    ratios = {v: float(params[v]) for v in var_to_groups}
    if SPREAD in params:
        mean = sum(ratios.values()) / len(ratios)
        ratios = {v: mean + float(params[SPREAD]) * (r - mean) for v, r in ratios.items()}
    return {g: ratios[v] for v, gs in var_to_groups.items() for g in gs}


def warm_start_points(names: list[str], levels: list[float], low: float, high: float, step: float) -> list[dict]:
    """Uniform configurations (one ratio everywhere), snapped onto the grid, deduplicated."""
    values = grid(low, high, step)
    points, seen = [], set()
    for level in levels:
        v = min(values, key=lambda x: abs(x - level))
        if v not in seen:
            seen.add(v)
            points.append(dict.fromkeys(names, v))
    return points


REUSE = "_reuse"  # in a trial's config: the stored result of the same configuration (orchestrator.searcher)
FILL = "_fill"  # in a fill trial's config: the trial whose shape it carries into a front gap (orchestrator.searcher)
TARGET = "macs_target"  # front_targets: the trial's sampled MACs target (a fraction of the baseline's)


def target_distribution(keep_min: float) -> optuna.distributions.FloatDistribution:
    """MACs targets from about what keep_min everywhere leaves (at least 1%) to all of them."""
    low = max(0.01, round(keep_min * keep_min, 2))
    return optuna.distributions.FloatDistribution(low, 1.0, step=0.01)


def snap_target(value: float, keep_min: float) -> float:
    d = target_distribution(keep_min)
    return round(min(d.high, max(d.low, round(value / d.step) * d.step)), 2)


def search_space(cfg: SearchConfig, names: list[str]) -> dict:
    """The space a search samples: a keep ratio per variable, and with ``front_targets``
    each trial's MACs target."""
    s = cfg.search
    space = distributions(names, s.keep_min, s.keep_max, s.keep_step)
    if s.front_targets:  # front mode only (the config says so)
        space[TARGET] = target_distribution(s.keep_min)
    if s.spread:
        space[SPREAD] = optuna.distributions.FloatDistribution(0.0, 1.0, step=0.05)
    return space


def is_uniform(params: Mapping) -> bool:
    """Whether a configuration (sampled values, or a trial's params as MLflow holds them)
    is the uniform cut: one keep ratio everywhere, or spread 0."""
    if SPREAD in params and float(params[SPREAD]) == 0.0:
        return True
    return len({v for k, v in params.items() if k not in (TARGET, SPREAD) and not k.startswith("_")}) <= 1


def with_spread(cfg: SearchConfig, points: list[dict]) -> list[dict]:
    """search.spread: the uniform warm starts at spread 0 (where the sampler starts from),
    the methods' allocations at 1 (as they are)."""
    if not cfg.search.spread:
        return points
    return [{**p, SPREAD: 0.0 if is_uniform(p) else 1.0} for p in points]


def with_targets(cfg: SearchConfig, graph, var_map: dict[str, list[str]], points: list[dict]) -> list[dict]:
    """front_targets: each warm-start point gets, as its target, the MACs its own counts keep."""
    s = cfg.search
    if not s.front_targets:
        return points
    macs = MacsModel(graph)
    full = macs({g.name: g.channels for g in graph.groups})
    out = []
    for p in points:
        spec = ChannelSpec.from_ratios(graph.groups, group_ratios(p, var_map), s.round_to, cfg.model.arch)
        out.append({**p, TARGET: snap_target(macs(spec.channels) / full, s.keep_min)})
    return out


SWEEP_TOP = 0.9  # search.sweep: its costliest target (above it, the baseline's own point stands)


def sweep_targets(s) -> list[float]:
    """search.sweep's MACs targets: evenly spread from the lowest reachable to SWEEP_TOP."""
    low = target_distribution(s.keep_min).low
    if s.sweep == 1:
        return [snap_target((low + SWEEP_TOP) / 2, s.keep_min)]
    return [snap_target(low + (SWEEP_TOP - low) * i / (s.sweep - 1), s.keep_min) for i in range(s.sweep)]


def uniform_sweep_points(cfg: SearchConfig, graph, names: list[str]) -> list[dict]:
    """search.sweep with no method named: the uniform cut at each sweep target, as the keep
    ratio on the search grid whose MACs come closest."""
    s = cfg.search
    macs = MacsModel(graph)
    full = macs({g.name: g.channels for g in graph.groups})
    by_ratio = {}
    for r in grid(s.keep_min, s.keep_max, s.keep_step):
        spec = ChannelSpec.from_ratios(graph.groups, dict.fromkeys((g.name for g in graph.groups), r), s.round_to,
                                       cfg.model.arch)  # fmt: skip
        by_ratio[r] = macs(spec.channels) / full
    picks = [min(by_ratio, key=lambda r: abs(by_ratio[r] - t)) for t in sweep_targets(s)]
    return [dict.fromkeys(names, r) for r in dict.fromkeys(picks)]


def warm_levels(s) -> list[float]:
    """The uniform warm-start levels worth a trial: in budget mode every uniform point is
    scaled onto the same MACs target, so one of them stands for all."""
    return s.warm_start[:1] if s.mode == "budget" else list(s.warm_start)


def dedup(items: list, key=lambda point: point) -> list:
    """The items in order, each point (``key(item)``, a dict) once."""
    seen, out = set(), []
    for item in items:
        k = tuple(sorted(key(item).items()))
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out
