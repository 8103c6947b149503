"""What every regularizer shares: the base class, the registry it is found through
(``make_regularizer``, like Optuna's samplers by name) and the BN-scale helpers."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

REGISTRY: dict[str, type[Regularizer]] = {}  # name -> class, filled by @register in each method's module


def register(cls: type[Regularizer]) -> type[Regularizer]:
    """Class decorator: make ``cls`` available to ``make_regularizer`` under ``cls.name``."""
    REGISTRY[cls.name] = cls
    return cls


_BN = nn.modules.batchnorm._BatchNorm


def bn_layers(model: nn.Module) -> list[_BN]:
    return [m for m in model.modules() if isinstance(m, _BN) and m.affine]


def bn_scales(model: nn.Module) -> torch.Tensor:
    """Every BN scale |gamma| of the model, concatenated."""
    layers = bn_layers(model)
    if not layers:
        return torch.zeros(0)
    return torch.cat([m.weight.detach().abs().float().flatten().cpu() for m in layers])


def bn_sparsity(model: nn.Module, threshold: float) -> float:
    """Share of BN scales with |gamma| below ``threshold``."""
    s = bn_scales(model)
    return float((s < threshold).float().mean()) if s.numel() else 0.0


class Regularizer(ABC):
    """The base every method derives from: registered under ``name`` with ``@register``."""

    name = "none"

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.total_steps: int | None = None  # set by the training loop before attach
        self.optimizer = None  # set by the training loop once the optimizer exists

    def attach(self, model: nn.Module) -> list[nn.Parameter]:
        """Hook into ``model``; returns extra parameters to train (none by default)."""
        return []

    @abstractmethod
    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """The term added to the loss of every step (None: nothing this step)."""

    def after_step(self, model: nn.Module, step: int) -> None:  # noqa: B027 - optional hook, no-op by default
        pass

    def detach(self, model: nn.Module) -> None:  # noqa: B027 - optional hook, no-op by default
        pass
