"""Real engines for integration tests: Ray clusters (token auth) on 127.0.0.1, started here
and stopped after the session, and the trained baseline every search loads. The MLflow
server is the session's (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest
import yaml
from mlflow.tracking import MlflowClient

from cluster.local import LocalCluster

SHARED: dict[str, str] = {}  # what the session's fixtures made for every test: the baseline checkpoint

# Under `make test` (-n 2 --dist loadgroup) the tests on the session's clusters form one
# xdist group, "integration", which one worker runs from the start. The method searches,
# prune, the budget and front-targets searches, and the searches that start their own Ray
# or find none need at most the one-node
# cluster: they are outside the group and run last (tests/conftest.py), on the worker the
# unit tests leave, which then starts only that cluster and reads the baseline the first
# worker trained. (2026-12-07: 12 min 12 s with every integration test in the group; two
# groups run side by side from the start took 19 min, every Ray cluster and search
# contending with the unit tests at once.)
CLUSTERS = {
    # the head does the work (2 CPUs, the latency node); its worker has no CPUs (no trial
    # is scheduled on it): it is there for the node-kill test, a worker named like the
    # three-node cluster's worker 1
    "one": lambda: LocalCluster(
        workers=1, cpus_per_worker=0, head_cpus=2, head_resources={"latency_node": 1}, dashboard=True
    ),
    # a head with no CPUs (it only schedules) and two 1-CPU workers: the fault tests' cluster
    "three": lambda: LocalCluster(workers=2, cpus_per_worker=1, head_cpus=0),
}


class _Clusters:
    """The session's Ray clusters, each started in a thread when first asked for (mostly
    waiting on `ray start`) and stopped at the end of the session."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(2)
        self._started: dict[str, Future] = {}

    def start(self, *keys: str) -> None:
        for key in keys:
            if key not in self._started:
                self._started[key] = self._pool.submit(CLUSTERS[key]().start)

    def get(self, key: str) -> LocalCluster:
        self.start(key)
        return self._started[key].result()

    def stop(self) -> None:
        for future in self._started.values():
            if future.exception() is None:
                future.result().stop()
        self._pool.shutdown()


@pytest.fixture(scope="session")
def _clusters():
    clusters = _Clusters()
    try:
        yield clusters
    finally:
        clusters.stop()


@pytest.fixture(autouse=True)
def _session_engines(request, _clusters):
    """At the group's first test, its two clusters and the session's MLflow server start
    (in threads, and a process) before the baseline trains, so the four overlap."""
    if next(request.node.iter_markers("xdist_group"), None) is not None:
        request.getfixturevalue("mlflow_started")
        _clusters.start(*CLUSTERS)
    request.getfixturevalue("shared_baseline")


@pytest.fixture(scope="session")
def shared_baseline(tmp_path_factory, worker_id) -> str:
    """One trained ResNet-20 on digits (6 epochs: val about 0.97, so a cut and its
    fine-tune have something to keep; 2 epochs left it near chance), loaded by every
    integration search through ``baseline.path`` instead of each search training its own.
    Trained once per test run: under xdist the first worker to ask trains it into the
    run's shared temporary folder, holding a lock the other worker waits on."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the run's folder, above each worker's own
    path = root / "shared-baseline" / "resnet20-digits.pt"
    with open(root / "shared-baseline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            from trials.baseline import ModelInfo, save_checkpoint, train_baseline
            from trials.data import DataConfig, load_train_val
            from trials.train import FinetuneConfig

            data = DataConfig(name="digits")
            splits = load_train_val(data)
            info = ModelInfo("resnet20", splits.num_classes, splits.in_channels, splits.image_size)
            # on the worker's one torch thread (tests/conftest.py): a run that trained it on
            # two took 100 s of set-up beside the unit tests, against 42 s (idle: 18 s against 32)
            model, _ = train_baseline(info, data, FinetuneConfig(epochs=6, lr=0.1), "cpu")
            save_checkpoint(path.with_suffix(".part"), model, info).rename(path)  # whole or absent
    SHARED["baseline"] = str(path)
    return SHARED["baseline"]


@pytest.fixture(scope="session")
def three_nodes(_clusters):
    """A head (no CPUs: it only schedules) and two 1-CPU worker nodes, token auth on: the
    cluster the fault tests run on. The tests that lose or kill a node start it again
    (``LocalCluster.restore_lost_workers``) before the next test."""
    cluster = _clusters.get("three")
    return {"address": cluster.address, "env": cluster.env, "temp_dir": cluster.temp_dir, "cluster": cluster}


def finished_children(uri: str, name: str) -> list:
    """The FINISHED child runs of a search (empty while its experiment does not exist)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.`prunetune.role` = 'trial'", max_results=1000)
    return [r for r in runs if r.info.status == "FINISHED"]


def wait_for_finished(uri: str, name: str, count: int, proc, timeout: float = 300) -> list:
    """Poll MLflow until ``count`` trials of search ``name`` finished (or ``proc`` ended)."""
    deadline = time.time() + timeout
    done: list = []
    while time.time() < deadline and proc.poll() is None:
        try:
            done = finished_children(uri, name)
        except Exception:  # noqa: BLE001 - the server may be starting
            done = []
        if len(done) >= count:
            break
        time.sleep(0.5)
    return done


@pytest.fixture(scope="session")
def ray_cluster(_clusters):
    """A Ray cluster whose head does the work (2 CPUs, and the custom resource
    ``latency_node`` a latency search pins its measurements to), started with `ray start`,
    token authentication on, with the dashboard (its Jobs API takes `prunetune submit`),
    plus one worker node with no CPUs for the node-kill test
    (tests/integration/test_cluster.py)."""
    cluster = _clusters.get("one")
    return {
        "address": cluster.address,
        "env": cluster.env,
        "temp_dir": cluster.temp_dir,
        "dashboard": cluster.dashboard_address,
        "cluster": cluster,
    }


# -- helpers of the integration tests: a config, a search run as a user runs it, its runs --
PRUNETUNE = str(Path(sys.executable).parent / "prunetune")


def _config(tmp_path, name, uri, address, search=None, trial=None) -> dict:
    return {
        "name": name,
        "model": {"arch": "resnet20"},
        "data": {"name": "digits"},
        "baseline": {"epochs": 2, "path": SHARED.get("baseline")},  # trained once per session (conftest)
        "search": {
            "granularity": "stage",
            "num_trials": 6,
            "max_concurrent": 2,
            "warm_start": [0.5, 1.0],
            "keep_min": 0.4,
            "keep_step": 0.1,
            **(search or {}),
        },
        "trial": {"steps": 3, "adaptive_bn_batches": 2, "cpu": 1, **(trial or {})},
        "tracking": {"uri": uri},
        "cluster": {"address": address},
        "storage": str(tmp_path / "runs"),
    }


def _search(tmp_path, cluster, data: dict, *extra: str) -> subprocess.CompletedProcess:
    """Run `prunetune search` as a user would, against the test's Ray cluster."""
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [PRUNETUNE, "search", str(path), *extra],
        env=cluster["env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def prunetune_here(*args: str) -> tuple[int, str, str]:
    """`prunetune ARGS` run in this process, as the console script runs it (``cli.main``):
    its exit code, stdout and stderr. For the commands that start no Ray and are not under
    test as processes (pareto, export, a promotion refused before it connects): a CLI
    process's imports cost 3-8 s each on 2 cores, paid here once per session. The
    environment is left as it was."""
    from orchestrator.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _runs(uri, name):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("prunetune.role") == "search"]
    children = [r for r in runs if r.data.tags.get("prunetune.role") == "trial"]
    return client, parents, children


@pytest.fixture(scope="session")
def front_search(tmp_path_factory, mlflow_server, ray_cluster) -> dict:
    """One finished front search, run once per session (6 trials as two Tune runs of 3):
    test_search.py checks its record and the promotion tests promote from it."""
    tmp = tmp_path_factory.mktemp("front-search")
    done = _search(
        tmp, ray_cluster, _config(tmp, "it-front", mlflow_server, ray_cluster["address"], {"trials_per_run": 3})
    )
    return {"name": "it-front", "tmp": tmp, "stdout": done.stdout}
