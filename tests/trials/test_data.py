from __future__ import annotations

import numpy as np
import pytest
import torch

from trials.data import DataConfig, load_test, load_train_val, stratified_split
from trials.errors import UserError


def test_stratified_split_is_seeded_disjoint_and_balanced():
    labels = np.repeat(np.arange(5), [100, 50, 40, 30, 20])
    keep, held = stratified_split(labels, 0.2, seed=3)
    assert not set(keep) & set(held) and len(keep) + len(held) == len(labels)
    for c, n in enumerate([100, 50, 40, 30, 20]):
        assert (labels[held] == c).sum() == round(n * 0.2)
    again = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(again[1], held) and not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], held)


def test_digits_ships_inside_the_package_and_upsamples():
    splits = load_train_val(DataConfig(name="digits", image_size=24, batch_size=64))
    x, y = next(iter(splits.train))
    assert x.shape == (64, 1, 24, 24) and y.dtype == torch.long
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 24)
    assert splits.train.num_samples + splits.val.num_samples + load_test(DataConfig()).num_samples == 1797


def test_validation_and_test_never_overlap_training():
    cfg = DataConfig(name="digits", augment=False)
    splits, test = load_train_val(cfg), load_test(cfg)

    def rows(loader):
        return {tuple(r.flatten().round(decimals=4).tolist()) for x, _ in loader for r in x}

    train, val, held = rows(splits.train), rows(splits.val), rows(test)
    assert not (val & train) and not (held & train) and not (held & val)


def test_train_fraction_trains_on_a_stratified_share_and_leaves_val_alone():
    full = load_train_val(DataConfig(name="digits", val_fraction=0.2, augment=False))
    part = load_train_val(DataConfig(name="digits", val_fraction=0.2, augment=False, train_fraction=0.25))
    assert part.val.num_samples == full.val.num_samples
    assert abs(part.train.num_samples - 0.25 * full.train.num_samples) <= 10
    labels = torch.cat([y for _, y in part.train])
    assert torch.bincount(labels, minlength=10).min() >= 0.2 * part.train.num_samples / 10
    with pytest.raises(UserError, match="train_fraction"):
        load_train_val(DataConfig(name="digits", train_fraction=1.5))


def test_missing_roots_say_which_files_to_put_where(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_train_val(DataConfig(name="cifar10", root=str(tmp_path)))
    with pytest.raises(UserError, match="train_32x32.mat"):
        load_train_val(DataConfig(name="svhn", root=None))
    with pytest.raises(UserError, match="one sub-folder of images per class"):
        load_train_val(DataConfig(name="imagefolder", root=str(tmp_path)))
    with pytest.raises(UserError, match="'mnist' needs a folder holding train-images-idx3-ubyte"):
        load_train_val(DataConfig(name="mnist"))
    with pytest.raises(UserError, match="data.name 'emnist' is unknown"):
        load_train_val(DataConfig(name="emnist"))
