"""The MLflow record (DESIGN.md), every run prunetune writes and every tag it sets: one
parent run per search, one child run per trial (and, with ``search.reevaluate``, one per
uniform cut that took a configuration's place), the front as artifacts under ``pareto/``;
a promote run per promotion (its model, metadata and registry alias); a prune run per
``prunetune prune``. Only the driver writes here.

- ``names``: every tag, param, metric and artifact name of the record;
- ``search_record``: ``SearchRecord``, a search's parent run, child runs and front;
- ``runs``: the promote and prune runs, and ``run_with_role``.

Everything is importable from ``orchestrator.tracking`` itself.
"""

from __future__ import annotations

from orchestrator.tracking.names import (
    ARCH,
    BASELINE_ARTIFACT,
    COMPARATOR_OF,
    CRITERION,
    CURVE,
    ERROR,
    FIDELITY,
    FINAL_METRICS,
    METHOD,
    MODEL_META,
    MODEL_STATE,
    NOTE,
    OBJECTIVE_PARAM,
    PARETO,
    PLACE_TAGS,
    REGISTERED,
    RESUMED,
    RETRIES,
    ROLE,
    RUNTIME,
    SEARCH_RUN,
    STARTS_ARTIFACT,
    STORAGE,
    TRIAL_ID,
    TRIAL_RUN,
)
from orchestrator.tracking.runs import open_promote_run, record_promotion, record_prune, run_with_role
from orchestrator.tracking.search_record import SearchRecord, _stored_search, search_runs_of

__all__ = [
    "ARCH",
    "BASELINE_ARTIFACT",
    "COMPARATOR_OF",
    "CRITERION",
    "CURVE",
    "ERROR",
    "FIDELITY",
    "FINAL_METRICS",
    "METHOD",
    "MODEL_META",
    "MODEL_STATE",
    "NOTE",
    "OBJECTIVE_PARAM",
    "PARETO",
    "PLACE_TAGS",
    "REGISTERED",
    "RESUMED",
    "RETRIES",
    "ROLE",
    "RUNTIME",
    "SEARCH_RUN",
    "STARTS_ARTIFACT",
    "STORAGE",
    "TRIAL_ID",
    "TRIAL_RUN",
    "SearchRecord",
    "_stored_search",
    "open_promote_run",
    "record_prune",
    "record_promotion",
    "run_with_role",
    "search_runs_of",
]
