from __future__ import annotations

import ast
import math
import pathlib

import pytest
import torch

from tests.trials.conftest import _digits_trial
from trials.data import DataConfig
from trials.errors import TrialFailed, UserError
from trials.groups import build_graph
from trials.latency import LatencySettings
from trials.latency_table import build_table
from trials.models import create_model
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig
from trials.trial import TrialConfig, run_trial

DATA = DataConfig(name="synthetic", batch_size=64, synthetic_train=640)


def _config(**kw):
    base = create_model("resnet20").state_dict()
    kw.setdefault("finetune", FinetuneConfig(epochs=2, lr=0.05))
    return TrialConfig(arch="resnet20", baseline=base, data=DATA, device="cpu", **kw)


def test_run_trial_reports_each_epoch_and_returns_final_metrics():
    reports = []
    latency = LatencySettings(batch_size=2, threads=1, warmup=1, repeats=3)
    result = run_trial(_config(keep=0.5, adaptive_bn_batches=2, latency=latency), reports.append)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert result["val_accuracy"] == reports[-1]["val_accuracy"]
    for key in ("val_accuracy", "val_loss", "macs", "params", "macs_ratio", "latency_ms", "baseline_latency_ms"):
        assert math.isfinite(result[key])
    assert result["latency_ratio"] == result["latency_ms"] / result["baseline_latency_ms"]
    assert 0.2 < result["macs_ratio"] < 0.3 and result["macs"] < result["baseline_macs"]
    assert set(result["spec"]["channels"]) and max(result["spec"]["channels"].values()) <= 32


def test_run_trial_honours_an_exact_spec():
    spec = ChannelSpec({"conv1": 4, "layer3.2.conv1": 17})
    result = run_trial(_config(spec=spec, finetune=FinetuneConfig(steps=2)))
    assert result["spec"]["channels"] == {"conv1": 4, "layer3.2.conv1": 17}
    assert result["state_dict"]["layer3.2.conv1.weight"].shape[0] == 17


def test_nan_ends_the_trial_with_a_failure_not_a_nan_metric():
    with pytest.raises(TrialFailed):
        run_trial(_config(keep=0.5, finetune=FinetuneConfig(steps=4, lr=1e12)))


def test_spec_and_keep_together_is_a_user_error():
    with pytest.raises(UserError, match="either spec or keep"):
        run_trial(_config(keep=0.5, spec=ChannelSpec({"conv1": 4})))


def test_trials_package_imports_neither_ray_nor_mlflow():
    root = pathlib.Path(__file__).resolve().parents[2] / "trials"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("ray", "mlflow") for n in names), path


def test_baseline_of_wrong_shape_is_a_user_error():
    cfg = _config(keep=0.5)
    cfg.baseline = create_model("resnet32").state_dict()
    with pytest.raises(UserError, match="does not fit"):
        run_trial(cfg)
    assert torch.is_grad_enabled()


def test_the_finetune_seed_reaches_the_data_order_and_the_split_stays():
    """data.seed fixes the splits; the fine-tune's own seed sets the data order, so a trial
    re-run with another seed is another sample, and with the same seed the same one."""
    base = create_model("resnet20").state_dict()

    def run(seed: int) -> dict:
        cfg = TrialConfig(
            arch="resnet20",
            baseline=base,
            data=DATA,
            device="cpu",
            keep=0.5,
            finetune=FinetuneConfig(steps=6, lr=0.05, seed=seed),
        )
        return run_trial(cfg)

    a, a_again, b = run(1), run(1), run(2)
    assert a["val_loss"] == a_again["val_loss"]
    assert torch.equal(a["state_dict"]["fc.weight"], a_again["state_dict"]["fc.weight"])
    assert a["val_loss"] != b["val_loss"]
    assert not torch.equal(a["state_dict"]["fc.weight"], b["state_dict"]["fc.weight"])


def test_a_screened_trial_reports_its_adaptive_bn_score_before_the_fine_tune():
    from trials.data import DataConfig
    from trials.models import create_model
    from trials.train import FinetuneConfig
    from trials.trial import TrialConfig, run_trial

    state = create_model("resnet20", num_classes=10, in_channels=1).state_dict()
    reports: list[dict] = []
    cfg = TrialConfig(
        arch="resnet20",
        baseline=state,
        data=DataConfig(name="digits", image_size=8, batch_size=64),
        keep=0.5,
        adaptive_bn_batches=2,
        screen=True,
        finetune=FinetuneConfig(steps=2),
        device="cpu",
    )
    run_trial(cfg, report=reports.append)
    assert [r["epoch"] for r in reports] == [0, 1] and reports[0]["fidelity"] == 0
    assert "fidelity" not in reports[1] and 0 <= reports[0]["val_accuracy"] <= 1


def test_budget_mode_on_params_lands_on_the_params_target():
    result = run_trial(_config(keep=0.7, objective="params", target=0.4, finetune=FinetuneConfig(steps=1)))
    assert abs(result["params_ratio"] - 0.4) < 0.01, result["params_ratio"]  # counted, not modelled


def test_budget_mode_on_latency_lands_near_the_measured_target():
    torch.manual_seed(0)
    base = create_model("resnet20").state_dict()
    model = create_model("resnet20")
    model.load_state_dict(base)
    latency = LatencySettings(batch_size=16, threads=1, warmup=2, repeats=15)
    table = build_table(build_graph(model.eval(), (3, 32, 32), "resnet20"), latency, count=4).to_dict()
    result = run_trial(
        TrialConfig(
            arch="resnet20",
            baseline=base,
            data=DATA,
            device="cpu",
            keep=0.8,
            objective="latency",
            target=0.5,
            latency=latency,
            latency_table=table,
            latency_tolerance=0.05,
            finetune=FinetuneConfig(steps=1),
        )
    )
    # bisected on the table, verified and nudged by measurement: the final measurement (a
    # fresh sample, on two cores shared with whatever else runs) lands near the target
    assert abs(result["latency_ratio"] - 0.5) < 0.15, result["latency_ratio"]
    assert result["latency_pred_ms"] > 0 and result["macs_ratio"] < 0.8


# -- EagleEye -------------------------------------------------------------------------------
def test_adaptive_bn_evaluation_trains_nothing(digits_baseline):
    state = digits_baseline.state_dict()
    cfg = _digits_trial(digits_baseline, keep=0.6, evaluation="adaptive_bn", adaptive_bn_batches=5)
    reports = []
    result = run_trial(cfg, reports.append)
    assert reports == [] and result["epoch"] == 0 and 0.0 <= result["val_accuracy"] <= 1.0
    # no gradient step: the classifier's bias (never pruned) is the baseline's; BN stats are new
    assert torch.equal(result["state_dict"]["fc.bias"], state["fc.bias"])
    assert not torch.equal(result["state_dict"]["layer3.2.bn2.running_var"][:4], state["layer3.2.bn2.running_var"][:4])
