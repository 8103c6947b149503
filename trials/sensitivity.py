"""Sensitivity analysis, group-aware, and the allocation it gives (FastNAS/AIMET style).

For every channel group (the coupled layers a cut must change together), the network
is cut at that group alone to each of several keep ratios, its BN statistics are
re-estimated on a few training batches (adaptive BN), and it is scored on the val
split. The curve of a group is then made monotone (cutting more is never scored
better than cutting less), so that one global threshold on the accepted loss of
accuracy gives, for each group, the fewest channels that stay within it. Bisection on
that threshold lands the allocation on a MACs target; the last gap is closed by the
budget projection every method shares (``trials.budget.project_ratios``).

One group's curve is one independent job (``group_curve``): the orchestrator runs them
as Ray tasks over the cluster and caches the map per baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice

import torch

from trials.baseline import ModelInfo
from trials.budget import MacsModel, project_ratios
from trials.data import DataConfig, load_train_val
from trials.errors import UserError
from trials.groups import ChannelGraph
from trials.prune import prune, rebuild
from trials.spec import ChannelSpec, round_channels
from trials.train import evaluate, recalibrate_bn

FORMAT = "prunetune-sensitivity/1"


def keep_levels(keep_min: float, count: int) -> tuple[float, ...]:
    """``count`` keep ratios from ``keep_min`` up to (not including) 1.0, evenly spaced."""
    if count < 1:
        raise UserError(f"sensitivity.levels must be at least 1, got {count}")
    step = (1.0 - keep_min) / count
    return tuple(round(keep_min + i * step, 6) for i in range(count))


@dataclass(frozen=True)
class SensitivityMap:
    """Val accuracy after cutting one group alone, per group and keep ratio.

    ``levels`` ascend and end at 1.0 (the uncut network, ``base``); ``raw`` is what was
    measured, ``scores`` the monotone curves the allocation reads."""

    levels: tuple[float, ...]
    raw: dict[str, list[float]]
    base: float
    channels: dict[str, int]
    scores: dict[str, list[float]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", {g: monotone(v, self.base) for g, v in self.raw.items()})

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "levels": list(self.levels),
            "base": self.base,
            "channels": dict(self.channels),
            "raw": {g: list(v) for g, v in self.raw.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> SensitivityMap:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise UserError(f"sensitivity map: not a {FORMAT} document")
        return cls(tuple(data["levels"]), {g: list(v) for g, v in data["raw"].items()}, data["base"], data["channels"])

    def keep_ratio(self, group: str, threshold: float) -> float:
        """The smallest keep ratio of ``group`` whose (interpolated, monotone) score stays
        within ``threshold`` of the uncut network's."""
        floor = self.base - threshold
        xs, ys = self.levels, self.scores[group]
        if ys[0] >= floor:
            return xs[0]
        for i in range(1, len(xs)):
            if ys[i] >= floor:
                x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
                return x1 if y1 == y0 else x0 + (floor - y0) * (x1 - x0) / (y1 - y0)
        return 1.0

    def ratios(self, threshold: float) -> dict[str, float]:
        return {g: self.keep_ratio(g, threshold) for g in self.scores}

    def table(self) -> dict[str, list]:
        """Columns for a table: group, channels, then the monotone score at each level."""
        cols: dict[str, list] = {"group": list(self.scores), "channels": [self.channels[g] for g in self.scores]}
        for i, level in enumerate(self.levels):
            cols[f"keep_{level:.3f}"] = [self.scores[g][i] for g in self.scores]
        return cols


def monotone(raw: Sequence[float], base: float) -> list[float]:
    """Scores over ascending keep ratios, made non-decreasing from the top down: a score
    is never above the one of keeping more (so one value at 1.0, ``base``, caps them all)."""
    out = list(raw)
    out[-1] = base
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], out[i + 1])
    return out


def group_curve(
    arch: str,
    info: ModelInfo,
    state: Mapping[str, torch.Tensor],
    group: str,
    channels: int,
    levels: Sequence[float],
    data: DataConfig,
    *,
    criterion: str = "l1",
    round_to: int = 1,
    calib_batches: int = 10,
    val_batches: int | None = None,
    device: str = "cpu",
) -> list[float]:
    """Val accuracy of the baseline cut at ``group`` alone to each keep ratio of ``levels``
    (below 1.0), after adaptive BN. Everything else keeps all its channels."""
    device = torch.device(device)
    splits = load_train_val(data, device)
    val = list(islice(splits.val, val_batches)) if val_batches else splits.val
    shape = (info.in_channels, info.input_size, info.input_size)
    out = []
    for level in levels:
        kept = round_channels(level * channels, channels, round_to)
        model = rebuild(arch, None, info.num_classes, info.in_channels, info.input_size)
        model.load_state_dict(state)
        if kept < channels:
            torch.manual_seed(0)
            prune(model, ChannelSpec({group: kept}, arch), criterion, input_shape=shape, arch=arch)
        recalibrate_bn(model, splits.train, calib_batches, device)
        out.append(evaluate(model, val, device)["accuracy"])
    return out


def base_score(
    arch: str, info: ModelInfo, state: Mapping, data: DataConfig, *, val_batches: int | None = None, device="cpu"
) -> float:
    """The uncut network's val accuracy on the batches the curves are scored on."""
    device = torch.device(device)
    splits = load_train_val(data, device)
    val = list(islice(splits.val, val_batches)) if val_batches else splits.val
    model = rebuild(arch, None, info.num_classes, info.in_channels, info.input_size)
    model.load_state_dict(state)
    return evaluate(model, val, device)["accuracy"]


def allocate(
    graph: ChannelGraph,
    smap: SensitivityMap,
    target_macs: float,
    *,
    keep_min: float = 0.05,
    keep_max: float = 1.0,
    round_to: int = 1,
    arch: str | None = None,
    num_classes: int = 10,
) -> tuple[ChannelSpec, int, float]:
    """Bisect one global threshold (accepted loss of val accuracy, per group) onto
    ``target_macs``; returns the spec, its counted MACs and the threshold."""
    missing = [g.name for g in graph.groups if g.name not in smap.scores]
    if missing:
        raise UserError(f"sensitivity map: no curve for group '{missing[0]}' (a map of another network?)")
    macs = MacsModel(graph)

    def spec_at(t: float) -> ChannelSpec:
        r = {g: min(keep_max, max(keep_min, v)) for g, v in smap.ratios(t).items()}
        return ChannelSpec.from_ratios(graph.groups, r, round_to, arch)

    lo, hi = 0.0, max(smap.base - min(min(v) for v in smap.scores.values()), 0.0) + 1e-6
    if macs(spec_at(lo).channels) <= target_macs:  # nothing needs to give: the target is loose
        hi = lo
    for _ in range(40):
        mid = (lo + hi) / 2
        if macs(spec_at(mid).channels) > target_macs:
            lo = mid
        else:
            hi = mid
    threshold = hi
    ratios = spec_at(threshold).ratios(graph.groups)
    spec, real = project_ratios(
        graph,
        ratios,
        target_macs,
        keep_min=keep_min,
        keep_max=keep_max,
        round_to=round_to,
        arch=arch,
        num_classes=num_classes,
    )
    return spec, real, threshold
