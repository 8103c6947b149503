"""The front as tables: trials ranked on (val accuracy, the objective's cost), the csv a
user reads, the search run's description in the MLflow UI. Pure functions of rows (a
row: one trial's final metrics, as ``trial_row`` makes it from MLflow's metrics)."""

from __future__ import annotations

import csv
import io

from orchestrator.axis import ROW_EXTRAS, axis, baseline_row, has_latency
from orchestrator.pareto import pareto_ranks

COLUMNS = ("trial", "run_id", "val_accuracy", "macs", "macs_ratio", "params", "rank", "pareto")
BASELINE_KEYS = ("val_accuracy", "macs", "params", "latency_ms")  # the baseline's point of a front
LATENCY_COLUMNS = ("latency_ms", "latency_ratio")  # in a front's csv when its trials measured latency
# in a front's csv when the search re-evaluated its top configurations (search.reevaluate)
REEVAL_COLUMNS = ("val_accuracy_search", "val_accuracy_std", "reevaluations", "vs_uniform", "vs_uniform_std")


def trial_row(trial_id: str, run_id: str, m: dict) -> dict:
    """One trial's row from its final metrics (with reevaluation, val_accuracy is their mean)."""
    row = {
        "trial": trial_id,
        "run_id": run_id,
        "val_accuracy": float(m["val_accuracy"]),
        "macs": int(m["macs"]),
        "macs_ratio": float(m.get("macs_ratio", float("nan"))),
        "params": int(m.get("params", 0)),
    }
    row.update({k: float(m[k]) for k in ROW_EXTRAS if m.get(k) is not None})
    if m.get("val_accuracy_mean") is not None:  # search.reevaluate: the front ranks on the mean
        row["val_accuracy_search"] = row["val_accuracy"]
        row["val_accuracy"] = float(m["val_accuracy_mean"])
        row["val_accuracy_std"] = float(m.get("val_accuracy_std", 0.0))
        row["reevaluations"] = int(m.get("reevaluations", 0))
    if m.get("uniform_cut"):
        row["uniform"] = True
    if m.get("uniform_comparator"):  # the uniform cut logged in the place of a configuration it beat
        row["comparator"] = True
    if m.get("beaten_by_uniform"):  # ... and that configuration, kept off the front
        row["beaten"] = True
    if m.get("vs_uniform_mean") is not None:  # reevaluate.uniform: paired, against the uniform cut at its cost
        row["vs_uniform"] = float(m["vs_uniform_mean"])
        row["vs_uniform_std"] = float(m.get("vs_uniform_std", 0.0))
    return row


def front_rows(trials: list[dict], baseline: dict | None = None, objective: str | None = None) -> list[dict]:
    """Rank finished trials on (val_accuracy, the objective's cost), with the unpruned
    baseline as one more point when given (it is on every front at 1.0x cost unless a
    trial beats it at no more cost): a trial below the baseline at its cost is no result.
    Trials without the cost (no latency measured) are left out. A configuration the uniform
    cut at its cost beat on re-evaluation (``beaten``) is ranked behind the others' front
    (rank 1 at best): the uniform cut logged in its place stands there. Each row gets
    ``rank`` and ``pareto``."""
    ax = axis(objective)
    if baseline and baseline.get("macs"):
        trials = [*trials, baseline_row(baseline)]
    trials = [t for t in trials if t.get(ax.key) is not None]
    ranks = pareto_ranks([(t["val_accuracy"], t[ax.key]) for t in trials])
    kept = [i for i, t in enumerate(trials) if not t.get("beaten")]
    if len(kept) < len(trials):  # the front of the rest; the beaten ones behind it
        for i, r in zip(kept, pareto_ranks([(trials[i]["val_accuracy"], trials[i][ax.key]) for i in kept])):
            ranks[i] = r
        ranks = [max(r, 1) if t.get("beaten") else r for r, t in zip(ranks, trials)]
    rows = [{**t, "rank": r, "pareto": r == 0} for t, r in zip(trials, ranks)]
    return sorted(rows, key=lambda r: (r["rank"], r[ax.key]))


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = COLUMNS + (LATENCY_COLUMNS if has_latency(rows) else ())
    fields += REEVAL_COLUMNS if any("reevaluations" in r for r in rows) else ()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(exp_id: str, rows: list[dict], baseline: dict | None, status: str, objective: str | None = None) -> str:
    """The search run's description: the front as a table with links to its trial runs."""
    ax = axis(objective)
    front = [r for r in rows if r["pareto"]]
    done = sum(not r.get("baseline") and not r.get("comparator") for r in rows)
    lines = [
        f"**prunetune search** ({status.lower()}): {done} finished trials, "
        f"{len(front)} on the Pareto front of val_accuracy against {ax.label}."
    ]
    lat = has_latency(rows)
    if baseline:
        at = f" and {baseline['latency_ms']:.3f} ms" if baseline.get("latency_ms") is not None else ""
        lines.append(
            f"Baseline: val_accuracy {baseline['val_accuracy']:.4f} at {baseline['macs'] / 1e6:.2f} M MACs{at}."
        )
    head, align = "| val_accuracy | MACs (M) | macs_ratio |", "| ---: | ---: | ---: |"
    if lat:
        head, align = head + " latency (ms) | latency_ratio |", align + " ---: | ---: |"
    lines += ["", head + " trial run |", align + " --- |"]
    for r in front:
        link = (
            "the baseline (unpruned)"
            if r.get("baseline")
            else f"[{r['trial']}](#/experiments/{exp_id}/runs/{r['run_id']})"
        )
        cells = f"| {r['val_accuracy']:.4f} | {r['macs'] / 1e6:.2f} | {r['macs_ratio']:.3f} |"
        if lat:
            cells += f" {_ms(r.get('latency_ms'))} | {r.get('latency_ratio', float('nan')):.3f} |"
        lines.append(f"{cells} {link} |")
    lines += [
        "",
        "The front's plots are under Artifacts, `pareto/front.html` and `pareto/front.png`. "
        "Runs table filter for the front: `tags.prunetune.pareto = 'true'`.",
    ]
    return "\n".join(lines)
