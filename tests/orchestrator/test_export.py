"""Loading a promoted model back without pickle and exporting it (orchestrator.export), from
a promote run in a real local MLflow store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator import promote, tracking
from orchestrator.config import validate_config
from orchestrator.export import export, load_promoted
from orchestrator.tracking import SearchRecord
from tests.orchestrator.conftest import _result
from trials.baseline import ModelInfo, read_checkpoint
from trials.errors import UserError
from trials.groups import build_graph
from trials.models import create_model
from trials.prune import rebuild
from trials.spec import ChannelSpec

INFO = ModelInfo("resnet20", 10, 1, 8)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    """(tracking URI, promote run id, the promoted network, trial run id): a ResNet-20 cut
    to half its channels, recorded and registered as promotion records it (once per module)."""
    tmp = tmp_path_factory.mktemp("export")
    uri = f"sqlite:///{tmp}/mlflow.db"
    record = SearchRecord.open(uri, "exp", str(tmp / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.99, "macs": 1e8})
    graph = build_graph(create_model(INFO.arch, in_channels=1), (1, 8, 8))
    spec = ChannelSpec.from_ratios(graph.groups, 0.5, 1, INFO.arch)
    record.log_final("t0", {"stage0": 0.5}, {**_result(0.9, 10**7), "spec_json": json.dumps(spec.to_dict())})
    client = MlflowClient(uri)
    trial = client.get_run(record.children["t0"])
    model = rebuild(INFO.arch, spec, 10, 1, 8).eval()
    opts = promote.PromoteOptions(epochs=1, workers=1, register_as="exp-model")
    run_id = tracking.open_promote_run(client, trial, INFO)
    metrics = {"val_accuracy": 0.9, "test_accuracy": 0.89, "macs_ratio": 0.3}
    meta = promote.promoted_meta(trial, validate_config({"name": "exp"}), INFO, spec)
    tracking.record_promotion(
        client, run_id, model, meta=meta, metrics=metrics, history=[], opts=opts, tracking_uri=uri
    )
    return uri, run_id, model, trial.info.run_id


def test_every_model_uri_form_loads_the_same_promoted_network(promoted):
    uri, run_id, model, _ = promoted
    x = torch.randn(3, 1, 8, 8)
    for given in ("models:/exp-model@candidate", "models:/exp-model/1", f"runs:/{run_id}", run_id):
        loaded, meta = load_promoted(given, uri)
        assert meta["run_id"] == run_id and not loaded.training, given
        torch.testing.assert_close(loaded(x), model(x))


def test_each_format_writes_a_file_that_computes_what_the_promoted_network_computes(promoted, tmp_path):
    import onnxruntime as ort

    uri, run_id, model, _ = promoted
    x = torch.randn(2, 1, 8, 8)
    said = []
    scripted = torch.jit.load(str(export(run_id, "torchscript", tmp_path / "m.pt", uri, said.append)))
    torch.testing.assert_close(scripted(x), model(x))
    onnx = export(run_id, "onnx", tmp_path / "deep" / "m.onnx", uri, said.append)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})  # batch 2: the batch is dynamic
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-3, atol=1e-4)
    assert "ONNX checked on onnxruntime" in said[-1]
    ckpt = read_checkpoint(export(run_id, "state-dict", tmp_path / "m.ckpt", uri))
    assert ckpt["arch"] == INFO.arch and ckpt["state_dict"].keys() == model.state_dict().keys()


def test_a_bad_format_a_trial_run_or_an_unknown_model_is_refused(promoted, tmp_path):
    uri, run_id, _, trial_run = promoted
    out = tmp_path / "out"
    with pytest.raises(UserError, match="export format 'tflite' is unknown"):
        export(run_id, "tflite", out / "m", uri)
    with pytest.raises(UserError):
        export(trial_run, "torchscript", out / "m.pt", uri)  # not a promote run
    with pytest.raises(UserError, match="does not resolve"):
        load_promoted("models:/nosuch@candidate", uri)
    assert not out.exists()  # refused before anything was written
