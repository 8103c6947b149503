"""Every seed method end to end inside a small search on real Ray, recorded in real MLflow,
and `prunetune prune` logging its one run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator import promote
from tests.integration.conftest import PRUNETUNE, _config, _runs, _search
from trials.cost import count_cost

# no xdist group: these need at most the one-node cluster, and run last (tests/integration/conftest.py)
pytestmark = pytest.mark.integration

METHOD_SEARCHES = {
    # DAFP: sparsity-trained baseline, dependency-aware criterion, EagleEye adaptive-BN fidelity
    "it-dafp": (
        {"regularizer": "dafp", "target_sparsity": 0.3},
        {"criterion": "dafp", "evaluation": "adaptive_bn"},
        {"warm_start_methods": ["adapruner", "sensitivity"]},
    ),
    # PAAM: learned scores as criterion and as a warm-start point; FFR during trial fine-tunes
    "it-paam": (
        {"regularizer": "paam"},
        {"criterion": "paam", "regularizer": "ffr", "regularizer_weight": 0.5},
        {"warm_start_methods": ["paam"]},
    ),
    # FFR-trained baseline; AdaPruner's adaptive weight inheritance picks a criterion per trial
    "it-ffr-auto": ({"regularizer": "ffr", "regularizer_weight": 1.0}, {"criterion": "auto"}, {}),
}


@pytest.mark.parametrize("name", list(METHOD_SEARCHES))
def test_method_runs_end_to_end_inside_a_search(name, tmp_path, mlflow_server, ray_cluster):
    baseline, trial, search = METHOD_SEARCHES[name]
    data = _config(tmp_path, name, mlflow_server, ray_cluster["address"], {"num_trials": 4, **search}, trial)
    data["baseline"].update(baseline)
    done = _search(tmp_path, ray_cluster, data)
    assert "[4/4]" in done.stdout and f"with regularizer {baseline['regularizer']}" in done.stdout
    client, parents, children = _runs(mlflow_server, name)
    assert len(parents) == 1 and len(children) == 4
    assert all(c.info.status == "FINISHED" for c in children), [c.data.tags.get("prunetune.error") for c in children]
    parent = parents[0].data
    assert "baseline_val_accuracy" in parent.metrics
    if baseline["regularizer"] == "dafp":  # the coefficient's course is on the search run
        history = client.get_metric_history(parents[0].info.run_id, "baseline_dafp_weight")
        assert len(history) >= 4 and "baseline_bn_sparsity" in parent.metrics
    if trial["criterion"] == "auto":
        for c in children:
            chosen = c.data.tags["prunetune.criterion"]
            scores = json.loads(
                Path(client.download_artifacts(c.info.run_id, "criterion_scores.json", str(tmp_path))).read_text()
            )
            assert scores[chosen] == max(scores.values())
    if "sensitivity" in search.get("warm_start_methods", []):  # the map, computed by Ray tasks, is logged
        logged = {a.path for a in client.list_artifacts(parents[0].info.run_id, "sensitivity")}
        assert logged == {"sensitivity/map.json", "sensitivity/table.json", "sensitivity/heatmap.png"}
    if search.get("warm_start_methods"):  # the starting points, the method's first, are what Optuna ran first
        starts = json.loads(
            Path(client.download_artifacts(parents[0].info.run_id, "search/starts.json", str(tmp_path))).read_text()
        )
        method = search["warm_start_methods"][0]
        assert starts[0]["origin"].split("@")[0] == method and starts[-1]["origin"].startswith("uniform@")
        ran = [c.data.params for c in children]
        for start in starts[: len(children)]:
            assert any({k: p.get(k) for k in start["params"]} == start["params"] for p in ran), (start, ran)
    if trial["criterion"] in ("auto", "paam"):  # promotion cuts the network as the trial did
        _promotes_as_the_trial_cut(mlflow_server, children[0], trial["criterion"])


def _promotes_as_the_trial_cut(uri, trial_run, criterion: str) -> None:
    """Promotion's cut, read from this search's MLflow record as `prunetune promote` reads
    it (config, spec, baseline checkpoint with PAAM's scores, the chosen criterion): the
    network it would fine-tune is the trial's. Called in process: the fine-tune, the
    timings and the registration after it are the promotion tests' (test_promote.py,
    test_cluster.py's submitted promotion), and each ran 30-40 s here."""
    client = MlflowClient(uri)
    trial = client.get_run(trial_run.info.run_id)
    cfg, info, spec, _, pruned = promote._cut_as_the_trial_did(client, trial)
    meta = promote.promoted_meta(trial, cfg, info, spec)
    expected = trial_run.data.tags["prunetune.criterion"] if criterion == "auto" else "paam"
    assert meta["criterion"] == expected and expected != "auto"
    shape = (info.in_channels, info.input_size, info.input_size)
    cost = count_cost(pruned, shape)
    assert (cost.macs, cost.params) == (trial_run.data.metrics["macs"], trial_run.data.metrics["params"])


def test_prune_command_logs_one_run_with_the_allocation(tmp_path, mlflow_server, ray_cluster):
    data = _config(tmp_path, "it-prune", mlflow_server, ray_cluster["address"], trial={"criterion": "auto"})
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(data))
    cmd = [PRUNETUNE, "prune", str(path), "--method", "adapruner", "--macs-target", "0.5"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert abs(result["macs_ratio"] - 0.5) <= 0.005
    client, _, _ = _runs(mlflow_server, "it-prune")
    run = client.get_run(result["run_id"])
    assert run.data.tags["prunetune.role"] == "prune" and run.data.tags["prunetune.method"] == "adapruner"
    assert run.data.tags["prunetune.criterion"] == result["criterion"]
    assert run.data.metrics["val_accuracy"] == pytest.approx(result["val_accuracy"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"spec.json", "model", "criterion_scores.json"}
    bad = subprocess.run(cmd[:-2], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--macs-target" in bad.stderr and "Traceback" not in bad.stderr


def test_prune_by_sensitivity_bisects_onto_the_target_and_logs_the_map(tmp_path, mlflow_server, ray_cluster):
    data = _config(tmp_path, "it-sens", mlflow_server, ray_cluster["address"])
    data["sensitivity"] = {"levels": 3}
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(data))
    cmd = [PRUNETUNE, "prune", str(path), "--method", "sensitivity", "--macs-target", "0.4"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sensitivity: threshold" in done.stdout
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert abs(result["macs_ratio"] - 0.4) <= 0.004
    client, _, _ = _runs(mlflow_server, "it-sens")
    run = client.get_run(result["run_id"])
    assert run.data.tags["prunetune.method"] == "sensitivity"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "sensitivity")}
    assert logged == {"sensitivity/map.json", "sensitivity/table.json", "sensitivity/heatmap.png"}
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "sensitivity/table.json", str(tmp_path))).read_text()
    )
    assert len(table["group"]) >= 10 and len([k for k in table if k.startswith("keep_")]) == 4  # 3 levels and 1.0
