"""Pictures of a front: interactive HTML (plotly, with plotly.js inside the file, for
offline clusters) and PNG (matplotlib: plotly's PNG export needs a browser)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from orchestrator.axis import Axis, axis, baseline_row  # noqa: E402 - after the backend is chosen


def _split(rows: list[dict], ax: Axis):
    front = sorted((r for r in rows if r["pareto"]), key=ax.x)
    rest = [r for r in rows if not r["pareto"]]
    return front, rest


def _hover(r: dict) -> str:
    """A point's text on hover: the trial (an id ``promote`` takes) and every cost it has."""
    parts = [
        f"trial {r['trial']}",
        f"val acc {r['val_accuracy']:.4f}",
        f"MACs {r['macs'] / 1e6:.2f} M ({r['macs_ratio']:.3f}x)",
    ]
    if r.get("latency_ms") is not None:
        parts.append(f"latency {r['latency_ms']:.3f} ms ({r.get('latency_ratio', float('nan')):.3f}x)")
    return "<br>".join(parts)


def write_html(
    rows: list[dict], path: str | Path, title: str, baseline: dict | None = None, objective: str | None = None
) -> Path:
    import plotly.graph_objects as go

    ax = axis(objective)
    front, rest = _split(rows, ax)
    fig = go.Figure()
    for name, pts, mode in (("trials", rest, "markers"), ("Pareto front", front, "lines+markers")):
        fig.add_trace(
            go.Scatter(
                x=[ax.x(r) for r in pts],
                y=[r["val_accuracy"] for r in pts],
                mode=mode,
                name=name,
                text=[_hover(r) for r in pts],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    if baseline:
        point = baseline_row(baseline)
        fig.add_trace(
            go.Scatter(
                x=[ax.x(point)],
                y=[point["val_accuracy"]],
                mode="markers",
                name="baseline",
                marker={"symbol": "star", "size": 14},
            )
        )
    fig.update_layout(title=title, xaxis_title=ax.x_label, yaxis_title="val_accuracy", template="plotly_white")
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def write_png(
    rows: list[dict], path: str | Path, title: str, baseline: dict | None = None, objective: str | None = None
) -> Path:
    import matplotlib.pyplot as plt

    cost = axis(objective)
    front, rest = _split(rows, cost)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([cost.x(r) for r in rest], [r["val_accuracy"] for r in rest], s=18, c="0.6", label="trials")
    ax.plot([cost.x(r) for r in front], [r["val_accuracy"] for r in front], "o-", c="C0", label="Pareto front")
    if baseline:
        point = baseline_row(baseline)
        ax.scatter([cost.x(point)], [point["val_accuracy"]], marker="*", s=160, c="C3", label="baseline")
    ax.set_xlabel(cost.x_label)
    ax.set_ylabel("val_accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_sensitivity_png(levels: list[float], scores: dict[str, list[float]], base: float, path: str | Path) -> Path:
    """Heatmap of a sensitivity map: groups (rows) by keep ratio (columns), coloured by
    the loss of val accuracy against the uncut network."""
    import matplotlib.pyplot as plt

    groups = list(scores)
    drop = [[100 * (base - v) for v in scores[g]] for g in groups]
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(levels), 1.0 + 0.28 * len(groups)))
    im = ax.imshow(drop, aspect="auto", cmap="magma_r", vmin=0)
    ax.set_xticks(range(len(levels)), [f"{x:.2f}" for x in levels])
    ax.set_yticks(range(len(groups)), groups, fontsize=7)
    ax.set_xlabel("keep ratio of the group (alone)")
    ax.set_title("loss of val accuracy (points) after adaptive BN")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
