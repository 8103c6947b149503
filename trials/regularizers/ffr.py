"""FFR: feature flow regularization, smooth features along each stage's blocks."""

from __future__ import annotations

import torch
from torch import nn

from trials.errors import UserError
from trials.regularizers.base import Regularizer, register


def feature_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks whose outputs form the feature flow: non-leaf modules directly inside
    an ``nn.Sequential`` (residual blocks, inverted residuals); for plain chains (VGG)
    the activation layers."""
    blocks = []
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            blocks += [c for c in m.children() if list(c.children()) and not isinstance(c, nn.Sequential)]
    if len(blocks) < 2:
        blocks = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish))]
    if len(blocks) < 2:
        raise UserError("regularizer 'ffr' found no chain of blocks in this network")
    return blocks


@register
class FeatureFlow(Regularizer):
    """Penalty on the gradient and curvature of the features along each stage.

    Both terms are measured relative to the stage's mean squared feature (not
    differentiated), so ``weight`` does not depend on the scale of the features.
    """

    name = "ffr"

    def __init__(self, weight: float = 1e-2, curvature: float = 1.0, log_interval: int = 50) -> None:
        super().__init__()
        if weight <= 0 or curvature < 0:
            raise UserError("ffr: weight must be positive and curvature non-negative")
        self.weight, self.curvature, self.log_interval = weight, curvature, log_interval
        self._features: list[torch.Tensor] = []
        self._handles: list = []
        self._last = (0.0, 0.0)

    def attach(self, model: nn.Module) -> list[nn.Parameter]:
        def grab(_m, _i, out):
            if isinstance(out, torch.Tensor) and _m.training:
                self._features.append(out)

        self._handles = [b.register_forward_hook(grab) for b in feature_blocks(model)]
        return []

    @staticmethod
    def runs(feats: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Consecutive block outputs of one shape (a stage), at least two of them."""
        runs: list[list[torch.Tensor]] = []
        for f in feats:
            if runs and runs[-1][-1].shape == f.shape:
                runs[-1].append(f)
            else:
                runs.append([f])
        return [r for r in runs if len(r) >= 2]

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        feats, self._features = self._features, []
        return self.penalty_of(feats)

    def penalty_of(self, feats: list[torch.Tensor]) -> torch.Tensor | None:
        """The penalty of one forward pass's block outputs, in network order."""
        grad_terms, curv_terms = [], []
        for run in self.runs(feats):
            x = torch.stack([f.float() for f in run])  # (blocks, N, C, H, W)
            scale = x.detach().pow(2).mean() + 1e-8  # relative to the stage's feature energy
            d1 = x[1:] - x[:-1]
            grad_terms.append(d1.pow(2).mean() / scale)
            if len(run) >= 3:
                curv_terms.append((d1[1:] - d1[:-1]).pow(2).mean() / scale)
        if not grad_terms:
            return None
        g = torch.stack(grad_terms).sum()
        c = torch.stack(curv_terms).sum() if curv_terms else torch.zeros((), device=g.device)
        self._last = (g.detach(), c.detach())
        return self.weight * (g + self.curvature * c)

    def after_step(self, model: nn.Module, step: int) -> None:
        if step % self.log_interval == 0 and isinstance(self._last[0], torch.Tensor):
            g, c = self._last
            self.history.append({"step": step, "ffr_gradient": float(g), "ffr_curvature": float(c)})

    def detach(self, model: nn.Module) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._features = [], []
