"""The runs a search leads to: a promotion's run (its model, metadata and registry alias)
and a one-shot prune's run; and the check that a run id names the kind of run asked for."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.tracking.names import (
    ARCH,
    CRITERION,
    CURVE,
    METHOD,
    REGISTERED,
    ROLE,
    SEARCH_RUN,
    TRIAL_RUN,
)
from trials.errors import UserError, first_line


def run_with_role(client: MlflowClient, run_id: str, role: str):
    """The run ``run_id``, checked to carry ``prunetune.role=role``; UserError otherwise."""
    from orchestrator.writer import is_outage

    try:
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - told apart: the store is down, or the run is not there
        if is_outage(exc):
            first = first_line(exc, 200)
            raise UserError(f"the MLflow tracking store {client.tracking_uri} cannot be reached: {first}") from None
        if not isinstance(exc, MlflowException):
            raise
        raise UserError(f"run '{run_id}' not found in the MLflow store {client.tracking_uri}") from None
    if run.data.tags.get(ROLE) != role:
        raise UserError(f"run '{run_id}' is not a prunetune {role} run (tag {ROLE}={run.data.tags.get(ROLE)!r})")
    return run


def open_promote_run(client: MlflowClient, trial, info) -> str:
    """The promote run of ``trial`` (a trial run), in its search's experiment, opened before
    the fine-tune so the workers' live curves have somewhere to go."""
    tags = {ROLE: "promote", TRIAL_RUN: trial.info.run_id, SEARCH_RUN: trial.data.tags["mlflow.parentRunId"]}
    run = client.create_run(
        trial.info.experiment_id, run_name=f"promote-{trial.info.run_id[:8]}", tags={**tags, ARCH: info.arch}
    )
    return run.info.run_id


def record_promotion(client: MlflowClient, run_id: str, model, *, meta: dict, metrics: dict, history: list, opts,
                     tracking_uri: str | None, onnx: bytes | None = None, tags: dict | None = None) -> str:  # fmt: skip
    """The promote run's record: metrics (the epochs the workers did not log live), the
    model as data (``MODEL_META``, ``MODEL_STATE``, the checked ONNX), the MLflow model,
    its registered version and the ``candidate`` alias; then the run is closed."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    now = int(time.time() * 1000)
    logged = {m.step for m in client.get_metric_history(run_id, "val_accuracy")}  # live, from the workers
    curve = [Metric(k, float(h[k]), now, h["epoch"]) for h in history if h["epoch"] not in logged for k in CURVE]
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()] + curve)
    client.log_batch(run_id, params=[Param("epochs", str(opts.epochs)), Param("workers", str(opts.workers))])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.json").write_text(json.dumps(meta, indent=2))
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(tmp) / "state_dict.pt")
        if onnx is not None:  # checked against PyTorch; batch size dynamic
            (Path(tmp) / "model.onnx").write_bytes(onnx)
        client.log_artifacts(run_id, tmp, "prunetune")
    mlflow.set_tracking_uri(tracking_uri or client.tracking_uri)
    x = torch.randn(2, meta["in_channels"], meta["input_size"], meta["input_size"])
    with torch.no_grad():
        y = model.eval()(x)
    with mlflow.start_run(run_id=run_id):
        signature = infer_signature(x.numpy(), y.numpy())
        logged = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            input_example=x.numpy(),
            registered_model_name=opts.register_as,
            pip_requirements=model_requirements(),
        )
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    if opts.register_as:
        version = logged.registered_model_version
        client.set_registered_model_alias(opts.register_as, "candidate", str(version))
        client.set_tag(run_id, REGISTERED, f"{opts.register_as}@candidate (v{version})")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def model_requirements() -> list[str]:
    """The logged model's pip requirements, pinned to what runs here: MLflow, torch and
    cloudpickle (what loads it) and numpy (its input example). Named, not inferred: MLflow's
    inference loads the model again in a subprocess to see what it imports, 6-8 s of every
    promotion on 2 cores, and finds these same packages (plus pandas and tqdm, which
    loading does not need)."""
    import mlflow
    import mlflow.pytorch
    import numpy

    return [
        f"mlflow=={mlflow.__version__}",
        *mlflow.pytorch.get_default_pip_requirements(),
        f"numpy=={numpy.__version__}",
    ]


def record_prune(client: MlflowClient, exp_id: str, *, method: str, macs_target: float | None, result: dict,
                 baseline: dict, texts: dict[str, str], checkpoint: Path) -> str:  # fmt: skip
    """One finished prune run: the method's counts fine-tuned (``result``: a trial's final
    metrics and spec), the baseline's metrics beside them, ``texts`` (artifact path ->
    content: config, fine-tune, scores) and the pruned checkpoint under ``model/``."""
    tags = {ROLE: "prune", METHOD: method, CRITERION: str(result["criterion"])}
    run = client.create_run(exp_id, run_name=f"prune-{method}-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    rid = run.info.run_id
    keys = ("val_accuracy", "val_loss", "macs", "params", "macs_ratio", "params_ratio")
    metrics = [Metric(k, float(result[k]), 0, 0) for k in keys]
    metrics += [Metric(f"baseline_{k}", float(v), 0, 0) for k, v in baseline.items() if isinstance(v, (int, float))]
    params = [Param("method", method), Param("macs_target", str(macs_target))]
    client.log_batch(rid, metrics=metrics, params=params)
    texts = {"spec.json": json.dumps(result["spec"], indent=2, sort_keys=True), **texts}
    for path, text in texts.items():
        client.log_text(rid, text, path)
    client.log_artifact(rid, str(checkpoint), "model")
    client.set_terminated(rid, "FINISHED")
    return rid
