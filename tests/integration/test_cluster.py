"""Real multi-node Ray clusters on this machine (a head and two worker nodes): token
authentication, trials spread over the workers, and the faults: a worker node lost, the
driver killed, the MLflow server gone for 20 s, trials that turn NaN."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster.local import LocalCluster, free_port
from tests.integration.conftest import finished_children, start_mlflow, stop_mlflow, wait_for_finished
from tests.integration.test_search import PRUNETUNE, _config, _runs

pytestmark = pytest.mark.integration


def test_a_client_without_the_token_is_refused(ray_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    code = f"import ray; ray.init(address={ray_cluster['address']!r}); print('CONNECTED')"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert refused.returncode != 0 and "CONNECTED" not in refused.stdout
    assert "InvalidAuthToken" in refused.stderr or "token" in refused.stderr.lower()
    allowed = subprocess.run(
        [sys.executable, "-c", code], env=ray_cluster["env"], capture_output=True, text=True, timeout=180
    )
    assert "CONNECTED" in allowed.stdout, allowed.stderr[-2000:]


def test_trials_spread_over_both_workers_and_survive_a_lost_worker_node(tmp_path, mlflow_server):
    with LocalCluster(workers=2, cpus_per_worker=1, head_cpus=0) as cluster:
        data = _config(
            tmp_path,
            "it-nodes",
            mlflow_server,
            cluster.address,
            search={"num_trials": 6, "max_concurrent": 2, "warm_start": [0.5, 0.7]},
            trial={"steps": 20, "max_failures": 3},
        )
        path = tmp_path / "nodes.yaml"
        path.write_text(yaml.safe_dump(data))
        proc = subprocess.Popen(
            [PRUNETUNE, "search", str(path)],
            env=cluster.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def finished_nodes():
            try:
                _, _, children = _runs(mlflow_server, "it-nodes")
            except Exception:  # noqa: BLE001 - the experiment may not exist yet
                return set()
            return {c.data.tags.get("prunetune.node_id") for c in children if c.info.status == "FINISHED"}

        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None and len(finished_nodes() - {None}) < 2:
            time.sleep(0.5)
        assert len(finished_nodes() - {None}) == 2, "trials did not run on both worker nodes"
        assert cluster.kill_worker(2) > 0  # a machine lost mid-search, with its running trial
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]

    _, _, children = _runs(mlflow_server, "it-nodes")
    ids = [c.data.tags["prunetune.trial_id"] for c in children]
    assert len(ids) == len(set(ids)) == 6  # every trial accounted for, one child run each
    for c in children:
        assert c.info.status == "FINISHED" or c.data.tags.get("prunetune.error"), c.info.run_id
    assert sum(c.info.status == "FINISHED" for c in children) >= 5


def _start(tmp_path, cluster, data: dict) -> subprocess.Popen:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return subprocess.Popen(
        [PRUNETUNE, "search", str(path)],
        env=cluster["env"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_an_mlflow_outage_mid_search_loses_no_result(tmp_path, three_nodes):
    root, port = tmp_path / "mlflow", free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(root, port)
    data = _config(
        tmp_path,
        "it-outage",
        uri,
        three_nodes["address"],
        search={"num_trials": 6, "max_concurrent": 2, "warm_start": [0.5, 0.7]},
        trial={"steps": 20},
    )
    proc = _start(tmp_path, three_nodes, data)
    try:
        assert wait_for_finished(uri, "it-outage", 1, proc), "no trial finished before the outage"
        stop_mlflow(server)  # the tracking server goes away for 20 seconds mid-search
        time.sleep(20)
        server = start_mlflow(root, port)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]
        assert "MLflow unreachable" in out and "buffer written" in out

        client, parents, children = _runs(uri, "it-outage")
        ids = [c.data.tags["prunetune.trial_id"] for c in children]
        assert len(ids) == len(set(ids)) == 6 and all(c.info.status == "FINISHED" for c in children)
        assert all({"val_accuracy", "macs"} <= set(c.data.metrics) for c in children)
        front = json.loads(
            Path(client.download_artifacts(parents[0].info.run_id, "pareto/front.json", str(tmp_path))).read_text()
        )
        assert len(front["trials"]) == 6 and parents[0].info.status == "FINISHED"
    finally:
        stop_mlflow(server)


def test_resume_after_the_driver_is_killed_repeats_and_duplicates_nothing(tmp_path, mlflow_server, three_nodes):
    """The driver is SIGKILLed mid-search, in the second of its Tune runs (trials_per_run
    3: runs of 3, 3 and 2 trials); `--resume` finishes it. Tune's state lives at a storage
    URI (file:// here; s3:// on a cluster), not in the driver's directory."""
    data = _config(
        tmp_path,
        "it-resume",
        mlflow_server,
        three_nodes["address"],
        search={"num_trials": 8, "max_concurrent": 1, "trials_per_run": 3},
        trial={"steps": 12},
    )
    data["storage"] = f"file://{tmp_path}/shared"
    proc = _start(tmp_path, three_nodes, data)
    wait_for_finished(mlflow_server, "it-resume", 4, proc)
    proc.send_signal(signal.SIGKILL)  # the driver dies without a chance to save anything
    out, _ = proc.communicate(timeout=180)
    first = {c.data.tags["prunetune.trial_id"]: c.info.run_id for c in finished_children(mlflow_server, "it-resume")}
    assert 4 <= len(first) < 8, out
    assert (tmp_path / "shared" / "it-resume" / "tune-1").is_dir()  # Tune's snapshots are at the URI

    done = subprocess.run(
        [PRUNETUNE, "search", str(tmp_path / "it-resume.yaml"), "--resume"],
        env=three_nodes["env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming the search stored at file://" in done.stdout
    assert any(f"/it-resume/tune-{i}" in done.stdout for i in (1, 2))  # the run it was in, not the first
    client, parents, children = _runs(mlflow_server, "it-resume")
    ids = [c.data.tags["prunetune.trial_id"] for c in children]
    assert len(parents) == 1 and len(ids) == len(set(ids)) == 8
    assert all(c.info.status == "FINISHED" for c in children)
    for trial_id, run_id in first.items():  # finished trials were not run again
        assert {c.info.run_id for c in children if c.data.tags["prunetune.trial_id"] == trial_id} == {run_id}
        steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
        assert len(steps) == len(set(steps))


def test_trials_that_turn_nan_fail_with_their_reason_and_the_search_goes_on(tmp_path, mlflow_server, three_nodes):
    bad = _config(
        tmp_path,
        "it-fail",
        mlflow_server,
        three_nodes["address"],
        search={"num_trials": 3},
        trial={"lr": 1e12, "steps": 60},
    )
    proc = _start(tmp_path, three_nodes, bad)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "(0 of 0 finished trials)" in out, out[-3000:]
    _, parents, children = _runs(mlflow_server, "it-fail")
    assert len(children) == 3 and all(c.info.status == "FAILED" for c in children)
    assert all("non-finite" in c.data.tags["prunetune.error"] for c in children)
    assert parents[0].info.status == "FINISHED"


def test_submit_runs_a_search_as_a_ray_job(tmp_path, mlflow_server):
    with LocalCluster(workers=1, cpus_per_worker=2, head_cpus=0, dashboard=True) as cluster:
        data = _config(tmp_path, "it-submit", mlflow_server, None, search={"num_trials": 2, "warm_start": [0.5, 1.0]})
        data.pop("cluster")
        path = tmp_path / "submit.yaml"
        path.write_text(yaml.safe_dump(data))
        done = subprocess.run(
            [PRUNETUNE, "submit", str(path), "--address", cluster.dashboard_address, "--tracking-uri", mlflow_server],
            env=cluster.env,
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

        # ... and a promotion of its best point, as a second job (Ray Train on the cluster)
        promote = [PRUNETUNE, "submit", "--promote", "it-submit", "--max-macs-ratio", "1.0", "--epochs", "1"]
        promote += ["--workers", "2", "--register-as", "it-submitted", "--address", cluster.dashboard_address]
        promote += ["--tracking-uri", mlflow_server]
        done = subprocess.run(promote, env=cluster.env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "SUCCEEDED" in done.stdout and "cluster.job_entry promote it-submit" in done.stdout
    client, _, _ = _runs(mlflow_server, "it-submit")
    version = client.get_model_version_by_alias("it-submitted", "candidate")
    promoted = client.get_run(version.run_id)
    assert promoted.data.tags["prunetune.role"] == "promote" and "test_accuracy" in promoted.data.metrics

    # a job the cluster cannot take is one clear line, exit 2 (here: nothing listens there)
    refused = subprocess.run(
        [PRUNETUNE, "submit", str(path), "--address", f"http://127.0.0.1:{free_port()}", "--no-follow"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
