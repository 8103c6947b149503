"""Fuzzed input: hundreds of malformed configs and argument lists, each refused with exit 2
and one message that names the problem (the key, the file or the argument), no traceback.

A seeded generator (reproducible) mutates the quickstart config: wrong types, values out
of range, unknown keys at every level, huge numbers, infinities, unicode, broken YAML,
empty files; and malformed command lines for every subcommand.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

import orchestrator.search
from orchestrator.cli import main

QUICKSTART = yaml.safe_load((Path(__file__).parents[2] / "examples" / "quickstart.yaml").read_text())

# (dotted key, values none of which the key accepts)
BAD_VALUES = {
    "name": ["", "has space", "résumé✓", "a/b", 12, ["x"], {"a": 1}],
    "model.arch": [5, ["resnet20"], {"x": 1}],
    "data.name": ["mnist-ish", "DIGITS", 3, "数字"],
    "data.image_size": [4, -1, 10**9, "big", 3.5],
    "data.val_fraction": [0, 1, -0.5, 2, "half", float("inf"), float("nan")],
    "data.train_fraction": [0, 1.5, "all"],
    "data.seed": [-1, 10**40, "zero", 1.5],
    "data.num_workers": [-2, 10**6, "many"],
    "baseline.epochs": [0, -3, float("inf"), 10**12, "ten"],
    "baseline.lr": [0, -0.1, "fast", float("nan")],
    "baseline.batch_size": [0, 10**9, "big", 2.5],
    "baseline.regularizer": ["l1", "DAFP", 7],
    "baseline.target_sparsity": [0, 1, 1.5],
    "baseline.paam_threshold": [0, 1, -1],
    "search.mode": ["both", "", 1],
    "search.macs_target": [0, 1, 1.5, -0.2, "half"],
    "search.granularity": ["block", 2],
    "search.keep_min": [0, -1, 2],
    "search.keep_max": [0, 1.01],
    "search.keep_step": [0, -0.05, 5],
    "search.round_to": [0, 10**6, "eight"],
    "search.sampler": ["bayes", "TPE", 3],
    "search.num_trials": [0, -5, 10**30, "lots", 2.5, float("inf")],
    "search.max_concurrent": [0, 10**12],
    "search.warm_start": [[0], [1.5], "0.5", [None], [-0.1]],
    "search.warm_start_methods": [["magic"], "adapruner", [1]],
    "search.trials_per_run": [0, 10**9],
    "search.seed": [-1, 2**63, "s"],
    "trial.criterion": ["l3", "", 0],
    "trial.evaluation": ["full", 1],
    "trial.epochs": [0, -1, float("inf")],
    "trial.steps": [0, 10**12],
    "trial.lr": [0, -1, "x"],
    "trial.momentum": [1, -0.1],
    "trial.label_smoothing": [1, -0.5],
    "trial.batch_size": [0, 10**7],
    "trial.cpu": [0, -1, 10**6],
    "trial.gpu": [-1, 1000],
    "trial.max_failures": [-1, 10**6],
    "trial.device": ["tpu", "gpu", "cuda:x", "", 0, "cuda", "cuda:0"],
    "storage": ["ftp://host/x", "weird://x", 5],
    "tracking.uri": [5, ["a"]],
    "cluster.address": [5, {"a": 1}],
}
SECTIONS = ["model", "data", "baseline", "search", "trial", "tracking", "cluster"]


def _set(data: dict, dotted: str, value) -> None:
    node = data
    *path, last = dotted.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def _configs(rng: random.Random) -> list[tuple[str, str, str | tuple[str, ...]]]:
    """(label, file text, what the message must name: one text, or any of several)."""
    cases = []
    for key, values in BAD_VALUES.items():
        for v in values:
            data = yaml.safe_load(yaml.safe_dump(QUICKSTART))
            _set(data, key, v)
            cases.append((f"{key}={v!r}", yaml.safe_dump(data, allow_unicode=True), key))
    for _ in range(40):  # unknown keys at every level, unicode among them
        data = yaml.safe_load(yaml.safe_dump(QUICKSTART))
        bogus = rng.choice(["bogus", "épochs", "numTrials", "lr ", "🙂", "x" * 300]) + str(rng.randrange(1000))
        where = rng.choice(["", *SECTIONS])
        if where:
            data.setdefault(where, {})[bogus] = rng.choice([1, "a", None, [1]])
            key = f"{where}.{bogus}"
        else:
            data[bogus] = 1
            key = bogus
        cases.append((f"unknown {key}", yaml.safe_dump(data, allow_unicode=True), key[:60]))
    for section in SECTIONS:  # a section that is not a mapping
        for v in (5, "text", [1, 2]):
            data = yaml.safe_load(yaml.safe_dump(QUICKSTART))
            data[section] = v
            cases.append((f"{section}={v!r}", yaml.safe_dump(data), section))
    text = yaml.safe_dump(QUICKSTART)
    for i in range(20):  # broken YAML
        cut = rng.randrange(10, len(text) - 10)
        broken = text[:cut] + rng.choice(["\n  - [unclosed", ": : :", "\t\tbad: tab", "{a: 1", "\n- x\ny: ]"])
        cases.append((f"broken yaml {i}", broken, ("not valid YAML", "invalid config: ")))  # some cuts still parse
    for label, body in (("empty", ""), ("blank", "\n\n  \n"), ("comment only", "# nothing\n")):
        cases.append((label, body, "name"))
    for label, body in (("a list", "- a\n- b\n"), ("a scalar", "42\n"), ("a string", "hello\n")):
        cases.append((label, body, "mapping"))
    return cases


def _arg_lists(tmp: Path) -> list[tuple[list[str], str]]:
    good = tmp / "good.yaml"
    good.write_text(yaml.safe_dump(QUICKSTART))
    missing = str(tmp / "nope.yaml")
    return [
        (["search", missing], "nope.yaml"),
        (["search", str(good), "--set"], "--set"),
        (["search", str(good), "--set", "no_equals"], "no_equals"),
        (["search", str(good), "--set", "search..num_trials=3"], "search..num_trials"),
        (["search", str(good), "--set", "search.num_trials=abc"], "search.num_trials"),
        (["search", str(good), "--set", "search.num_trials=[1"], "search.num_trials"),
        (["search", str(good), "--set", "name.sub=1"], "name"),
        (["search", str(good), "--set", "search=5"], "search"),
        (["search", str(good), "--set", "trial.device=tpu"], "trial.device"),
        (["search", str(good), "--bogus"], "--bogus"),
        (["search"], "config"),
        (["prune", str(good)], "--method"),
        (["prune", str(good), "--method", "magic"], "--method"),
        (["prune", missing, "--method", "uniform"], "nope.yaml"),
        (["pareto"], "experiment"),
        (["pareto", "x", "--format", "xml"], "--format"),
        (["promote", "x", "--epochs", "0"], "--epochs"),
        (["promote", "x", "--epochs", "ten"], "--epochs"),
        (["promote", "x", "--max-macs-ratio", "1.5"], "--max-macs-ratio"),
        (["promote", "x", "--workers", "0"], "--workers"),
        (["export", "m"], "--format"),
        (["inspect", "resnet21"], "resnet21"),
        (["inspect", "torchvision/shufflenet_v2_x1_0"], "shufflenet"),
        (["inspect", "resnet20", "--num-classes", "1"], "num_classes"),
        (["inspect", "resnet20", "--num-classes", "x"], "--num-classes"),
        (["submit"], "--address"),
        (["sync"], "name"),
        (["nosuchcommand"], "nosuchcommand"),
        ([], "command"),
    ]


@pytest.fixture
def refuse_runs(monkeypatch):
    def accepted(*_a, **_k):
        raise AssertionError("a malformed config was accepted")

    monkeypatch.setattr(orchestrator.search, "run_search", accepted)


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    return code, capsys.readouterr().err


def test_two_hundred_malformed_configs_exit_2_naming_the_problem(tmp_path, capsys, monkeypatch, refuse_runs):
    monkeypatch.chdir(tmp_path)
    cases = _configs(random.Random(0))
    assert len(cases) >= 200
    for i, (label, text, names) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text, encoding="utf-8")
        code, err = _run(["search", str(path)], capsys)
        assert code == 2, (label, err)
        assert "Traceback" not in err, (label, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("prunetune: error:"), (label, err)
        assert any(n in err for n in ((names,) if isinstance(names, str) else names)), (label, names, err)
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_malformed_command_lines_exit_2_naming_the_argument(tmp_path, capsys, monkeypatch, refuse_runs):
    monkeypatch.chdir(tmp_path)
    for argv, names in _arg_lists(tmp_path):
        code, err = _run(argv, capsys)
        assert code == 2, (argv, err)
        assert "Traceback" not in err and names in err, (argv, names, err)
        assert err.strip().splitlines()[-1].startswith(("prunetune: error:", "usage:", "prunetune ")), (argv, err)
