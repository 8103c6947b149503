from __future__ import annotations

import torch

from orchestrator.baseline import prepare_baseline
from orchestrator.config import validate_config
from trials.baseline import ModelInfo, save_checkpoint
from trials.data import load_train_val
from trials.models import create_model


def _checkpoint(path, seed: int, info: ModelInfo):
    torch.manual_seed(seed)
    model = create_model(info.arch, num_classes=info.num_classes, in_channels=info.in_channels)
    save_checkpoint(path, model, info)
    return model


def test_a_given_baseline_path_wins_over_a_cached_baseline(tmp_path):
    cfg = validate_config(
        {"name": "b", "storage": str(tmp_path / "runs"), "baseline": {"path": str(tmp_path / "mine.pt")}}
    )
    splits = load_train_val(cfg.data_config())
    info = ModelInfo("resnet20", splits.num_classes, splits.in_channels, splits.image_size)
    _checkpoint(cfg.storage_dir() / "baseline.pt", 1, info)  # left by an earlier run of this config
    mine = _checkpoint(tmp_path / "mine.pt", 2, info)
    said: list[str] = []
    base = prepare_baseline(cfg, "cpu", said.append)
    assert said == [f"baseline: loaded {tmp_path / 'mine.pt'}"]
    assert torch.equal(base.model.state_dict()["conv1.weight"], mine.state_dict()["conv1.weight"])
