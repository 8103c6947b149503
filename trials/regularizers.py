"""Training-time regularizers that make a network prune well (DAFP, FFR, PAAM).

A regularizer is attached to a model before training, adds ``penalty()`` to the loss
of every step, sees every optimizer step (``after_step``) and is detached at the end.
``history`` is its course (one dict per logged step), for MLflow.

- ``dafp`` (DAFP, sparsity-inducing training): ``weight * sum |gamma|`` over every BN
  layer, with ``weight`` raised or lowered every ``interval`` steps so that the share
  of BN scales under ``threshold`` reaches ``target``.
- ``ffr`` (feature flow regularization): along the blocks of each stage (consecutive
  block outputs of one shape), the mean squared first difference ("gradient") plus
  ``curvature`` times the mean squared second difference ("curvature") of the
  features, times ``weight``.
- ``paam`` (pruning by active attention manipulation): per conv layer, an attention
  module over the layer's filter weights gives each filter an analog score in (0, 1)
  that gates its (normalised) output; ``weight * sum of the scores`` drives them down
  (the weight ramps up over the first ``warmup`` fraction of training, so a network
  trained from scratch learns before its filters compete). The score modules have
  their own Adam optimizer (learning rate ``lr``). On detach the gates are folded into the BN affine parameters (or
  the conv), so the trained network is a plain network again, and the scores are kept.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trials.errors import UserError

REGULARIZERS = ("none", "dafp", "ffr", "paam")
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


class Regularizer:
    name = "none"

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.total_steps: int | None = None  # set by the training loop before attach
        self.optimizer = None  # set by the training loop once the optimizer exists

    def attach(self, model: nn.Module) -> list[nn.Parameter]:
        """Hook into ``model``; returns extra parameters to train (none by default)."""
        return []

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def detach(self, model: nn.Module) -> None:
        pass


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


class FilterAttention(nn.Module):
    """Scores of a layer's ``n`` filters from attention over their flattened weights.

    Each filter's weight vector (scaled by the layer's mean filter norm) is embedded;
    self-attention mixes the embeddings across filters; a linear read-out plus a
    per-filter offset, through a sigmoid, gives the score, divided by the layer's
    highest score. The division matters: a BN after the gated layer undoes any common
    scale of a layer's gates, so unnormalised scores could all sink together at no
    cost to the loss; relative to the best filter, only a filter the network does not
    need can sink. Offsets start equal, so a network starts unchanged.
    """

    def __init__(self, n: int, dim: int, hidden: int = 16, init: float = 3.0) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, hidden, bias=False)
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.read = nn.Linear(hidden, 1)
        self.offset = nn.Parameter(torch.full((n,), float(init)))
        nn.init.zeros_(self.read.weight)
        nn.init.zeros_(self.read.bias)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.flatten(1).float()
        w = w / (w.norm(dim=1).mean() + 1e-8)
        e = self.embed(w)
        att = torch.softmax(self.query(e) @ self.key(e).T / math.sqrt(e.shape[1]), dim=1)
        z = e + att @ e
        s = torch.sigmoid(self.read(z).squeeze(1) + self.offset)
        return s / s.max()


def _conv_norm_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.Module]]:
    """(conv name, conv, the module whose output is gated): the BN right after the conv
    in module order when it normalises the conv's channels, else the conv itself."""
    named = list(model.named_modules())
    pairs = []
    for i, (name, m) in enumerate(named):
        if not isinstance(m, nn.Conv2d) or m.out_channels < 2:
            continue
        if m.groups > 1 and m.groups == m.in_channels:  # depthwise: its channels are its input's
            continue
        nxt = next((n for _, n in named[i + 1 :] if not list(n.children())), None)
        gated = nxt if isinstance(nxt, _BN) and nxt.num_features == m.out_channels else m
        pairs.append((name, m, gated))
    return pairs


class PaamGates(Regularizer):
    """Learned filter scores (PAAM) that gate each conv's output, with an additive penalty."""

    name = "paam"

    def __init__(
        self,
        weight: float = 1e-3,
        hidden: int = 16,
        init: float = 2.0,
        lr: float = 0.05,
        warmup: float = 0.3,
        log_interval: int = 50,
    ) -> None:
        super().__init__()
        if weight <= 0 or lr <= 0:
            raise UserError(f"paam: weight and lr must be positive, got {weight}, {lr}")
        self.weight, self.hidden, self.init, self.log_interval = weight, hidden, init, log_interval
        self.lr, self.warmup, self._step = lr, warmup, 0
        self.score_optimizer: torch.optim.Optimizer | None = None
        self.modules: dict[str, FilterAttention] = {}
        self._pairs: list = []
        self._handles: list = []
        self._scores: dict[str, torch.Tensor] = {}
        self.final_scores: dict[str, torch.Tensor] = {}  # conv name -> scores, after detach

    def attach(self, model: nn.Module) -> list[nn.Parameter]:
        self._pairs = _conv_norm_pairs(model)
        if not self._pairs:
            raise UserError("regularizer 'paam' found no conv layer to score")
        device = next(model.parameters()).device
        params: list[nn.Parameter] = []
        for name, conv, gated in self._pairs:
            att = FilterAttention(conv.out_channels, conv.weight[0].numel(), self.hidden, self.init).to(device)
            self.modules[name] = att
            params += list(att.parameters())

            def gate(_m, _i, out, name=name, conv=conv, att=att):
                s = att(conv.weight)
                self._scores[name] = s
                return out * s.to(out.dtype).view(1, -1, *([1] * (out.ndim - 2)))

            self._handles.append(gated.register_forward_hook(gate))
        self.score_optimizer = torch.optim.Adam(params, lr=self.lr)
        return []

    def scores(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {name: self.modules[name](conv.weight).detach().cpu() for name, conv, _ in self._pairs}

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self._scores:
            return None
        ramp = self._step / (self.warmup * self.total_steps) if self.total_steps and self.warmup > 0 else 1.0
        total = self.weight * min(1.0, ramp) * sum(s.sum() for s in self._scores.values())
        self._scores = {}
        return total

    def after_step(self, model: nn.Module, step: int) -> None:
        self._step = step
        if self.score_optimizer is not None:
            self.score_optimizer.step()
            self.score_optimizer.zero_grad(set_to_none=True)
        if step % self.log_interval == 0:
            s = torch.cat(list(self.scores().values()))
            self.history.append(
                {"step": step, "paam_mean_score": float(s.mean()), "paam_below_half": float((s < 0.5).float().mean())}
            )

    @torch.no_grad()
    def detach(self, model: nn.Module) -> None:
        """Fold each gate into the gated layer's affine parameters and remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.final_scores = self.scores()
        for name, conv, gated in self._pairs:
            s = self.final_scores[name].to(conv.weight.device)
            if isinstance(gated, _BN):
                gated.weight.mul_(s)
                gated.bias.mul_(s)
            else:
                conv.weight.mul_(s.view(-1, 1, 1, 1))
                if conv.bias is not None:
                    conv.bias.mul_(s)


def group_scores(conv_scores: dict[str, torch.Tensor], groups) -> dict[str, torch.Tensor]:
    """Per-channel scores of each channel group: the mean over its scored member convs."""
    out = {}
    for g in groups:
        member = [conv_scores[m] for m in g.members if m in conv_scores and len(conv_scores[m]) == g.channels]
        if member:
            out[g.name] = torch.stack(member).mean(0)
    return out


def threshold_spec(scores: dict[str, torch.Tensor], groups, threshold: float = 0.5, arch: str | None = None):
    """PAAM's counts: per group, the channels whose learned score clears ``threshold``
    (at least one); groups without scores keep every channel."""
    from trials.spec import ChannelSpec

    counts = {
        g.name: max(1, int((scores[g.name] >= threshold).sum())) if g.name in scores else g.channels for g in groups
    }
    return ChannelSpec(counts, arch)


def make_regularizer(kind: str, **options) -> Regularizer | None:
    """``kind`` in REGULARIZERS; options are the constructor's keywords (None ones dropped)."""
    options = {k: v for k, v in options.items() if v is not None}
    if kind in (None, "none"):
        return None
    cls = {"dafp": DafpSparsity, "ffr": FeatureFlow, "paam": PaamGates}.get(kind)
    if cls is None:
        raise UserError(f"regularizer '{kind}' is unknown: use one of {', '.join(REGULARIZERS)}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise UserError(f"regularizer '{kind}': {exc}") from None
