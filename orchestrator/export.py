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

from orchestrator.store import client_for
from orchestrator.tracking import MODEL_META, MODEL_STATE, run_with_role
from trials.baseline import ModelInfo, load_weights, save_checkpoint
from trials.errors import UserError
from trials.latency import ONNX_EXTRA, ONNX_RTOL, onnx_bytes, onnx_parity
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


def export(model_uri: str, fmt: str, output: str | Path, tracking_uri: str | None = None, say=print) -> Path:
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
        exported = onnx_bytes(model, x)  # batch size dynamic
    except (ImportError, ModuleNotFoundError) as exc:
        raise UserError(
            f"ONNX export needs the onnx exporter packages here ({exc}); install them with {ONNX_EXTRA} "
            "or export torchscript"
        ) from None
    try:
        error = onnx_parity(model, exported, torch.randn(4, *x.shape[1:]))
    except UserError:
        say(f"the ONNX file is not checked against PyTorch here: onnxruntime is missing ({ONNX_EXTRA})")
    else:
        if error > ONNX_RTOL:
            raise UserError(
                f"the ONNX export's outputs differ from PyTorch's by {error:.2e} of the largest (> {ONNX_RTOL}): "
                "not written; export torchscript instead"
            )
        say(f"ONNX checked on onnxruntime: outputs within {error:.1e} of PyTorch's largest (tolerance {ONNX_RTOL})")
    output.write_bytes(exported)
    return output
