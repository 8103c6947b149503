"""The deployment files: valid for their tools, token authentication on, no secret inside."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "cluster" / "deploy"


@pytest.mark.parametrize("name,provider", [("aws.yaml", "aws"), ("gcp.yaml", "gcp")])
def test_launcher_configs_pass_rays_validation_with_gpu_workers_and_token_auth(name, provider):
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((DEPLOY / name).read_text())
    validate_config(cfg)  # Ray's own schema check; raises on an invalid config
    assert cfg["provider"]["type"] == provider
    worker = cfg["available_node_types"]["gpu_worker"]["node_config"]
    assert ("g5" in worker.get("InstanceType", "")) or worker.get("guestAccelerators")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(cfg[key])
        assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN=$(" in start  # read from a secret store


def _docs(path):
    return list(yaml.safe_load_all(path.read_text()))


def _containers(cluster_spec):
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]], groups


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_have_what_kuberay_needs(name):
    (doc,) = _docs(DEPLOY / "kuberay" / name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    containers, groups = _containers(spec)
    assert all("rayStartParams" in g for g in groups)
    assert all(g.get("groupName") for g in spec["workerGroupSpecs"])
    gpu = [c for c in containers if "nvidia.com/gpu" in c["resources"].get("limits", {})]
    assert gpu, "no GPU worker group"
    for c in containers:
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"] and "value" not in env["RAY_AUTH_TOKEN"]
    if doc["kind"] == "RayJob":
        entry = doc["spec"]["entrypoint"].split()
        assert entry[:2] == ["prunetune", "search"]
        example = ROOT / "examples" / Path(entry[2]).name
        assert example.is_file()
        from orchestrator.config import load_config

        load_config(example)


def test_mlflow_recipe_uses_postgres_s3_and_authentication_from_the_environment(tmp_path):
    script = DEPLOY / "mlflow" / "start-mlflow-server.sh"
    text = script.read_text()
    assert "--app-name basic-auth" in text and "--backend-store-uri" in text and "--artifacts-destination" in text
    assert "postgresql://" in text and "s3://" in text
    # Without credentials in the environment it refuses to start.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "MLFLOW_DB_URI" in done.stderr


SECRET_PATTERNS = [
    re.compile(r"\b[0-9a-f]{64}\b"),  # a Ray token literal
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
    re.compile(r"(?i)(password|secret|token)\s*[:=]\s*['\"][^'\"$<{][^'\"]{5,}['\"]"),
]


def test_no_credentials_are_committed():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        path = ROOT / name
        if path.suffix in (".npz", ".png") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        for pattern in SECRET_PATTERNS:
            match = pattern.search(text)
            assert match is None, f"{name}: looks like a credential: {match.group(0)[:20]}..."
