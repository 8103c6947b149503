"""Pictures of a front: interactive HTML (plotly, with plotly.js inside the file, for
offline clusters) and PNG (matplotlib: plotly's PNG export needs a browser)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def _split(rows: list[dict]):
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["macs"])
    rest = [r for r in rows if not r["pareto"]]
    return front, rest


def write_html(rows: list[dict], path: str | Path, title: str, baseline: dict | None = None) -> Path:
    import plotly.graph_objects as go

    front, rest = _split(rows)
    fig = go.Figure()
    hover = "trial %{customdata[0]}<br>MACs %{x:.3s}<br>val acc %{y:.4f}<br>MACs ratio %{customdata[1]:.3f}"
    for name, pts, mode in (("trials", rest, "markers"), ("Pareto front", front, "lines+markers")):
        fig.add_trace(
            go.Scatter(
                x=[r["macs"] for r in pts],
                y=[r["val_accuracy"] for r in pts],
                mode=mode,
                name=name,
                customdata=[[r["trial"], r["macs_ratio"]] for r in pts],
                hovertemplate=hover,
            )
        )
    if baseline:
        fig.add_trace(
            go.Scatter(
                x=[baseline["macs"]],
                y=[baseline["val_accuracy"]],
                mode="markers",
                name="baseline",
                marker={"symbol": "star", "size": 14},
            )
        )
    fig.update_layout(title=title, xaxis_title="MACs", yaxis_title="val_accuracy", template="plotly_white")
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def write_png(rows: list[dict], path: str | Path, title: str, baseline: dict | None = None) -> Path:
    import matplotlib.pyplot as plt

    front, rest = _split(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([r["macs"] / 1e6 for r in rest], [r["val_accuracy"] for r in rest], s=18, c="0.6", label="trials")
    ax.plot([r["macs"] / 1e6 for r in front], [r["val_accuracy"] for r in front], "o-", c="C0", label="Pareto front")
    if baseline:
        ax.scatter([baseline["macs"] / 1e6], [baseline["val_accuracy"]], marker="*", s=160, c="C3", label="baseline")
    ax.set_xlabel("MACs (M)")
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
