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
    rows: list[dict],
    path: str | Path,
    title: str,
    baseline: dict | None = None,
    objective: str | None = None,
    widths: dict | None = None,
) -> Path:
    """The front as an HTML page (plotly.js inside). With ``widths`` (``{"baseline": {group:
    channels}, "points": {trial: {group: kept}}}``, see ``orchestrator.widths``) two more
    views: the per-layer widths of the point under the pointer (hover or click) against
    the baseline's and a uniform cut's, and the front points' width profiles side by side."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ax = axis(objective)
    front, rest = _split(rows, ax)
    views = bool(widths is not None and widths.get("points"))
    fig = _front_figure(go, make_subplots, title, views)
    at = {"row": 1, "col": 1} if views else {}
    _front_traces(fig, go, ax, front, rest, baseline, at)
    script = ""
    if views:
        script = _width_views(fig, go, front, widths)
    else:
        fig.update_layout(title=title)
    fig.update_layout(template="plotly_white", height=1000 if views else None)
    fig.update_xaxes(title_text=ax.x_label, **at)
    fig.update_yaxes(title_text="val_accuracy", **at)
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True, post_script=script or None)
    return path


def _front_figure(go, make_subplots, title: str, views: bool):
    """One plot, or with the width views three stacked: the front, the widths, the profiles."""
    if not views:
        return go.Figure()
    return make_subplots(
        rows=3,
        cols=1,
        row_heights=[0.46, 0.24, 0.30],
        vertical_spacing=0.09,
        subplot_titles=(
            title,
            "per-layer widths of the point under the pointer (hover or click a point)",
            "kept share per layer, front points by cost",
        ),
    )


def _front_traces(fig, go, ax, front: list[dict], rest: list[dict], baseline: dict | None, at: dict) -> None:
    """The trials, the front through them, and the baseline's star."""
    for name, pts, mode in (("trials", rest, "markers"), ("Pareto front", front, "lines+markers")):
        fig.add_trace(
            go.Scatter(
                x=[ax.x(r) for r in pts],
                y=[r["val_accuracy"] for r in pts],
                mode=mode,
                name=name,
                text=[_hover(r) for r in pts],
                customdata=[r["trial"] for r in pts],
                hovertemplate="%{text}<extra></extra>",
            ),
            **at,
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
            ),
            **at,
        )


def _width_views(fig, go, front: list[dict], widths: dict) -> str:
    """Add the width bars (row 2) and the profile heatmap (row 3); the page's script that
    shows the hovered or clicked point's widths."""
    groups = list(widths["baseline"])
    base = widths["baseline"]
    points = {t: w for t, w in widths["points"].items() if w}
    shown = [r for r in front if r["trial"] in points]
    first = shown[0]["trial"] if shown else next(iter(points))
    ratio = (shown[0].get("macs_ratio") if shown else None) or 1.0

    def uniform(macs_ratio: float) -> list[float]:  # MACs of a conv chain scale with r^2
        return [max(1, round(base[g] * macs_ratio**0.5)) for g in groups]

    fig.add_trace(go.Bar(x=groups, y=[base[g] for g in groups], name="baseline", marker_color="#c8c8c8"), row=2, col=1)
    fig.add_trace(
        go.Bar(x=groups, y=uniform(ratio), name="uniform cut, same MACs", marker_color="#9ecae1"), row=2, col=1
    )
    bar = len(fig.data)
    fig.add_trace(
        go.Bar(
            x=groups, y=[points[first].get(g, base[g]) for g in groups], name=f"trial {first}", marker_color="#1f77b4"
        ),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            z=[[points[r["trial"]].get(g, base[g]) / base[g] for r in shown] for g in groups],
            x=[f"{r['trial']} ({r['macs_ratio']:.2f}x)" for r in shown],
            y=groups,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar={"title": "kept", "len": 0.28, "y": 0.14},
            name="profiles",
        ),
        row=3,
        col=1,
    )
    fig.update_layout(barmode="group", legend={"y": 1.0})
    fig.update_yaxes(title_text="channels", row=2, col=1)
    data = {
        "groups": groups,
        "points": points,
        "macs": {r["trial"]: r.get("macs_ratio") for r in front},
        "base": [base[g] for g in groups],
    }
    return _width_script(data, bar)


def _width_script(data: dict, bar: int) -> str:
    """The page's script: on hover or click, trace ``bar`` shows that point's widths and the
    trace before it a uniform cut at its MACs."""
    import json

    return (
        "var gd = document.getElementById('{plot_id}');\n"
        f"var W = {json.dumps(data)};\n"
        "function show(p) {\n"
        "  var t = p && p.customdata; var w = W.points[t]; if (!w) return;\n"
        "  var r = W.macs[t] || 1;\n"
        "  var uni = W.base.map(function (b) { return Math.max(1, Math.round(b * Math.sqrt(r))); });\n"
        f"  Plotly.restyle(gd, {{y: [uni]}}, [{bar - 1}]);\n"
        f"  Plotly.restyle(gd, {{y: [W.groups.map(function (g) {{ return w[g]; }})], name: ['trial ' + t]}}, [{bar}]);\n"
        "}\n"
        "gd.on('plotly_hover', function (ev) { show(ev.points[0]); });\n"
        "gd.on('plotly_click', function (ev) { show(ev.points[0]); });\n"
    )


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
