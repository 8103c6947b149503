"""MNIST-format sets (Fashion-MNIST, MNIST, KMNIST) read from generated IDX files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from trials.data import DataConfig, load_test, load_train_val
from trials.errors import UserError
from trials.idx import FILES, read_idx_set


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">I", (code << 8) | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_idx_set(root, n_train=200, n_test=50, gz=True, seed=0):
    """A small MNIST-format set: class c is a bright square at a class-dependent place."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = rng.integers(0, 40, size=(n, 28, 28))
        for i, c in enumerate(y):
            r, col = 2 + 2 * c, 4 + c
            x[i, r : r + 6, col : col + 6] = 250
        stem = "train" if split == "train" else "t10k"
        _write_idx(root / f"{stem}-images-idx3-ubyte", x, gz)
        _write_idx(root / f"{stem}-labels-idx1-ubyte", y, gz)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_the_four_idx_files_are_read_gzipped_or_not(tmp_path, gz):
    root = make_idx_set(tmp_path / "fm", gz=gz)
    t = read_idx_set("fashion_mnist", str(root))
    assert t["train_x"].shape == (200, 1, 28, 28) and t["train_x"].dtype == torch.uint8
    assert t["test_x"].shape == (50, 1, 28, 28) and t["test_y"].tolist()[:3] == [0, 1, 2]


def test_val_is_carved_from_train_and_the_official_test_split_is_the_test_split(tmp_path):
    root = make_idx_set(tmp_path / "fm", n_train=300, n_test=70)
    cfg = DataConfig(name="fashion_mnist", root=str(root), val_fraction=0.1, batch_size=32)
    splits = load_train_val(cfg)
    assert splits.in_channels == 1 and splits.image_size == 28 and splits.num_classes == 10
    assert splits.train.num_samples + splits.val.num_samples == 300 and splits.val.num_samples == 30
    assert load_test(cfg).num_samples == 70
    resized = load_train_val(DataConfig(name="mnist", root=str(root), image_size=32))
    assert resized.image_size == 32 and next(iter(resized.val))[0].shape[-1] == 32


def test_a_missing_root_or_file_names_the_expected_files(tmp_path):
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        read_idx_set("fashion_mnist", str(tmp_path / "absent"))
    root = make_idx_set(tmp_path / "fm")
    (root / (FILES["test_y"] + ".gz")).unlink()
    with pytest.raises(UserError, match="lacks t10k-labels-idx1-ubyte"):
        read_idx_set("kmnist", str(root))
    (root / (FILES["test_y"] + ".gz")).write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="not a readable IDX file"):
        read_idx_set("kmnist", str(root))
