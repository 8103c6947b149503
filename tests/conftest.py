"""What every part of the suite shares: the GPU skip, the seed, and a real MLflow server
(started once per session, for the integration tests and the record's contract tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
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


def _runs_last(item) -> bool:
    """An integration test outside the "integration" xdist group (one that needs at most
    the one-node cluster, tests/integration/conftest.py)."""
    return "integration" in item.keywords and next(item.iter_markers("xdist_group"), None) is None


def pytest_collection_modifyitems(config, items):
    # Those integration tests go last (a stable sort: the rest keep their order). Under
    # `make test` the group takes one worker from the start; the unit tests fill the other,
    # which then runs these beside the group's last tests, instead of the group's worker
    # running them after its own while the other idles.
    items.sort(key=_runs_last)
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
    """An MLflow server on 127.0.0.1:port over a sqlite store in ``root``, started; it is
    up once ``wait_healthy`` returns (about 12 s on 2 cores: the caller may work meanwhile)."""
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
        start_new_session=True,  # its own process group: the server and its uvicorn worker stop together
    )
    return proc


def wait_healthy(uri: str) -> str:
    _wait(lambda: urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200, 120, "the MLflow server")
    return uri


def stop_mlflow(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds (a plain
    terminate waited 9 s on the server's graceful shutdown; its store is SQLite, written
    per request)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=30)


class Link:
    """A TCP link from clients to a real server (here the session's MLflow server), which a
    test can cut and restore at once, as a network outage: while cut, nothing listens on
    the link's port (connection refused) and every open connection is reset. The server
    itself runs on; an outage costs no server restart (about 12 s to start and 9 s to stop
    on a 2-core machine)."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port's old connections linger
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # wakes its accept()
        with self._lock:
            for s in self._open:
                _close(s)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                if a in self._open:  # not cut meanwhile: both ends are still open
                    self._open -= {a, b}
                    _close(a)
                    _close(b)


def _close(s: socket.socket) -> None:
    """Shut a socket down (which wakes a thread blocked reading it) and close it."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture(scope="session")
def mlflow_started(tmp_path_factory):
    """The session's MLflow server, started but perhaps not up yet (its URI): the
    integration tests start it with their clusters and baseline, so the three overlap."""
    port = free_port()
    proc = start_mlflow(tmp_path_factory.mktemp("mlflow"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_mlflow(proc)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_started):
    """The session's MLflow server (its URI), up."""
    return wait_healthy(mlflow_started)
