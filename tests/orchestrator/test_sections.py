"""The config's sections (orchestrator/sections.py): their defaults, measured, and the
trial settings they build by field name. Validated through ``validate_config``, as a user's
config is."""

from __future__ import annotations

import pytest

from orchestrator.config import validate_config
from orchestrator.sections import SWEEP_DEFAULT
from trials.errors import UserError


def test_budget_mode_on_macs_starts_from_the_sensitivity_allocation_unless_told_otherwise():
    """The measured default (docs/benchmarks.md): uniform and the sensitivity allocation
    both evaluated first in budget mode on MACs; other modes and objectives start from
    uniform only; a list the user gives, the empty one included, is kept."""

    def methods(**search):
        return validate_config({"name": "x", "model": {"arch": "resnet20"}, "search": search}).search.warm_start_methods

    assert methods(mode="budget", macs_target=0.5) == ["sensitivity"]
    assert methods(mode="budget", objective="macs", target=0.5) == ["sensitivity"]
    assert methods(mode="budget", objective="params", target=0.5) == []
    assert methods() == []  # front mode
    assert methods(mode="budget", macs_target=0.5, warm_start_methods=[]) == []
    assert methods(mode="budget", macs_target=0.5, warm_start_methods=["adapruner"]) == ["adapruner"]
    sens = validate_config({"name": "x", "model": {"arch": "resnet20"}}).sensitivity
    assert (sens.levels, sens.val_batches) == (2, 2)


def test_front_mode_on_macs_samples_each_trials_target_unless_told_otherwise():
    """Front mode covers the whole MACs range by default; budget mode cannot (refused when
    asked), and other objectives keep per-layer ratios alone unless asked."""

    def targets(**search):
        return validate_config({"name": "x", "model": {"arch": "resnet20"}, "search": search}).search.front_targets

    assert targets() is True
    assert targets(front_targets=False) is False
    assert targets(objective="params") is False
    assert targets(objective="params", front_targets=True) is True
    assert targets(mode="budget", macs_target=0.5) is False
    with pytest.raises(UserError, match="front_targets"):
        targets(mode="budget", macs_target=0.5, front_targets=True)


def test_every_section_field_a_trials_setting_shares_reaches_it():
    """The data and trial sections build DataConfig and FinetuneConfig by field name: a
    value set in the config is the value a trial runs with, for every shared field."""
    import dataclasses

    from trials.data import DataConfig
    from trials.train import FinetuneConfig

    data = {"root": "/x", "image_size": 24, "val_fraction": 0.3, "train_fraction": 0.5, "seed": 7, "num_workers": 1}
    trial = {"epochs": 3.5, "lr": 0.03, "momentum": 0.8, "weight_decay": 1e-3, "schedule": "step"}
    trial |= {"label_smoothing": 0.1, "batch_size": 16}
    cfg = validate_config({"name": "x", "data": {"name": "synthetic", **data}, "trial": trial})
    d, ft = cfg.data_config(), cfg.trial.finetune(seed=5)
    assert {k: getattr(d, k) for k in data} == data and d.batch_size == 16 and d.name == "synthetic"
    assert {k: getattr(ft, k) for k in trial if k != "batch_size"} == {
        k: v for k, v in trial.items() if k != "batch_size"
    }
    assert ft.seed == 5
    shared = {f.name for f in dataclasses.fields(FinetuneConfig)} & set(type(cfg.trial).model_fields)
    assert shared == {"epochs", "steps", "lr", "momentum", "weight_decay", "schedule", "label_smoothing"}
    assert {f.name for f in dataclasses.fields(DataConfig)} >= set(type(cfg.data).model_fields)


def test_front_mode_on_macs_starts_with_a_sweep_and_fills_unless_warm_starts_are_given():
    """The measured default (docs/benchmarks.md, front mode): a sweep of SWEEP_DEFAULT
    points and every sampled trial filling a gap; warm starts given by the user replace the
    sweep; budget mode neither sweeps nor fills, and starts from the uniform warm starts."""

    def search(**fields):
        s = validate_config({"name": "x", "model": {"arch": "resnet20"}, "search": fields}).search
        return s.sweep, s.fill, s.warm_start

    assert search() == (SWEEP_DEFAULT, 1.0, [])
    assert search(warm_start=[0.5]) == (0, 1.0, [0.5])
    assert search(sweep=5, fill=0.5) == (5, 0.5, [])
    assert search(mode="budget", macs_target=0.5) == (0, 0.0, [0.5, 0.75, 1.0])
    assert search(objective="params") == (0, 0.0, [0.5, 0.75, 1.0])  # not on MACs: no sweep, no fill


def test_front_mode_starts_from_a_cached_sensitivity_map_unless_a_method_or_warm_start_is_named():
    """On by default exactly where the default sweep runs with no warm-start method named;
    asked for where no sweep runs, it is one clear error."""

    def cached(**fields):
        return validate_config({"name": "x", "model": {"arch": "resnet20"}, "search": fields}).search

    assert cached().cached_sensitivity is True
    assert cached(warm_start=[0.5]).cached_sensitivity is False  # the user's warm starts: no sweep
    assert cached(warm_start_methods=[]).cached_sensitivity is False  # uniform, as asked
    assert cached(warm_start_methods=["adapruner"]).cached_sensitivity is False
    assert cached(sweep=0).cached_sensitivity is False
    assert cached(objective="params").cached_sensitivity is False
    assert cached(mode="budget", macs_target=0.5).cached_sensitivity is False
    assert cached(cached_sensitivity=False).cached_sensitivity is False
    with pytest.raises(UserError, match="cached_sensitivity"):
        cached(mode="budget", macs_target=0.5, cached_sensitivity=True)
