from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import dump_config, load_config, validate_config
from trials.errors import UserError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_and_validates(path):
    cfg = load_config(path)
    assert cfg.name and cfg.search.num_trials >= 1
    if cfg.search.mode == "budget":
        assert 0 < cfg.search.macs_target < 1


def test_quickstart_is_a_digits_front_search():
    cfg = load_config(Path(EXAMPLES[0]).parent / "quickstart.yaml")
    assert (cfg.data.name, cfg.model.arch, cfg.search.mode, cfg.trial.gpu) == ("digits", "resnet20", "front", 0)


def test_round_to_takes_a_multiple_or_auto():
    assert validate_config({"name": "x", "search": {"round_to": "auto"}}).search.round_to == "auto"
    assert validate_config({"name": "x", "search": {"round_to": 8}}).search.round_to == 8
    # unset: auto where latency is the objective, 1 otherwise; given, as given
    assert validate_config({"name": "x"}).search.round_to == 1
    latency = {"mode": "budget", "objective": "latency", "target": 0.5}
    assert validate_config({"name": "x", "search": latency}).search.round_to == "auto"
    assert validate_config({"name": "x", "search": {**latency, "round_to": 1}}).search.round_to == 1


def test_resolved_config_round_trips():
    cfg = validate_config({"name": "x", "search": {"mode": "budget", "macs_target": 0.47}})
    assert validate_config(yaml.safe_load(dump_config(cfg))) == cfg


@pytest.mark.parametrize(
    "data,message",
    [
        ({"name": "x", "search": {"num_trails": 3}}, "search.num_trails: unknown key"),
        ({"name": "x", "search": {"num_trials": "many"}}, "search.num_trials"),
        ({"name": "x", "trial": {"criterion": "l7"}}, "trial.criterion"),
        ({"name": "x", "search": {"mode": "budget"}}, "search.target: budget mode needs it"),
        (
            {"name": "x", "search": {"mode": "budget", "target": 0.5, "macs_target": 0.5}},
            "search.macs_target: give target .with objective. or macs_target, not both",
        ),
        (
            {"name": "x", "search": {"mode": "budget", "objective": "latency", "macs_target": 0.5}},
            "search.macs_target: targets MACs, but objective is latency: use target",
        ),
        ({"name": "x", "search": {"objective": "flops"}}, "search.objective"),
        ({"name": "x", "latency": {"runtime": "tensorrt"}}, "latency.runtime"),
        ({"name": "x", "latency": {"device": "tpu"}}, "latency.device: .tpu. is not one of cpu, cuda"),
        ({"name": "x", "latency": {"repeats": 1}}, "latency.repeats"),
        ({"name": "x", "latency": {"clock": "thread"}}, "latency.clock: thread needs device cpu and threads 1"),
        ({"name": "x", "latency": {"clock": "cpu"}}, "latency.clock"),
        (
            {"name": "x", "search": {"objective": "latency"}, "latency": {"device": "cuda"}},
            "latency.device: cuda is measured where trials run: it needs trial.gpu > 0",
        ),
        ({"name": "x", "search": {"keep_min": 0.9, "keep_max": 0.5}}, "search.keep_min: 0.9 is above keep_max"),
        ({"name": "x", "trial": {"device": "tpu"}}, "trial.device: .tpu. is not one of"),
        ({"name": "x", "trial": {"device": "cuda"}}, "trial.device: .cuda. needs trial.gpu > 0"),
        ({"name": "x", "search": {"num_trials": 10**30}}, "search.num_trials"),
        ({"name": "x", "baseline": {"epochs": float("inf")}}, "baseline.epochs"),
        ({"name": "bad name/"}, "name"),
        ({"name": "x", "trial": {"gpu": -1}}, "trial.gpu"),
        ({"name": "x", "search": {"round_to": "best"}}, "search.round_to"),
        ({"name": "x", "search": {"round_to": 0}}, "search.round_to"),
        ({"name": "x", "latency": {"node_resource": "has space"}}, "latency.node_resource"),
    ],
)
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(UserError, match=message):
        validate_config(data)


def test_cli_exits_2_without_traceback(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nsearch:\n  bogus: 1\n")
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err
    assert "search.bogus: unknown key" in err and "Traceback" not in err
    assert main(["search", str(tmp_path / "missing.yaml")]) == 2
    assert main(["search", str(path), "--set", "search.bogus"]) == 2


def test_method_switches_validate():
    cfg = validate_config(
        {
            "name": "m",
            "baseline": {"regularizer": "paam", "regularizer_weight": 0.002},
            "trial": {"criterion": "auto", "evaluation": "adaptive_bn", "regularizer": "ffr"},
            "search": {"warm_start_methods": ["adapruner", "paam"]},
        }
    )
    assert cfg.baseline.regularizer_options() == {"weight": 0.002}
    assert validate_config(
        {"name": "d", "baseline": {"regularizer": "dafp", "target_sparsity": 0.4}}
    ).baseline.regularizer_options() == {
        "target": 0.4,
        "threshold": 0.05,
    }


@pytest.mark.parametrize(
    "data, where",
    [
        ({"trial": {"criterion": "paam"}}, "learned scores"),
        ({"search": {"warm_start_methods": ["paam"]}}, "learned scores"),
        ({"baseline": {"regularizer": "l0"}}, "baseline.regularizer"),
        ({"baseline": {"target_sparsity": 1.5}}, "baseline.target_sparsity"),
        ({"trial": {"evaluation": "oracle"}}, "trial.evaluation"),
        ({"trial": {"regularizer": "dafp"}}, "trial.regularizer"),
        ({"search": {"warm_start_methods": ["snip"]}}, "search.warm_start_methods"),
    ],
)
def test_bad_method_switches_name_the_key(data, where):
    with pytest.raises(UserError, match=where.replace(".", r"\.")):
        validate_config({"name": "x", **data})


def test_prune_with_bad_input_exits_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrial:\n  criterion: paam\n")
    assert main(["prune", str(path), "--method", "adapruner", "--macs-target", "0.5"]) == 2
    assert "learned scores" in capsys.readouterr().err


def test_storage_may_be_a_uri_with_local_driver_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = validate_config({"name": "s", "storage": "s3://bucket/prunetune/"})
    assert cfg.storage_uri() == "s3://bucket/prunetune/s"
    assert cfg.storage_dir() == (tmp_path / "runs" / "s").resolve()  # baseline cache, spill file
    local = validate_config({"name": "s", "storage": str(tmp_path / "shared")})
    assert local.storage_uri() == str(tmp_path / "shared" / "s") and local.storage_dir() == tmp_path / "shared" / "s"
    with pytest.raises(UserError, match="storage"):
        validate_config({"name": "s", "storage": "nosuchscheme://x/y"})


def test_objective_and_target_with_macs_target_kept_working():
    old = validate_config({"name": "x", "search": {"mode": "budget", "macs_target": 0.4}})
    assert (old.search.objective, old.search.budget_target) == ("macs", 0.4)
    new = validate_config({"name": "x", "search": {"mode": "budget", "objective": "latency", "target": 0.6}})
    assert (new.search.objective, new.search.budget_target) == ("latency", 0.6)
    assert new.latency.settings().runtime == "torch"


def test_a_latency_search_on_onnxruntime_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    data = {"name": "x", "search": {"objective": "latency"}, "latency": {"runtime": "onnxruntime"}}
    with pytest.raises(UserError, match=r"pip install 'prunetune\[latency\]'"):
        validate_config(data)
