"""The per-layer widths a front page shows (``pareto/front.html``): the baseline's channel
groups, logged with the search (``baseline/groups.json``), and each front point's kept
counts (its trial's ``spec.json``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

GROUPS_ARTIFACT = "baseline/groups.json"


def log_groups(client, run_id: str, graph) -> None:
    """The baseline's channel groups and their widths, in the network's order."""
    client.log_text(run_id, json.dumps({g.name: g.channels for g in graph.groups}), GROUPS_ARTIFACT)


def read_groups(client, parent_run_id: str) -> str | None:
    return _text(client, parent_run_id, GROUPS_ARTIFACT)


def _text(client, run_id: str, path: str) -> str | None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, path, tmp)).read_text()
    except Exception:  # noqa: BLE001 - absent (an older search) or unreadable: the page goes without
        return None


def front_widths(
    client, parent_run_id: str, rows: list[dict], specs: dict | None = None, groups: str | None = None
) -> dict | None:
    """``{"baseline": {group: channels}, "points": {trial: {group: kept}}}`` for the front
    points of ``rows`` (``specs``: run id -> spec JSON already at hand; ``groups``: the
    search's groups JSON, when read already); None when the search logged no groups."""
    groups = groups or read_groups(client, parent_run_id)
    if groups is None:
        return None
    points = {}
    for r in rows:
        if not r["pareto"] or r.get("baseline") or not r.get("run_id"):
            continue
        spec = (specs or {}).get(r["run_id"]) or _text(client, r["run_id"], "spec.json")
        if spec:
            points[r["trial"]] = json.loads(spec)["channels"]
    return {"baseline": json.loads(groups), "points": points}
