"""ChannelSpec: group name -> number of channels kept. The unit a search proposes.

A spec names only the groups it cuts; a group it leaves out keeps all its channels.
With the architecture name it rebuilds the pruned network exactly (see prune.rebuild).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trials.errors import UserError
from trials.groups import ChannelGroup


@dataclass(frozen=True)
class ChannelSpec:
    channels: dict[str, int] = field(default_factory=dict)
    arch: str | None = None

    def to_dict(self) -> dict:
        return {"arch": self.arch, "channels": dict(self.channels)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ChannelSpec:
        if not isinstance(data, Mapping) or not isinstance(data.get("channels"), Mapping):
            raise UserError("spec: expected an object with a 'channels' mapping of group -> count")
        channels = {}
        for name, count in data["channels"].items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise UserError(f"spec: group '{name}' must keep an integer count, got {count!r}")
            channels[str(name)] = count
        return cls(channels=channels, arch=data.get("arch"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ChannelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"spec: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def from_ratios(
        cls,
        groups: Iterable[ChannelGroup],
        ratios: float | Mapping[str, float],
        round_to: int = 1,
        arch: str | None = None,
    ) -> ChannelSpec:
        """Keep ``ratio * channels`` per group, rounded to a multiple of ``round_to``.

        A group whose count is not itself a multiple of ``round_to`` may keep all of it.
        At least ``round_to`` channels (or the whole group, if smaller) always remain.
        """
        groups = list(groups)
        if isinstance(ratios, Mapping):
            unknown = sorted(set(ratios) - {g.name for g in groups})
            if unknown:
                raise UserError(f"keep ratios: unknown group '{unknown[0]}'")
        channels = {}
        for g in groups:
            r = ratios.get(g.name, 1.0) if isinstance(ratios, Mapping) else ratios
            if not (isinstance(r, (int, float)) and 0.0 < r <= 1.0):
                raise UserError(f"keep ratio of group '{g.name}' must be in (0, 1], got {r!r}")
            channels[g.name] = round_channels(r * g.channels, g.channels, round_to)
        return cls(channels=channels, arch=arch)

    def validate(self, groups: Iterable[ChannelGroup]) -> None:
        """Raise UserError naming the first group the spec cannot apply to."""
        sizes = {g.name: g.channels for g in groups}
        for name, count in self.channels.items():
            if name not in sizes:
                raise UserError(f"spec: unknown group '{name}' (see `prunetune inspect` for the names)")
            if count < 1:
                raise UserError(f"spec: group '{name}' must keep at least 1 channel, got {count}")
            if count > sizes[name]:
                raise UserError(f"spec: group '{name}' has {sizes[name]} channels, cannot keep {count}")

    def kept(self, group: ChannelGroup) -> int:
        return self.channels.get(group.name, group.channels)

    def ratios(self, groups: Iterable[ChannelGroup]) -> dict[str, float]:
        return {g.name: self.kept(g) / g.channels for g in groups}


def round_channels(value: float, total: int, round_to: int = 1) -> int:
    """The nearest of {multiples of ``round_to`` in [round_to, total), total} to ``value``."""
    if round_to < 1:
        raise UserError(f"round_to must be a positive integer, got {round_to}")
    if value >= total:
        return total
    n = int(math.floor(value / round_to + 0.5)) * round_to
    n = max(n, round_to)
    if n >= total or abs(total - value) <= abs(n - value):  # the whole group is a candidate too
        return total
    return n
