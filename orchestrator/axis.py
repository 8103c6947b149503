"""What a search's front trades against accuracy (``search.objective``): the cost axis.

MACs and params are counted, so a front ranks on the count. Latency is measured, and on
a cluster each trial measures on its own node, whose speed differs from the next one's:
the front ranks on ``latency_ratio`` (the pruned network timed side by side with the
unpruned one, on one node, in alternating rounds), which compares across nodes, and shows
``latency_ms`` beside it. The baseline's point is 1.0 on every axis's ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

# optional per-trial metrics a front row carries when the trial logged them
ROW_EXTRAS = ("params_ratio", "latency_ms", "latency_ratio")


@dataclass(frozen=True)
class Axis:
    objective: str  # macs, params or latency
    key: str  # the row field the front ranks on (lower is better)
    label: str  # for titles, tables and plot axes
    x_label: str  # the plots' x axis
    scale: float  # plotted value = row[key] / scale

    def x(self, row: dict) -> float:
        return float(row[self.key]) / self.scale

    def relative(self, row: dict, baseline: dict) -> float:
        """The row's cost as a fraction of the baseline's."""
        return float(row[self.key]) / float(baseline_cost(baseline, self))


AXES = {
    "macs": Axis("macs", "macs", "MACs", "MACs (M)", 1e6),
    "params": Axis("params", "params", "params", "params (M)", 1e6),
    "latency": Axis("latency", "latency_ratio", "latency", "latency, x the baseline's (measured side by side)", 1.0),
}


def axis(objective: str | None) -> Axis:
    """The axis of ``objective`` (MACs when a search predates the objective)."""
    return AXES.get(objective or "macs", AXES["macs"])


def baseline_cost(baseline: dict, ax: Axis) -> float:
    return 1.0 if ax.key == "latency_ratio" else float(baseline[ax.key])


BASELINE_ROW = "baseline"  # the unpruned network's row of a front: trial "baseline", no run of its own


def baseline_row(baseline: dict) -> dict:
    row = {
        "trial": BASELINE_ROW,
        "run_id": "",
        "val_accuracy": float(baseline["val_accuracy"]),
        "macs": int(baseline["macs"]),
        "macs_ratio": 1.0,
        "params": int(baseline.get("params", 0)),
        "params_ratio": 1.0,
        "latency_ratio": 1.0,
        "baseline": True,
    }
    if baseline.get("latency_ms") is not None:  # a latency search: the model's full-network figure
        row["latency_ms"] = float(baseline["latency_ms"])
    return row


def has_latency(rows: list[dict]) -> bool:
    return any(r.get("latency_ms") is not None for r in rows)
