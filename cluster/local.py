"""A multi-node Ray cluster on this machine, for development and tests.

One head and N worker nodes, all on 127.0.0.1, with token authentication on. The token
comes from ``RAY_AUTH_TOKEN`` when set, else is generated; it lives only in the
environment of this process and its children, never in a file.

    with LocalCluster(workers=2) as cluster:
        subprocess.run(["prunetune", "search", "cfg.yaml", "--address", cluster.address], env=cluster.env)

or from a shell: ``python -m cluster.local --workers 2`` (stops on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
STARTUP_TIMEOUT = "timed out during startup"  # Ray's message when a node misses its 30 s registration
# a head's GCS that could not bind its port: a free port taken by another process between
# free_port() and Ray's bind (another cluster starting on the machine); a new port is tried
GCS_FAILED = "Failed to start GCS"
START_ATTEMPTS = 3
START_BACKOFF_S = 2.0  # times the attempt number


class StartTimeout(RuntimeError):
    """A node did not register with the GCS in time (the machine was loaded), or a head's
    GCS did not start: worth another try, on new ports."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ_has(pid: int, entries: set[bytes]) -> bool:
    try:
        return bool(entries & set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")))
    except OSError:
        return False


def _pgrep(pattern: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return {int(p) for p in found if int(p) != os.getpid()}


def _raylets(pids: set[int]) -> set[int]:
    found = set()
    for p in pids:
        try:
            if b"raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes():
                found.add(p)
        except OSError:
            continue
    return found


def node_processes(raylets: set[int]) -> set[int]:
    """The given raylets and the Ray workers and agents they started (which carry their
    raylet's pid in RAY_RAYLET_PID)."""
    marks = {f"RAY_RAYLET_PID={r}".encode() for r in raylets}
    if not marks:
        return set(raylets)
    return set(raylets) | {
        int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _environ_has(int(d.name), marks)
    }


def processes_of(pattern: str) -> set[int]:
    """Processes whose command line matches ``pattern``, and the Ray workers and agents of
    any raylet among them."""
    pids = _pgrep(pattern)
    return pids | node_processes(_raylets(pids))


# A local cluster's GCS server and raylets do not exit on SIGTERM while the rest of the
# cluster goes down beside them (measured: all still up after 10 s), so a longer grace only
# waits; its state lives in memory and its temp folder is removed after.
STOP_GRACE = 2.0


def terminate(pids: set[int], grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.25)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class LocalCluster:
    """Head + ``workers`` worker nodes on 127.0.0.1, token authentication on.

    The head gets ``head_cpus`` CPUs (0: it only coordinates, trials run on workers);
    worker ``i`` gets ``cpus_per_worker`` CPUs and a resource ``prunetune_worker_<i>``;
    ``head_resources`` are custom resources of the head (e.g. a latency measurement node's).
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        cpus_per_worker: int = 1,
        head_cpus: int = 0,
        dashboard: bool = False,
        head_resources: dict[str, float] | None = None,
    ):
        self.workers, self.cpus_per_worker, self.head_cpus, self.dashboard = (
            workers,
            cpus_per_worker,
            head_cpus,
            dashboard,
        )
        self.head_resources = dict(head_resources or {})
        self.token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # jobs run `python`
        self.env = {
            **os.environ,
            "PATH": path,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ptray_"))  # short: Ray's socket paths are length-limited
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_address = f"http://127.0.0.1:{self.dashboard_port}"
        self.worker_raylets: dict[int, int] = {}  # worker node i -> the pid of its raylet

    def _ray_start(self, *args: str) -> None:
        # Every node gets its own agent and metrics ports: the defaults (52365, ...) are fixed,
        # so a second cluster on this machine would collide with the first one's agents.
        ports = [
            f"--{flag}={free_port()}"
            for flag in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "metrics-export-port",
                "runtime-env-agent-port",
            )
        ]
        done = subprocess.run(
            [RAY, "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *ports, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            said = done.stdout + done.stderr
            error = StartTimeout if STARTUP_TIMEOUT in said or GCS_FAILED in said else RuntimeError
            raise error(f"ray start {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def _start_node(self, start, cleanup) -> None:
        """Run ``start``; when the node times out registering with the GCS (Ray waits a fixed
        30 s, which a loaded machine can exceed) or the head's GCS fails to start, ``cleanup``
        what it left and try again."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return start()
            except StartTimeout:
                cleanup()
                if attempt == START_ATTEMPTS:
                    raise
                time.sleep(START_BACKOFF_S * attempt)

    def start(self) -> LocalCluster:
        dash = (
            ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
            if self.dashboard
            else ["--include-dashboard=false"]
        )
        self._start_node(
            lambda: self._ray_start(
                "--head",
                f"--port={self.port}",
                f"--num-cpus={self.head_cpus}",
                "--num-gpus=0",
                f"--temp-dir={self.temp_dir}",
                *([f"--resources={json.dumps(self.head_resources)}"] if self.head_resources else []),
                *dash,
            ),
            self._reset_head,
        )
        for i in range(1, self.workers + 1):
            self.add_worker(i)
        return self

    def _reset_head(self) -> None:
        terminate(processes_of(str(self.temp_dir)))
        self.port = free_port()  # the old one may linger in TIME_WAIT
        self.address = f"127.0.0.1:{self.port}"

    def add_worker(self, i: int) -> None:
        before = _raylets(_pgrep(str(self.temp_dir)))
        self._start_node(
            lambda: self._ray_start(
                f"--address={self.address}",
                f"--num-cpus={self.cpus_per_worker}",
                "--num-gpus=0",
                f"--resources={json.dumps({f'prunetune_worker_{i}': 1})}",
            ),
            # the raylet that never registered, and its agents: no other node is touched
            lambda: terminate(node_processes(_raylets(_pgrep(str(self.temp_dir))) - before)),
        )
        new = _raylets(_pgrep(str(self.temp_dir))) - before
        if len(new) != 1:
            raise RuntimeError(f"worker node {i}: expected one new raylet of this cluster, found {sorted(new)}")
        self.worker_raylets[i] = new.pop()

    def kill_worker(self, i: int) -> int:
        """Kill worker node ``i`` of this cluster at once (its raylet, its workers and
        agents), as a lost machine. Found by the raylet's pid recorded when the node
        started, so no other node and no other cluster on the machine is touched."""
        pids = node_processes({self.worker_raylets[i]})
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def restore_lost_workers(self) -> list[int]:
        """Start again every worker node whose raylet is gone (killed, or lost as a machine
        is), with its number and resource name, after removing what the lost node left
        behind (its agents outlive a killed raylet). Returns the numbers restored."""
        lost = [i for i, raylet in self.worker_raylets.items() if not _alive(raylet)]
        for i in lost:
            terminate(node_processes({self.worker_raylets[i]}))
            self.add_worker(i)
        return lost

    def stop(self) -> None:
        """Stop this cluster's processes only: `ray stop` would stop every Ray on the machine."""
        # and whatever a lost worker node left behind (its agents outlive a killed raylet)
        # (a dead raylet's pid may be reused: only pids that are still raylets are taken)
        known = set(self.worker_raylets.values())
        left = (node_processes(known) - known) | _raylets(known)
        terminate(processes_of(str(self.temp_dir)) | left)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start a local multi-node Ray cluster (token auth) until Ctrl-C.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--head-cpus", type=int, default=0)
    parser.add_argument("--dashboard", action="store_true", help="start the dashboard (needed by `prunetune submit`)")
    args = parser.parse_args(argv)
    with LocalCluster(
        workers=args.workers, cpus_per_worker=args.cpus_per_worker, head_cpus=args.head_cpus, dashboard=args.dashboard
    ) as cluster:
        print(f"Ray cluster up: head {cluster.address}, {args.workers} workers, token authentication on")
        if "RAY_AUTH_TOKEN" not in os.environ:
            print("Clients need its token: export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the token below>")
            print(cluster.token)
        print(f"prunetune search CONFIG --address {cluster.address}    (Ctrl-C stops the cluster)")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
