"""Real multi-node Ray clusters on this machine (a head and two worker nodes): token
authentication, trials spread over the workers, and the faults, each injected at a chosen
point so that every run exercises it: a worker node lost mid-trial, the driver killed,
Ctrl-C, the MLflow server gone mid-search and through the end, trials that turn NaN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cluster.local import free_port
from tests.conftest import Link
from tests.integration.conftest import PRUNETUNE, _config, _runs, finished_children

# one xdist group: with `make test` (-n 2 --dist loadgroup) every integration test runs in one worker
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("integration")]


def test_a_client_without_the_token_is_refused(ray_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray tries a refused GCS once a second for 20 s by default
    code = f"import ray; ray.init(address={ray_cluster['address']!r}); print('CONNECTED')"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert refused.returncode != 0 and "CONNECTED" not in refused.stdout
    assert "AuthenticationError" in refused.stderr and "InvalidAuthToken" in refused.stderr  # refused for the token
    allowed = subprocess.run(
        [sys.executable, "-c", code], env=ray_cluster["env"], capture_output=True, text=True, timeout=180
    )
    assert "CONNECTED" in allowed.stdout, allowed.stderr[-2000:]


def _start(
    tmp_path, cluster, data: dict, fault: str | None = None, *, resume: bool = False, **env: str
) -> subprocess.Popen:
    """`prunetune search` (with ``resume``: `--resume`) as a user starts it; ``fault``: a
    PRUNETUNE_FAULT injected at a chosen point (orchestrator/faults.py), markers under tmp_path."""
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**cluster["env"], **env}
    if fault:
        env.update(PRUNETUNE_FAULT=fault, PRUNETUNE_FAULT_DIR=str(tmp_path))
    return subprocess.Popen(
        [PRUNETUNE, "search", str(path), *(["--resume"] if resume else [])],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Lines:
    """The output of a process, read in a thread, so a test can wait for a given line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines, self._new = proc, [], threading.Condition()
        self._start = time.monotonic()  # each line carries its time since the start, for a failure's reading
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(f"{time.monotonic() - self._start:6.1f}s {line}")
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 600) -> bool:
        deadline = time.time() + timeout
        with self._new:
            while not any(text in line for line in self.lines):
                if self.proc.poll() is not None and self.proc.stdout.closed or time.time() > deadline:
                    return False
                self._new.wait(timeout=1.0)
        return True

    def tail(self, lines: int = 40) -> str:
        """The last lines so far, timed, for a failure's message."""
        with self._new:
            return "\n" + "".join(self.lines[-lines:])

    def finish(self, timeout: float = 900) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)
        return code, "".join(self.lines)


def test_trials_spread_over_both_workers_and_a_lost_node_s_trial_is_retried(tmp_path, mlflow_server, three_nodes):
    """The node of the third trial to finish epoch 1 goes away (its raylet killed from inside
    the trial): the trial is retried on the other node and finishes; nothing is lost or
    duplicated. The session's cluster then gets the lost node back (``restore_lost_workers``)."""
    cluster = three_nodes["cluster"]
    data = _config(
        tmp_path,
        "it-nodes",
        mlflow_server,
        cluster.address,
        search={"num_trials": 4, "max_concurrent": 2, "warm_start": [0.5, 0.7]},
        trial={"steps": 12, "max_failures": 3},  # 10 steps an epoch: the fault at epoch 1 is mid-trial
    )
    try:
        code, out = Lines(_start(tmp_path, three_nodes, data, fault="node=3@1")).finish()
    finally:
        restored = cluster.restore_lost_workers()
    assert code == 0, out[-3000:]
    assert "lost its worker: retry 1" in out
    assert len(restored) == 1  # the one node the fault took down, back for the tests after

    _, _, children = _runs(mlflow_server, "it-nodes")
    ids = [c.data.tags["prunetune.trial_id"] for c in children]
    assert len(ids) == len(set(ids)) == 4  # every trial accounted for, one child run each
    assert all(c.info.status == "FINISHED" for c in children), [c.data.tags.get("prunetune.error") for c in children]
    retried = [c for c in children if c.data.tags.get("prunetune.retries")]
    assert len(retried) == 1 and retried[0].data.tags["prunetune.retries"] == "1"
    arrived_third = (tmp_path / "arrival-node-1-3").read_text()  # the trial the fault took down
    assert retried[0].data.tags["prunetune.trial_id"] == arrived_third
    assert len({c.data.tags["prunetune.node_id"] for c in children}) == 2  # both nodes ran trials


def test_killing_a_worker_node_touches_no_other_node_or_cluster(three_nodes, ray_cluster):
    """Two local clusters at once (the session's two): worker 1 of the three-node cluster is
    killed; the one-node cluster's worker 1 (same resource name) and the three-node
    cluster's worker 2 live on. Then the killed node is started again, and only it."""
    from cluster.local import _alive, node_processes

    a, b = three_nodes["cluster"], ray_cluster["cluster"]
    other = node_processes({b.worker_raylets[1]}) | node_processes({a.worker_raylets[2]})
    killed = a.worker_raylets[1]
    assert a.kill_worker(1) > 0
    time.sleep(1.0)
    assert not _alive(killed)
    assert all(_alive(p) for p in other)
    assert a.restore_lost_workers() == [1]
    assert a.worker_raylets[1] != killed and _alive(a.worker_raylets[1])
    assert a.restore_lost_workers() == []  # nothing else was lost
    assert all(_alive(p) for p in other)


# The outage tests turn the MLflow client's own retries off (the product asks for 2, each
# with its back-off: about 37 s of a 70-s test went to them): the writer's buffering,
# retrying and spilling under test are prunetune's, and run the same either way.
NO_CLIENT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def test_mlflow_outages_mid_search_and_through_the_end_lose_no_result(tmp_path, mlflow_server, three_nodes):
    """Two outages in one search (one search, not two, keeps the suite short), the search
    reaching the session's MLflow server through a link the test cuts (``Link``: connection
    refused, open connections reset; the server runs on):

    1. The link goes down after the first trial and comes back only once the driver has
       noticed (no fixed sleep): the buffer is written mid-search.
    2. The driver holds after its 2nd trial (a fault at a known point); the link goes down
       again and stays down through the end: the search exits 3 (not 2: the input was
       fine) saying where everything is. Once MLflow is reachable, `prunetune sync` writes
       every saved result, closes the search run and removes the spill file."""
    link = Link(int(mlflow_server.rsplit(":", 1)[1]))
    uri = link.uri
    data = _config(
        tmp_path,
        "it-outage",
        uri,
        three_nodes["address"],
        search={"num_trials": 3, "max_concurrent": 1, "warm_start": [0.5, 0.7]},
        trial={},
    )
    run = Lines(
        _start(tmp_path, three_nodes, data, "driver=HOLD@2", PRUNETUNE_MLFLOW_PATIENCE="3", **NO_CLIENT_RETRIES)
    )
    try:
        assert run.wait_for("[1/3]"), "no trial finished before the outage" + run.tail()
        link.cut()
        assert run.wait_for("MLflow unreachable"), "the driver did not notice the outage" + run.tail()
        link.restore()
        assert run.wait_for("buffer written"), "the buffer was not written once MLflow was back" + run.tail()
        assert run.wait_for("fault: driver held"), "the driver did not hold after its 2nd trial" + run.tail()
        written = {c.data.tags["prunetune.trial_id"] for c in finished_children(uri, "it-outage")}
        assert written, "nothing reached MLflow after the first outage"
        link.cut()
        (tmp_path / "release").touch()
        code, out = run.finish()
        assert code == 3, out[-3000:]
        spill = tmp_path / "runs" / "it-outage" / "mlflow-pending.json"
        assert spill.is_file() and "prunetune sync it-outage" in out and "Traceback" not in out
        link.restore()
        sync = [PRUNETUNE, "sync", "it-outage", "--storage", str(tmp_path / "runs"), "--tracking-uri", uri]
        done = subprocess.run(sync, env=three_nodes["env"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "replayed" in done.stdout, done.stdout + done.stderr
        assert not spill.exists()
        client, parents, children = _runs(uri, "it-outage")
        ids = [c.data.tags["prunetune.trial_id"] for c in children]
        assert len(ids) == len(set(ids)) == 3 and all(c.info.status == "FINISHED" for c in children)
        assert all({"val_accuracy", "macs"} <= set(c.data.metrics) for c in children)
        assert parents[0].info.status == "FINISHED"
        front = json.loads(
            Path(client.download_artifacts(parents[0].info.run_id, "pareto/front.json", str(tmp_path))).read_text()
        )
        assert sum(not t.get("baseline") for t in front["trials"]) == 3
        again = subprocess.run(sync, env=three_nodes["env"], capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "nothing to sync" in again.stdout  # once
    finally:
        link.cut()
        if run.proc.poll() is None:
            run.proc.kill()


def _counts(out: str) -> list[int]:
    """The progress lines' trial counts ("[3/5] trial ..."), in order (Lines puts each
    line's time in front of it)."""
    lines = (line.split("s ", 1)[-1] for line in out.splitlines())
    return [int(line[1:].split("/")[0]) for line in lines if line.startswith("[") and "] trial " in line]


def test_ctrl_c_then_a_killed_driver_then_resume_repeat_and_duplicate_nothing(tmp_path, mlflow_server, three_nodes):
    """One search stopped twice (one search, not two, keeps the suite short):

    1. Ctrl-C (SIGINT, sent by the driver to itself after its 2nd finished trial): exit
       130, the search run KILLED, no run left RUNNING, the --resume hint.
    2. `--resume`, whose driver is SIGKILLed right after the 4th finished trial, in the
       second of its Tune runs (trials_per_run 3: runs of 3 and 2 trials). Its count goes
       on from the trials already done.
    3. `--resume` again finishes the search from the run it was in (tune-1), running none
       of the finished trials again. Tune's state lives at a storage URI (file:// here;
       s3:// on a cluster)."""
    data = _config(
        tmp_path,
        "it-resume",
        mlflow_server,
        three_nodes["address"],
        search={"num_trials": 5, "max_concurrent": 1, "trials_per_run": 3},
    )
    data["storage"] = f"file://{tmp_path}/shared"
    code, out = Lines(_start(tmp_path, three_nodes, data, fault="driver=INT@2")).finish(timeout=600)
    assert code == 130, out[-3000:]
    assert "--resume" in out and "Tuner.restore" not in out
    client, parents, children = _runs(mlflow_server, "it-resume")
    assert parents[0].info.status == "KILLED"
    assert all(c.info.status != "RUNNING" for c in children), [c.info.status for c in children]
    first = {c.data.tags["prunetune.trial_id"]: c.info.run_id for c in children if c.info.status == "FINISHED"}
    assert len(first) >= 2

    code, out = Lines(_start(tmp_path, three_nodes, data, "driver=KILL@4", resume=True)).finish(timeout=600)
    assert code == -signal.SIGKILL, out[-3000:]
    counts = _counts(out)
    assert counts and counts[0] > len(first) - 1 and counts[-1] == 4, out[-3000:]  # the count goes on
    assert (tmp_path / "shared" / "it-resume" / "tune-1").is_dir()  # Tune's snapshots are at the URI
    second = {c.data.tags["prunetune.trial_id"]: c.info.run_id for c in finished_children(mlflow_server, "it-resume")}
    assert 3 <= len(second) <= 4 and first.items() <= second.items(), out  # the 4th may not have reached MLflow

    code, out = Lines(_start(tmp_path, three_nodes, data, resume=True)).finish(timeout=600)
    assert code == 0, out[-3000:]
    assert "resuming the search stored at file://" in out
    assert "/it-resume/tune-1" in out  # the run it was in, not the first
    assert _counts(out)[-1] == 5
    client, parents, children = _runs(mlflow_server, "it-resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    done = [c for c in children if c.info.status == "FINISHED"]
    ids = [c.data.tags["prunetune.trial_id"] for c in done]
    assert len(ids) == len(set(ids)) == 5, [(c.data.tags["prunetune.trial_id"], c.info.status) for c in children]
    # a trial the killed driver had started after Tune's last snapshot is not run again (Tune
    # never saw it; another trial takes its place): its run is KILLED, none is left RUNNING
    assert all(c.info.status == "KILLED" for c in children if c not in done), [c.info.status for c in children]
    for trial_id, run_id in second.items():  # finished trials were not run again
        assert {c.info.run_id for c in children if c.data.tags["prunetune.trial_id"] == trial_id} == {run_id}
        steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
        assert len(steps) == len(set(steps)), trial_id  # nor trained again


def test_trials_that_turn_nan_fail_with_their_reason_and_the_search_goes_on(tmp_path, mlflow_server, three_nodes):
    bad = _config(
        tmp_path,
        "it-fail",
        mlflow_server,
        three_nodes["address"],
        search={"num_trials": 2},
        trial={"lr": 1e12},  # checked at the end of the budget (and every 50 steps)
    )
    code, out = Lines(_start(tmp_path, three_nodes, bad)).finish(timeout=600)
    assert code == 0 and "(1 point, from 0 finished trials and the baseline)" in out, out[-3000:]
    _, parents, children = _runs(mlflow_server, "it-fail")
    assert len(children) == 2 and all(c.info.status == "FAILED" for c in children)
    assert all("non-finite" in c.data.tags["prunetune.error"] for c in children)
    assert parents[0].info.status == "FINISHED"


def test_submit_runs_a_search_as_a_ray_job(tmp_path, mlflow_server, ray_cluster):
    """On the session's one-node cluster, through its dashboard's Jobs API. (A promotion
    submitted as a job: test_promote.py.)"""
    dashboard = ray_cluster["dashboard"]
    data = _config(tmp_path, "it-submit", mlflow_server, None, search={"num_trials": 2, "warm_start": [0.5, 1.0]})
    data.pop("cluster")
    path = tmp_path / "submit.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [PRUNETUNE, "submit", str(path), "--address", dashboard, "--tracking-uri", mlflow_server],
        env=ray_cluster["env"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted job" in done.stdout and "SUCCEEDED" in done.stdout
    assert "Pareto front of 'it-submit'" in done.stdout  # the job's logs were followed
    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
    assert f"job {job_id}: SUCCEEDED" in done.stdout
    _, parents, children = _runs(mlflow_server, "it-submit")
    assert len(parents) == 1 and len(children) == 2

    # a job the cluster cannot take is one clear line, exit 2 (here: nothing listens there)
    refused = subprocess.run(
        [PRUNETUNE, "submit", str(path), "--address", f"http://127.0.0.1:{free_port()}", "--no-follow"],
        env=ray_cluster["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
