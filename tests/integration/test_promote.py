"""Promotion on real engines: Ray Train DDP on 2 CPU workers, MLflow server, model registry."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.export import load_promoted
from tests.integration.test_search import PRUNETUNE, _config, _runs, _search
from trials.cost import count_cost
from trials.data import DataConfig, load_test
from trials.train import evaluate

pytestmark = pytest.mark.integration


def _cli(cluster, *args, check=True):
    done = subprocess.run([PRUNETUNE, *args], env=cluster["env"], capture_output=True, text=True, timeout=900)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_promote_registers_a_model_that_loads_and_reproduces_its_metrics(tmp_path, mlflow_server, ray_cluster):
    uri, address = mlflow_server, ray_cluster["address"]
    _search(tmp_path, ray_cluster, _config(tmp_path, "it-promote", uri, address, search={"num_trials": 3}))
    done = _cli(
        ray_cluster,
        "promote",
        "it-promote",
        "--max-macs-ratio",
        "0.7",
        "--epochs",
        "2",
        "--workers",
        "2",
        "--register-as",
        "it-r20",
        "--address",
        address,
        "--tracking-uri",
        uri,
    )
    result = json.loads(done.stdout[done.stdout.index("{") :])

    client = MlflowClient(uri)
    run = client.get_run(result["run_id"])
    assert run.data.tags["prunetune.role"] == "promote"
    trial_run = client.get_run(run.data.tags["prunetune.trial_run_id"])
    assert trial_run.data.tags["prunetune.role"] == "trial" and trial_run.data.metrics["macs_ratio"] <= 0.7
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")][-2:] == [1, 2]
    for key in ("test_accuracy", "macs", "params", "latency_ms_b1", "latency_ms_b64", "speedup_b64"):
        assert key in run.data.metrics
    version = client.get_model_version_by_alias("it-r20", "candidate")
    assert version.run_id == run.info.run_id

    model, meta = load_promoted("models:/it-r20@candidate", uri)
    assert not model.training and meta["arch"] == "resnet20"
    test = evaluate(model, load_test(DataConfig(name="digits")), torch.device("cpu"))
    assert test["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-9)
    shape = (meta["in_channels"], meta["input_size"], meta["input_size"])
    assert count_cost(model, shape).macs == run.data.metrics["macs"] == trial_run.data.metrics["macs"]

    ts = tmp_path / "model.ts"
    _cli(
        ray_cluster,
        "export",
        f"runs:/{run.info.run_id}",
        "--format",
        "torchscript",
        "--output",
        str(ts),
        "--tracking-uri",
        uri,
    )
    x = torch.randn(3, *shape)
    torch.testing.assert_close(torch.jit.load(str(ts))(x), model(x))
    onnx = _cli(
        ray_cluster,
        "export",
        run.info.run_id,
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "m.onnx"),
        "--tracking-uri",
        uri,
        check=False,
    )
    assert onnx.returncode == 0 or (onnx.returncode == 2 and "onnx" in onnx.stderr and "Traceback" not in onnx.stderr)


def test_promoting_an_unknown_run_or_a_non_trial_run_exits_2(tmp_path, mlflow_server, ray_cluster):
    uri = mlflow_server
    unknown = _cli(ray_cluster, "promote", "0123456789abcdef0123456789abcdef", "--tracking-uri", uri, check=False)
    assert unknown.returncode == 2 and "not found" in unknown.stderr and "Traceback" not in unknown.stderr
    _search(
        tmp_path,
        ray_cluster,
        _config(tmp_path, "it-promote-bad", uri, ray_cluster["address"], search={"num_trials": 1, "warm_start": [0.5]}),
    )
    _, parents, _ = _runs(uri, "it-promote-bad")
    parent = _cli(ray_cluster, "promote", parents[0].info.run_id, "--tracking-uri", uri, check=False)
    assert parent.returncode == 2 and "is not a prunetune trial run" in parent.stderr
    none = _cli(
        ray_cluster, "promote", "it-promote-bad", "--max-macs-ratio", "0.01", "--tracking-uri", uri, check=False
    )
    assert none.returncode == 2 and "no front point with macs_ratio <= 0.01" in none.stderr


def _train_workers(cluster) -> list[int]:
    """Ray Train workers of this test's cluster only (never another Ray on the machine)."""
    from cluster.local import processes_of

    found = subprocess.run(["pgrep", "-f", "ray::RayTrainWorker"], capture_output=True, text=True)
    ours = processes_of(str(cluster["temp_dir"]))
    return [int(p) for p in found.stdout.split() if int(p) in ours]


def test_promotion_resumes_from_its_last_checkpoint_when_a_worker_dies(tmp_path, mlflow_server, ray_cluster):
    import os
    import signal
    import time

    uri, address = mlflow_server, ray_cluster["address"]
    _search(
        tmp_path,
        ray_cluster,
        _config(tmp_path, "it-promote-kill", uri, address, search={"num_trials": 1, "warm_start": [0.7]}),
    )
    _, _, children = _runs(uri, "it-promote-kill")
    proc = subprocess.Popen(
        [
            PRUNETUNE,
            "promote",
            children[0].info.run_id,
            "--epochs",
            "8",
            "--workers",
            "2",
            "--address",
            address,
            "--tracking-uri",
            uri,
        ],
        env=ray_cluster["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    promote_dir = tmp_path / "runs" / "it-promote-kill" / "promote"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(promote_dir.glob("*/checkpoint_*"))) < 2:
        time.sleep(0.2)  # two on disk: the first one is surely registered with the controller
    workers = _train_workers(ray_cluster)
    assert workers, "no Ray Train worker found to kill"
    os.kill(workers[0], signal.SIGKILL)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    result = json.loads(out[out.index("{") :])
    client = MlflowClient(uri)
    history = client.get_metric_history(result["run_id"], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 9))  # every epoch once
    resumed = client.get_run(result["run_id"]).data.tags.get("prunetune.resumed_from_epochs")
    assert resumed, out[-4000:]
    assert all(1 <= int(e) < 8 for e in resumed.split(","))  # continued from a checkpoint, not from scratch
