"""The settings every trial runs with: typed, frozen, and what the config says."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from orchestrator.config import validate_config
from orchestrator.settings import TrialSettings, trial_settings
from orchestrator.trainable import trial_config


def _cfg(**search):
    return validate_config(
        {
            "name": "s",
            "model": {"arch": "resnet20"},
            "data": {"name": "digits", "val_fraction": 0.25},
            "search": {"mode": "budget", "macs_target": 0.4, "keep_min": 0.2, **search},
            "trial": {"criterion": "taylor", "epochs": 3, "lr": 0.02, "adaptive_bn_batches": 5},
        }
    )


def test_settings_carry_the_config_to_the_trial_and_cannot_be_changed():
    cfg = _cfg(screen=0.5)
    s = trial_settings(cfg, {"stage0": ["conv1"]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.target = 0.9  # type: ignore[misc]
    with pytest.raises(TypeError):
        TrialSettings("resnet20", cfg.data_config(), {}, "cpu")  # type: ignore[misc]  (keyword-only)
    assert pickle.loads(pickle.dumps(s)) == s  # what Ray sends to every worker
    tc = trial_config(s, {}, None, keep={"conv1": 0.5})
    assert (tc.arch, tc.target, tc.keep_min, tc.criterion, tc.adaptive_bn_batches) == (
        "resnet20",
        0.4,
        0.2,
        "taylor",
        5,
    )
    assert (tc.finetune.epochs, tc.finetune.lr, tc.data.val_fraction, tc.screen) == (3, 0.02, 0.25, True)
    assert tc.latency is None and tc.timer is None


def test_front_mode_sets_no_budget_and_latency_settings_only_with_that_objective():
    front = trial_settings(validate_config({"name": "f", "model": {"arch": "resnet20"}}), {})
    assert front.target is None and front.latency is None and front.screen is False
    lat = trial_settings(
        validate_config({"name": "l", "model": {"arch": "resnet20"}, "search": {"objective": "latency"}}), {}
    )
    assert lat.latency is not None and lat.objective == "latency"
