"""The resume policy (orchestrator.resume): what may change on a resume, what is refused, stored values kept for settings left unset."""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from trials.errors import UserError


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
