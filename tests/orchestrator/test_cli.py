from __future__ import annotations

import json

from orchestrator.cli import main


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
    from orchestrator.resume import flat_config as _flat
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
    assert resume_changes(stored, {**now, "search.num_trials": 9}) == ["search.num_trials 8 -> 9"]
