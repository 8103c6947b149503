"""Batch iterators that keep small datasets as tensors on the training device.

For CIFAR-sized data a DataLoader with workers is the bottleneck on a GPU; holding the
whole split on the device and augmenting with batched tensor ops is not.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor


class TensorLoader:
    """Shuffled (x, y) batches from in-memory tensors, normalised and augmented on device.

    ``x`` is uint8 or float (N, C, H, W); batches come out as float32, normalised with
    ``mean``/``std``. ``pad`` > 0 applies random translation (crop of a padded image),
    ``flip`` random horizontal flips; both only when ``augment`` is on.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        mean: Tensor,
        std: Tensor,
        shuffle: bool = False,
        augment: bool = False,
        pad: int = 0,
        flip: bool = False,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.long().to(self.device)
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        self.mean = (mean * scale).view(1, -1, 1, 1).to(self.device)
        self.std = (std * scale).view(1, -1, 1, 1).to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.pad, self.flip = augment, pad, flip
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def shard(self, rank: int, world: int) -> TensorLoader:
        """This worker's disjoint 1/world slice, for data-parallel training. Every shard has
        the same size (the remainder is dropped): unequal batch counts deadlock DDP."""
        out = copy.copy(self)
        per = len(self.y) // world
        idx = torch.arange(rank, per * world, world, device=self.y.device)
        out.x, out.y = self.x[idx], self.y[idx]
        out.generator = torch.Generator(device="cpu").manual_seed(self.seed + rank)
        return out

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def _translate(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        p = self.pad
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1), generator=self.generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (n, 1), generator=self.generator).to(x.device)
        rows = (torch.arange(h, device=x.device).view(1, h) + dy).view(n, 1, h, 1)
        cols = (torch.arange(w, device=x.device).view(1, w) + dx).view(n, 1, 1, w)
        idx_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        idx_c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        return xp[idx_n, idx_c, rows, cols]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = (self.x[idx].float() - self.mean) / self.std
            if self.augment:
                if self.pad:
                    x = self._translate(x)
                if self.flip:
                    mask = (torch.rand(len(idx), generator=self.generator) < 0.5).to(x.device)
                    x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
            yield x, self.y[idx]


def reseed(loader: object, seed: int) -> None:
    """Set the shuffling (and augmentation) order of a training loader: a fine-tune's
    data order follows its own seed, apart from ``data.seed``, which fixes the splits."""
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(seed)
