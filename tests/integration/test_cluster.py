"""Real multi-node Ray clusters on this machine: token authentication, trials spread over
worker nodes, and a worker node lost mid-search."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from cluster.local import LocalCluster
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


def test_an_mlflow_outage_mid_search_loses_no_result(tmp_path, ray_cluster):
    import json
    from pathlib import Path

    from cluster.local import free_port
    from tests.integration.conftest import start_mlflow, stop_mlflow

    root, port = tmp_path / "mlflow", free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(root, port)
    data = _config(
        tmp_path,
        "it-outage",
        uri,
        ray_cluster["address"],
        search={"num_trials": 6, "max_concurrent": 2, "warm_start": [0.5, 0.7]},
        trial={"steps": 20},
    )
    path = tmp_path / "outage.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        [PRUNETUNE, "search", str(path)],
        env=ray_cluster["env"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            try:
                _, _, children = _runs(uri, "it-outage")
                if any(c.info.status == "FINISHED" for c in children):
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(0.5)
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
