"""The --set overrides (orchestrator.overrides): typed, nested, and refused with the key named."""

from __future__ import annotations

import pytest

from orchestrator.config import load_config
from orchestrator.overrides import apply_overrides
from trials.errors import UserError


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    cfg = load_config(path, ["search.num_trials=8", "trial.gpu=0.25", "search.sampler=tpe", "data.root=/d"])
    assert cfg.search.num_trials == 8 and cfg.trial.gpu == 0.25 and cfg.search.sampler == "tpe"
    assert cfg.data.root == "/d"


def test_bad_overrides():
    with pytest.raises(UserError, match="expected dotted.key=value"):
        apply_overrides({}, ["search.num_trials"])
    with pytest.raises(UserError, match="'name' is not a section"):
        apply_overrides({"name": "x"}, ["name.y=1"])
