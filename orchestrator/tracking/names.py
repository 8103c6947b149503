"""Every name of the MLflow record: the tags, params, metrics and artifact paths prunetune
writes (DESIGN.md, "The MLflow record"). The writers (``search_record``, ``runs``) and
every reader take them from here, so the layout is spelled once."""

from __future__ import annotations

BASELINE_ARTIFACT = "baseline/baseline.pt"
ROLE, TRIAL_ID, PARETO = "prunetune.role", "prunetune.trial_id", "prunetune.pareto"
STORAGE, RETRIES, CRITERION = "prunetune.storage", "prunetune.retries", "prunetune.criterion"
FIDELITY = "prunetune.fidelity"  # what a trial reached: finetune, or adaptive_bn (screened out)
FINAL_METRICS = ("val_accuracy", "val_loss", "macs", "params", "macs_ratio", "params_ratio", "trial_seconds",
                 "latency_ms", "latency_spread_ms", "baseline_latency_ms", "latency_ratio", "latency_pred_ms")  # fmt: skip
CURVE = ("train_loss", "val_accuracy", "val_loss")  # per-epoch metrics of a fine-tune
OBJECTIVE_PARAM = "search.objective"  # the search run's param naming the front's cost axis
ERROR = "prunetune.error"  # why a trial failed
# a trial's result key -> its tag: the node it trained on, the node it was timed on, the
# trial whose result it took (the same configuration, not trained again), the trial whose
# shape it carried into a gap of the front (search.fill)
PLACE_TAGS = {"node_id": "prunetune.node_id", "latency_node_id": "prunetune.latency_node_id",
              "reused_from": "prunetune.reused_from", "filled_from": "prunetune.filled_from"}  # fmt: skip
# a promote run: the trial and search it came from, where it was timed, what it registered
TRIAL_RUN, SEARCH_RUN, ARCH = "prunetune.trial_run_id", "prunetune.search_run_id", "prunetune.arch"
REGISTERED, RESUMED, RUNTIME = "prunetune.registered", "prunetune.resumed_from_epochs", "prunetune.latency_runtime"
METHOD = "prunetune.method"  # a prune run: the method that chose its counts
MODEL_META, MODEL_STATE = "prunetune/model.json", "prunetune/state_dict.pt"  # a promoted model, without pickle
# a uniform cut logged in the place of the re-evaluated configuration it beat (search.reevaluate)
COMPARATOR_OF = "prunetune.comparator_of"
STARTS_ARTIFACT = "search/starts.json"  # the points Optuna ran first, in order, with where each came from

NOTE = "mlflow.note.content"  # a run's description in the MLflow UI
