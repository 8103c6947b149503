"""Real engines for integration tests: a Ray head (token auth) on 127.0.0.1 and an MLflow
server with a sqlite backend, both started here and stopped after the session."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
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
    try:
        _wait(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, 120, "the MLflow server")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster started with `ray start`, token authentication on."""
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    ray = str(BIN / "ray")
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _cluster_pids(temp: Path) -> set[int]:
    """This cluster's processes: command lines that name its temp dir, and processes
    (workers, agents) whose RAY_RAYLET_PID is one of its raylets."""
    found = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True).stdout.split()
    pids = {int(p) for p in found}
    raylets = set()
    for p in pids:
        try:
            if b"raylet" in Path(f"/proc/{p}/cmdline").read_bytes():
                raylets.add(p)
        except OSError:
            continue
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(e == f"RAY_RAYLET_PID={r}".encode() for r in raylets for e in env):
            pids.add(int(proc.name))
    return pids


def _stop_cluster(temp: Path) -> None:
    """Stop only this cluster's processes: `ray stop` would stop every Ray process on
    the machine, a user's included."""
    pids = _cluster_pids(temp)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.5)
