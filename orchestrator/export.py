"""Load a promoted model from MLflow without pickle, and export it.

A promote run stores ``prunetune/model.json`` (architecture, sizes, spec) and
``prunetune/state_dict.pt`` (plain tensors): the network is rebuilt from data and the
weights are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException
from torch import nn

from orchestrator.promote import MODEL_META, MODEL_STATE
from orchestrator.tracking import client_for, run_with_role
from trials.baseline import ModelInfo, load_weights, save_checkpoint
from trials.errors import UserError
from trials.prune import rebuild
from trials.spec import ChannelSpec

FORMATS = ("torchscript", "onnx", "state-dict")


def _run_id(client, model_uri: str) -> str:
    try:
        if model_uri.startswith("models:/"):
            ref = model_uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                return client.get_model_version_by_alias(name, alias).run_id
            name, version = ref.rsplit("/", 1)
            return client.get_model_version(name, version).run_id
        if model_uri.startswith("runs:/"):
            return model_uri[len("runs:/") :].split("/", 1)[0]
    except (MlflowException, ValueError) as exc:
        raise UserError(f"model URI '{model_uri}' does not resolve: {exc}") from None
    return model_uri  # a bare promote run id


def load_promoted(model_uri: str, tracking_uri: str | None = None) -> tuple[nn.Module, dict]:
    """The promoted network of ``model_uri`` (``models:/NAME@candidate``, ``models:/NAME/3``,
    ``runs:/RUN_ID`` or a run id) in eval mode, and its metadata."""
    client = client_for(tracking_uri)
    run_id = _run_id(client, model_uri)
    run_with_role(client, run_id, "promote")  # only promoted models are loaded or exported
    with tempfile.TemporaryDirectory() as tmp:
        meta = json.loads(Path(client.download_artifacts(run_id, MODEL_META, tmp)).read_text())
        state = torch.load(client.download_artifacts(run_id, MODEL_STATE, tmp), map_location="cpu", weights_only=True)
    info = ModelInfo(meta["arch"], meta["num_classes"], meta["in_channels"], meta["input_size"])
    spec = ChannelSpec.from_dict(meta["spec"])
    model = rebuild(info.arch, spec, info.num_classes, info.in_channels, info.input_size)
    return load_weights(model, state, f"promote run '{run_id}'").eval(), {**meta, "run_id": run_id}


def export(model_uri: str, fmt: str, output: str | Path, tracking_uri: str | None = None) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"export format '{fmt}' is unknown: use one of {', '.join(FORMATS)}")
    model, meta = load_promoted(model_uri, tracking_uri)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, meta["in_channels"], meta["input_size"], meta["input_size"])
    if fmt == "state-dict":
        info = ModelInfo(meta["arch"], meta["num_classes"], meta["in_channels"], meta["input_size"])
        return save_checkpoint(output, model, info, ChannelSpec.from_dict(meta["spec"]))
    if fmt == "torchscript":
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, x), str(output))
        return output
    try:
        torch.onnx.export(
            model,
            (x,),
            str(output),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise UserError(
            f"ONNX export needs the onnx exporter packages here ({exc}); "
            "install them with `pip install onnx onnxscript` or export torchscript"
        ) from None
    return output
