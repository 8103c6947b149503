from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orchestrator.cli import main
from trials.errors import UserError


def test_inspect_lists_groups_with_macs(capsys):
    assert main(["inspect", "resnet56", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["groups"]) == 30 and abs(out["macs"] - 126e6) / 126e6 < 0.02
    assert out["groups"][0]["name"] == "conv1" and "layer1.8.conv2" in out["groups"][0]["members"]


def test_inspect_table(capsys):
    assert main(["inspect", "resnet20", "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert "12 channel groups" in out and "layer3.2.conv1" in out


def test_bad_input_exits_2_with_a_message(capsys):
    assert main(["inspect", "resnet21"]) == 2
    err = capsys.readouterr().err
    assert "model 'resnet21' is unknown" in err and "Traceback" not in err


def test_submit_refuses_bad_input_before_contacting_a_cluster(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    assert main(["submit", "--address", "http://127.0.0.1:9"]) == 2
    assert "either CONFIG" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "http://127.0.0.1:9"]) == 2  # storage 'runs' is relative
    assert "absolute path every node sees" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "127.0.0.1:9", "--set", "storage=/shared/runs"]) == 2
    assert "dashboard URL" in capsys.readouterr().err


def test_resume_refuses_a_changed_config_before_any_work(tmp_path, capsys, monkeypatch):
    from orchestrator.config import dump_config, load_config
    from orchestrator.config import flat_config as _flat
    from orchestrator.tracking import SearchRecord

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = tmp_path / "s.yaml"
    path.write_text(f"name: rs\nsearch: {{num_trials: 8, trials_per_run: 3}}\ntracking: {{uri: '{uri}'}}\n")
    cfg = load_config(path, [])
    record = SearchRecord.open(uri, "rs", cfg.storage_uri(), resume=False)  # the search as it started
    record.log_config(dump_config(cfg), _flat(cfg.model_dump(mode="json")))

    changed = ["--set", "search.trials_per_run=4", "--set", "trial.lr=0.1", "--set", "trial.cpu=2"]
    assert main(["search", str(path), "--resume", *changed]) == 2
    err = capsys.readouterr().err
    assert "search.trials_per_run 3 -> 4" in err and "trial.lr 0.02 -> 0.1" in err
    assert "trial.cpu" not in err  # the trials' resources may change on a resume
    assert not (tmp_path / "runs").exists()  # refused before the baseline or Ray


def test_resume_ignores_settings_the_stored_search_predates_and_where_it_runs():
    from orchestrator.resume import resume_changes

    stored = {"search.num_trials": "8", "cluster.address": "10.0.0.1:6379", "data.root": "/a"}
    now = {"search.num_trials": 8, "search.added_later": 1, "cluster.address": None, "data.root": "/b"}
    assert resume_changes(stored, now) == []
    assert resume_changes(stored, {**now, "search.num_trials": 9}) == ["search.num_trials"]


def test_resume_keeps_the_stored_value_of_a_setting_left_unset_whose_default_changed(tmp_path):
    """A search started when front_targets and spread defaulted to off resumes under them,
    not under today's defaults; a setting the user gives is still checked."""
    from orchestrator.config import dump_config, flat_config, load_config
    from orchestrator.resume import resume_config
    from orchestrator.tracking import SearchRecord

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = tmp_path / "s.yaml"
    path.write_text(f"name: rd\nstorage: {tmp_path}/runs\ntracking: {{uri: '{uri}'}}\n")
    old = load_config(path, ["search.front_targets=false", "search.spread=false"])  # the old defaults
    record = SearchRecord.open(uri, "rd", old.storage_uri(), resume=False)
    record.log_config(dump_config(old), flat_config(old.model_dump(mode="json")))

    now = load_config(path, [])
    assert now.search.front_targets and now.search.spread  # today's defaults
    said = []
    kept = resume_config(now, say=said.append)
    assert (kept.search.front_targets, kept.search.spread) == (False, False)
    assert "search.front_targets=False" in said[0]
    assert kept.given == now.given and kept.trial == now.trial
    with pytest.raises(UserError, match="search.spread False -> True"):
        resume_config(load_config(path, ["search.spread=true"]))  # given, so a change


def test_an_unreachable_or_mistyped_tracking_uri_is_one_line(tmp_path, capsys, monkeypatch):
    from cluster.local import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: q\n")
    down = f"http://127.0.0.1:{free_port()}"
    for argv in (
        ["pareto", "q", "--tracking-uri", down],
        ["pareto", "q", "--tracking-uri", "htp://nowhere"],
        ["search", str(cfg), "--resume", "--tracking-uri", down],
        ["search", str(cfg), "--tracking-uri", down],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert ("cannot be reached" in err or "cannot be read" in err) and argv[-1] in err, (argv, err)
    assert not (tmp_path / "runs").exists()


def test_pareto_honours_the_environment_and_plots_into_a_new_folder(tmp_path, capsys, monkeypatch):
    from orchestrator.tracking import SearchRecord

    uri = f"sqlite:///{tmp_path}/elsewhere.db"
    record = SearchRecord.open(uri, "q", str(tmp_path / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.9, "macs": 1e8})
    spec = json.dumps({"channels": {"g": 4}})
    # t3: the unpruned network fine-tuned, below the baseline: the baseline's point beats it
    for i, (acc, macs) in enumerate([(0.8, 2e7), (0.85, 5e7), (0.7, 6e7), (0.88, 1e8)]):
        result = {"val_accuracy": acc, "macs": macs, "macs_ratio": macs / 1e8, "params": 9, "spec_json": spec}
        record.log_final(f"t{i}", {"stage0": 0.5}, result)
    assert record.client.get_run(record.children["t3"]).data.tags["prunetune.pareto"] == "false"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    plot = tmp_path / "new" / "deeper" / "front.png"
    assert main(["pareto", "q", "--format", "json", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert {t["trial"] for t in json.loads(captured.out)["trials"]} == {"t0", "t1", "baseline"}
    assert plot.is_file() and str(plot) in captured.err
    assert not (tmp_path / "mlflow.db").exists()  # MLFLOW_TRACKING_URI, not the default store


def test_a_model_prunetune_cannot_cut_is_refused_before_any_data_or_baseline(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "s.yaml"
    for arch, says in (("torchvision/shufflenet_v2_x1_0", "cannot be channel-pruned"), ("resnet21", "unknown")):
        cfg.write_text(f"name: m\nmodel: {{arch: '{arch}'}}\n")
        t0 = time.perf_counter()
        assert main(["search", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert says in err and arch in err and "Traceback" not in err
        assert time.perf_counter() - t0 < 20  # refused at once: no baseline was trained
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_every_cli_argument_has_help_and_its_default_is_shown():
    import argparse

    from orchestrator.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"prunetune {name} {action.dest}: no help text"
    promote = subparsers.choices["promote"].format_help()
    assert "fine-tuning epochs (default: 30)" in promote
    assert "(default: the search's trial lr)" in promote  # a default said in words is not repeated
    assert "(default: None)" not in "".join(s.format_help() for s in subparsers.choices.values())


def test_start_up_noise_is_held_back_unless_verbose(tmp_path):
    """A first command on a new store: MLflow's database INFO lines only with --verbose."""
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "prunetune")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}  # as a new shell has it
    outs = {}
    for flag in ([], ["--verbose"]):
        uri = f"sqlite:///{tmp_path}/m{len(flag)}.db"
        done = subprocess.run(
            [cli, "pareto", "none", "--tracking-uri", uri, *flag], capture_output=True, text=True, env=env
        )
        assert done.returncode == 2 and "experiment 'none' not found" in done.stderr
        outs[bool(flag)] = done.stderr
    assert "INFO mlflow" not in outs[False] and "INFO mlflow" in outs[True]


@pytest.mark.parametrize("verbose", [False, True])
def test_optunas_new_study_line_only_with_verbose(verbose):
    """Importing Optuna resets its logger to INFO after the CLI quieted it; the searcher sets
    it back where it makes the study, so a quickstart's stderr does not end with "A new
    study created". A quiet call followed by a verbose one in the same process is not held back."""
    code = (
        "from orchestrator.cli import quiet\n"
        "quiet(False)\n"  # an earlier quiet command in the same process
        f"quiet({verbose})\n"
        "import optuna\n"
        "from orchestrator.searcher import PrunetuneOptunaSearch\n"
        "space = {'a': optuna.distributions.FloatDistribution(0.3, 1.0)}\n"
        "PrunetuneOptunaSearch(space=space, metric='val_accuracy', mode='max')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("A new study created" in done.stderr) is verbose
