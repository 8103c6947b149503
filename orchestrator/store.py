"""Reaching the MLflow store: which URI a command uses, a client for it, its experiments,
and every run a search matches, page by page. An unreachable or unusable store is one
``UserError`` naming the URI, not an MLflow traceback."""

from __future__ import annotations

import os

from mlflow.tracking import MlflowClient

from trials.errors import UserError, first_line

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI a command uses: the one given, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def client_for(uri: str | None) -> MlflowClient:
    uri = resolve_uri(uri)
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:  # noqa: BLE001 - an unknown scheme, a malformed URI: one line for people
        first = first_line(exc, 200)
        raise UserError(f"the MLflow tracking store {uri} cannot be read: {first}") from None


def get_experiment(client: MlflowClient, name: str):
    """The experiment ``name`` (None when absent); an unreachable or unusable tracking URI
    is one UserError naming it, not an MLflow traceback."""
    from orchestrator.writer import is_outage

    try:
        return client.get_experiment_by_name(name)
    except Exception as exc:  # noqa: BLE001 - sorted: outage or a bad URI, both told in one line
        first = first_line(exc, 200)
        what = "cannot be reached" if is_outage(exc) else "cannot be read"
        raise UserError(f"the MLflow tracking store {client.tracking_uri} {what}: {first}") from None


PAGE_SIZE = 1000  # runs per search_runs call; every page is read


def search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str = "", order_by=None) -> list:
    """Every run matching ``filter_string``, page by page (``search_runs`` returns at most
    ``max_results`` runs per call: a long search has more trials than one page)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, order_by=order_by, max_results=PAGE_SIZE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3's UI: a training experiment


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment ``name``, created (as a model-training experiment) when absent."""
    exp = get_experiment(client, name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, tags=EXPERIMENT_KIND)


# -- values as MLflow takes them ---------------------------------------------------------
def chunks(items: list, n: int = 100):
    """``items`` in batches MLflow accepts (100 params or tags, 1,000 metrics per call)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


def param_value(value) -> str:
    """A config value as the search's parent run stores it (MLflow caps a param at 6,000 characters)."""
    return str(value)[:6000]


def trial_param(value) -> str:
    """A sampled value as the search space defines it: 0.6, not 0.6000000000000001."""
    return repr(round(value, 10)) if isinstance(value, float) else str(value)
