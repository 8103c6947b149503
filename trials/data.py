"""Datasets by name, split into train / validation / test.

``load_train_val`` is all a search ever calls: it returns the training split and a
seeded, stratified validation split carved from the training data. The test split
comes only from ``load_test``, which prunetune calls for promoted models alone.

Names: ``digits`` (shipped inside the package; the embedded default), ``cifar10``,
``cifar100``, ``svhn`` (torchvision's readers over a local root, no download),
``imagefolder`` (``root/train`` and ``root/val``; ``val`` is the held-out test split)
and ``synthetic`` (generated, for tests).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trials.errors import UserError
from trials.idx import FLIP, IDX_SETS, read_idx_set
from trials.loaders import TensorLoader

DATASETS = ("digits", "fashion_mnist", "mnist", "kmnist", "cifar10", "cifar100", "svhn", "imagefolder", "synthetic")
_ASSETS = Path(__file__).parent / "assets"
_EXPECTED_FILES = {
    "cifar10": "the extracted 'cifar-10-batches-py/' folder (data_batch_1..5, test_batch, batches.meta)",
    "cifar100": "the extracted 'cifar-100-python/' folder (train, test, meta)",
    "svhn": "'train_32x32.mat' and 'test_32x32.mat' from ufldl.stanford.edu/housenumbers",
}


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    root: str | None = None
    image_size: int | None = None  # None: 32 for the small sets, 224 for imagefolder
    val_fraction: float = 0.1
    train_fraction: float = 1.0  # < 1: train on a seeded, stratified share of what the val split leaves
    seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 4  # imagefolder only; the small sets live in memory
    augment: bool = True
    synthetic_classes: int = 10
    synthetic_train: int = 2000


@dataclass
class Splits:
    train: object  # an iterable of (x, y) batches with len()
    val: object
    num_classes: int
    in_channels: int
    image_size: int


@dataclass
class _Arrays:
    """A whole dataset in memory: images (N, C, H, W), labels, per-channel stats."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    pad: int
    flip: bool


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held) with ``fraction`` of every class held out, seeded."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"data.val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(len(idx) * fraction)))
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def train_subset(labels: np.ndarray, keep: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The share ``fraction`` of the training indices ``keep`` (stratified, seeded); all at 1."""
    if fraction == 1.0:
        return keep
    if not 0.0 < fraction < 1.0:
        raise UserError(f"data.train_fraction must be in (0, 1], got {fraction}")
    _, sub = stratified_split(labels[keep], fraction, seed + 1)
    return keep[sub]


def _digits(size: int) -> _Arrays:
    raw = np.load(_ASSETS / "digits.npz")
    x = torch.from_numpy(raw["images"]).float().div(16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.from_numpy(raw["target"]).long()
    # digits has no official test split: a fixed 20% (seed 0, stratified) is held out.
    train_idx, test_idx = stratified_split(y.numpy(), 0.2, seed=0)
    return _Arrays(x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10, max(1, size // 16), False)


def _synthetic(size: int, classes: int, n_train: int) -> _Arrays:
    """Class prototypes (smooth random patterns) plus noise: learnable, not trivial."""
    g = torch.Generator().manual_seed(1234)
    protos = torch.nn.functional.interpolate(
        torch.randn(classes, 3, 4, 4, generator=g), size=(size, size), mode="bilinear"
    )
    n = n_train + n_train // 4
    y = torch.arange(n) % classes
    x = protos[y] + 0.8 * torch.randn(n, 3, size, size, generator=g)
    return _Arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, 2, True)


def _idx_set(name: str, root: str | None, size: int) -> _Arrays:
    """Fashion-MNIST / MNIST / KMNIST: 28x28 grey images (resized when image_size says so)."""
    t = read_idx_set(name, root)
    xs = [t["train_x"], t["test_x"]]
    if size != 28:
        xs = [torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear") for x in xs]
        xs = [x.round().clamp(0, 255).to(torch.uint8) for x in xs]
    return _Arrays(xs[0].contiguous(), t["train_y"], xs[1].contiguous(), t["test_y"], 10, 2, FLIP[name])


def _torchvision_set(name: str, root: str | None) -> _Arrays:
    import torchvision.datasets as tvd

    if not root or not Path(root).is_dir():
        raise UserError(f"data.root: '{name}' needs a local folder holding {_EXPECTED_FILES[name]}; got {root!r}")
    try:
        if name == "svhn":
            tr, te = tvd.SVHN(root, split="train"), tvd.SVHN(root, split="test")
            arrays = [(torch.from_numpy(d.data), torch.from_numpy(d.labels)) for d in (tr, te)]
            classes, flip = 10, False
        else:
            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            tr, te = cls(root, train=True), cls(root, train=False)
            arrays = [(torch.from_numpy(d.data).permute(0, 3, 1, 2), torch.tensor(d.targets)) for d in (tr, te)]
            classes, flip = len(tr.classes), True
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        raise UserError(
            f"data.root: '{name}' not found under {root}: put {_EXPECTED_FILES[name]} there ({exc})"
        ) from exc
    (trx, try_), (tex, tey) = arrays
    return _Arrays(trx.contiguous(), try_.long(), tex.contiguous(), tey.long(), classes, 4, flip)


@functools.lru_cache(maxsize=4)
def _arrays(cfg: DataConfig) -> _Arrays:
    """Cached per process, so trials on a reused Ray actor do not reload the data."""
    size = cfg.image_size or 32
    if cfg.name == "digits":
        return _digits(size)
    if cfg.name == "synthetic":
        return _synthetic(size, cfg.synthetic_classes, cfg.synthetic_train)
    if cfg.name in IDX_SETS:
        return _idx_set(cfg.name, cfg.root, cfg.image_size or 28)
    if cfg.name in ("cifar10", "cifar100", "svhn"):
        if cfg.image_size not in (None, 32):
            raise UserError(f"data.image_size: '{cfg.name}' images are 32x32, got {cfg.image_size}")
        return _torchvision_set(cfg.name, cfg.root)
    raise UserError(f"data.name '{cfg.name}' is unknown: use one of {', '.join(DATASETS)}")


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.float() / (255.0 if x.dtype == torch.uint8 else 1.0)
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)


def _memory_loaders(cfg: DataConfig, device: torch.device) -> Splits:
    a = _arrays(cfg)
    keep, held = stratified_split(a.train_y.numpy(), cfg.val_fraction, cfg.seed)
    mean, std = _stats(a.train_x[keep])  # the statistics of the whole training split, as load_test uses
    keep = train_subset(a.train_y.numpy(), keep, cfg.train_fraction, cfg.seed)
    common = dict(mean=mean, std=std, device=device)
    train = TensorLoader(
        a.train_x[keep],
        a.train_y[keep],
        batch_size=cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        pad=a.pad,
        flip=a.flip,
        drop_last=len(keep) > cfg.batch_size,
        seed=cfg.seed,
        **common,
    )
    val = TensorLoader(a.train_x[held], a.train_y[held], batch_size=cfg.eval_batch_size, **common)
    return Splits(train, val, a.num_classes, a.train_x.shape[1], a.train_x.shape[-1])


def load_train_val(cfg: DataConfig, device: torch.device | str = "cpu") -> Splits:
    """The training split and the validation split carved from it (never the test split)."""
    device = torch.device(device)
    if cfg.name == "imagefolder":
        from trials.imagefolder import imagefolder_train_val

        return imagefolder_train_val(cfg, device)
    return _memory_loaders(cfg, device)


def load_test(cfg: DataConfig, device: torch.device | str = "cpu") -> object:
    """The held-out test split. Only promotion reports on it; nothing selects on it."""
    device = torch.device(device)
    if cfg.name == "imagefolder":
        from trials.imagefolder import imagefolder_test

        return imagefolder_test(cfg, device)
    a = _arrays(cfg)
    keep, _ = stratified_split(a.train_y.numpy(), cfg.val_fraction, cfg.seed)
    mean, std = _stats(a.train_x[keep])
    return TensorLoader(a.test_x, a.test_y, batch_size=cfg.eval_batch_size, mean=mean, std=std, device=device)
