"""A search read back from MLflow: its front (``prunetune pareto``, ``promote
--max-macs-ratio``) and the search run a ``--resume`` goes on with. Reads only."""

from __future__ import annotations

from orchestrator.front_table import front_rows, trial_row
from orchestrator.store import client_for, get_experiment, resolve_uri, search_all
from orchestrator.tracking import OBJECTIVE_PARAM, STORAGE, TRIAL_ID, _stored_search, search_runs_of
from trials.errors import UserError


def read_front(uri: str | None, experiment: str, say=None) -> tuple[list[dict], dict | None]:
    """Rows of the latest search of ``experiment``, ranked, read only from MLflow
    (``say`` is told which search that is when the experiment holds several)."""
    rows, baseline, _ = read_search(uri, experiment, say)
    return rows, baseline


def read_search(uri: str | None, experiment: str, say=None) -> tuple[list[dict], dict | None, str]:
    """As ``read_front``, with the search's objective (what its front ranks cost on)."""
    client = client_for(uri)
    exp = get_experiment(client, experiment)
    if exp is None:
        raise UserError(f"experiment '{experiment}' not found in the MLflow store {resolve_uri(uri)}")
    parents = search_runs_of(client, exp.experiment_id)
    if not parents:
        raise UserError(f"experiment '{experiment}' holds no prunetune search run")
    parent = parents[0]
    if len(parents) > 1 and say is not None:
        say(
            f"experiment '{experiment}' holds {len(parents)} searches; this is the latest, "
            f"{parent.info.run_name} (run {parent.info.run_id}, storage {parent.data.tags.get(STORAGE)})"
        )
    children = search_all(
        client,
        [exp.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and attributes.status = 'FINISHED'",
    )
    trials = [
        trial_row(c.data.tags.get(TRIAL_ID, c.info.run_id), c.info.run_id, c.data.metrics)
        for c in children
        if "val_accuracy" in c.data.metrics and "macs" in c.data.metrics
    ]
    pm = parent.data.metrics
    baseline = (
        {
            "val_accuracy": pm["baseline_val_accuracy"],
            "macs": pm["baseline_macs"],
            "params": pm.get("baseline_params", 0),
            "latency_ms": pm.get("baseline_latency_ms"),
        }
        if "baseline_val_accuracy" in pm
        else None
    )
    objective = parent.data.params.get(OBJECTIVE_PARAM, "macs")
    return front_rows(trials, baseline, objective), baseline, objective


def stored_search(uri: str | None, experiment: str, storage: str):
    """The search run MLflow holds for (experiment, storage), or None."""
    client = client_for(uri)
    exp = get_experiment(client, experiment)
    return _stored_search(client, exp.experiment_id, storage) if exp else None


def stored_config(uri: str | None, experiment: str, storage: str) -> dict[str, str] | None:
    """The flattened config a search stored at ``storage`` was started with (its parent
    run's params), or None when MLflow holds no such search."""
    found = stored_search(uri, experiment, storage)
    return dict(found.data.params) if found else None
