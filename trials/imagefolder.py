"""ImageFolder trees (ImageNet layout): ``root/train/<class>/*`` and ``root/val/<class>/*``.

The validation split a search uses is carved from ``train/``; ``val/`` is the
held-out test split (ImageNet's labelled validation set plays that role in the
literature, and prunetune never selects on it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from trials.errors import UserError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _folder(root: str | None, part: str, train: bool, size: int):
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    path = Path(root or "") / part
    if not root or not path.is_dir():
        raise UserError(f"data.root: imagefolder needs '{path}' with one sub-folder of images per class")
    norm = [T.ToTensor(), T.Normalize(MEAN, STD)]
    if train:
        tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *norm])
    else:
        tf = T.Compose([T.Resize(int(size * 8 / 7)), T.CenterCrop(size), *norm])
    try:
        return tvd.ImageFolder(str(path), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"data.root: cannot read images under '{path}' ({exc})") from exc


def _loader(ds, cfg, device: torch.device, shuffle: bool, batch_size: int) -> DataLoader:
    workers = cfg.num_workers
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        drop_last=shuffle,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def imagefolder_train_val(cfg, device: torch.device):
    from trials.data import Splits, stratified_split, train_subset

    size = cfg.image_size or 224
    train_ds = _folder(cfg.root, "train", True, size)
    eval_ds = _folder(cfg.root, "train", False, size)
    import numpy as np

    labels = np.asarray(train_ds.targets)
    keep, held = stratified_split(labels, cfg.val_fraction, cfg.seed)
    keep = train_subset(labels, keep, cfg.train_fraction, cfg.seed)
    train = _loader(Subset(train_ds, keep.tolist()), cfg, device, True, cfg.batch_size)
    val = _loader(Subset(eval_ds, held.tolist()), cfg, device, False, cfg.eval_batch_size)
    return Splits(train, val, len(train_ds.classes), 3, size)


def imagefolder_test(cfg, device: torch.device):
    return _loader(_folder(cfg.root, "val", False, cfg.image_size or 224), cfg, device, False, cfg.eval_batch_size)
