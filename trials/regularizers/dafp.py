"""DAFP: sparsity-inducing training on the BN scales, its weight steered onto a target sparsity."""

from __future__ import annotations

import math

import torch
from torch import nn

from trials.errors import UserError
from trials.regularizers.base import _BN, Regularizer, bn_layers, register


@register
class DafpSparsity(Regularizer):
    """L1 on BN scales with a coefficient steered to a target sparsity.

    Sparsity is the share of BN scales under ``threshold``. Plain L1 on every scale
    shrinks them all together, and in a short training they then cross the threshold
    together: measured here, 1% to 72% sparse within 15 steps, and a dead network. So
    the pull falls on the ``target`` share of scales that are smallest now (re-chosen
    every ``interval`` steps, so a channel the loss defends climbs out of it), and the
    controller steers the ``target``-quantile ``q`` of the scales (the largest pulled
    one) onto the threshold: every ``interval`` steps the coefficient is set so that
    the L1 pull alone, at the optimizer's current learning rate and momentum, would
    bring ``q`` to the threshold by the end of the first ``ramp`` fraction of training
    (within ``hold`` of the budget after it), times a correction that integrates the
    remaining error (``exp(gain * log(q / threshold))`` per update) to absorb the loss's
    push back; the coefficient is 0 while ``q`` is under the threshold.
    """

    name = "dafp"

    def __init__(
        self,
        *,
        target: float = 0.5,
        threshold: float = 0.05,
        interval: int = 5,
        ramp: float = 0.5,
        hold: float = 0.1,
        gain: float = 0.2,
        weight: float = 0.0,
        max_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < target < 1:
            raise UserError(f"dafp: target sparsity must be in (0, 1), got {target}")
        if threshold <= 0 or weight < 0:
            raise UserError("dafp: threshold must be positive and weight non-negative")
        self.weight, self.target, self.threshold = weight, target, threshold
        self.interval, self.gain, self.max_weight = max(1, interval), gain, max_weight
        self.ramp, self.hold = ramp, hold
        self.correction = 1.0
        self.optimizer = None  # set by the training loop: the L1 pull depends on its lr
        self._layers: list[_BN] = []
        self._masks: list[torch.Tensor] = []

    def attach(self, model: nn.Module) -> list[nn.Parameter]:
        self._layers = bn_layers(model)
        if not self._layers:
            raise UserError("regularizer 'dafp' needs a network with BatchNorm layers")
        return []

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self.weight <= 0 or not self._masks:
            return None
        return self.weight * sum((m.weight.abs() * mask).sum() for m, mask in zip(self._layers, self._masks))

    def _scales(self) -> torch.Tensor:
        return torch.cat([m.weight.detach().abs().flatten().float() for m in self._layers])

    def sparsity(self, scales: torch.Tensor | None = None) -> float:
        scales = self._scales() if scales is None else scales
        return float((scales < self.threshold).float().mean())

    def _pull_per_unit(self) -> float:
        """How far one step moves a scale per unit of coefficient (lr / (1 - momentum))."""
        if self.optimizer is None:
            return 0.1
        group = self.optimizer.param_groups[0]
        return group["lr"] / max(1e-3, 1.0 - group.get("momentum", 0.0))

    def after_step(self, model: nn.Module, step: int) -> None:
        if step % self.interval and step != 1:
            return
        scales = self._scales()
        s = self.sparsity(scales)
        k = max(1, math.ceil(self.target * scales.numel()))
        q = float(scales.kthvalue(k).values)  # the largest scale of the pulled share
        self._masks = [(m.weight.detach().abs() <= q).float() for m in self._layers]
        self.history.append({"step": step, "dafp_weight": self.weight, "bn_sparsity": s, "dafp_quantile": q})
        total = self.total_steps or 1000
        left = max(self.hold * total, self.ramp * total - step, self.interval)
        if q > self.threshold:
            self.correction = min(1e3, self.correction * math.exp(self.gain * min(1.0, math.log(q / self.threshold))))
        else:
            self.correction = max(
                1.0, self.correction * math.exp(self.gain * max(-1.0, math.log(max(q, 1e-9) / self.threshold)))
            )
        pull = self._pull_per_unit()
        need = max(0.0, q - self.threshold) / left  # per step, per scale
        self.weight = min(self.max_weight, self.correction * need / max(pull, 1e-12))
