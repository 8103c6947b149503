"""PAAM: pruning by active attention manipulation, learned per-filter gates and the counts they give."""

from __future__ import annotations

import math

import torch
from torch import nn

from trials.errors import UserError
from trials.regularizers.base import _BN, Regularizer, register


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


@register
class PaamGates(Regularizer):
    """Learned filter scores (PAAM) that gate each conv's output, with an additive penalty."""

    name = "paam"

    def __init__(
        self,
        *,
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
