"""What every part of the suite shares: the GPU skip, the seed, and a real MLflow server
(started once per session, for the integration tests and the record's contract tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from cluster.local import free_port

BIN = Path(sys.executable).parent

# Under `make test` (two xdist workers on two cores) each worker's own torch work runs on
# one thread: the integration worker's Ray nodes, drivers and servers need the other core,
# and two workers with two threads each made every integration test wait on the unit tests
# (the lost-node search: 36 s alone, 160 s beside them). Tests that time things set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not come up in {timeout:.0f} s")


def start_mlflow(root: Path, port: int) -> subprocess.Popen:
    """An MLflow server on 127.0.0.1:port over a sqlite store in ``root``; returns when healthy."""
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "server.log", "a")
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    _wait(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, 120, "the MLflow server")
    return proc


def stop_mlflow(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    port = free_port()
    proc = start_mlflow(tmp_path_factory.mktemp("mlflow"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_mlflow(proc)
