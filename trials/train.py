"""Fine-tuning and evaluation: SGD with momentum, cosine or step schedule, seeded.

On CUDA the forward pass runs under bf16 autocast with channels_last tensors. A
non-finite loss ends training with ``TrialFailed``, never a NaN metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn

from trials.errors import TrialFailed, UserError
from trials.loaders import reseed
from trials.regularizers import Regularizer


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: float | None = 1.0  # a budget in epochs (fractions allowed) ...
    steps: int | None = None  # ... or in optimizer steps (wins when set)
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # or "step": lr x gamma at each milestone (fractions of the budget)
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    seed: int = 0

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.steps is not None:
            if self.steps < 1:
                raise UserError(f"finetune.steps must be positive, got {self.steps}")
            return self.steps
        if self.epochs is None or self.epochs <= 0:
            raise UserError("finetune needs a positive budget: set epochs or steps")
        return max(1, math.ceil(self.epochs * steps_per_epoch))


def duration(seconds: float) -> str:
    """A span as progress lines print it: 0m12s, 3m05s, 1h02m."""
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def lr_factor(cfg: FinetuneConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step`` of ``total`` (linear warmup, then the schedule)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = step / max(1, total)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    raise UserError(f"finetune.schedule must be 'cosine' or 'step', got '{cfg.schedule}'")


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def _inputs(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def make_optimizer(model: nn.Module, cfg: FinetuneConfig, total: int, extra: list | None = None):
    """SGD with momentum (no weight decay on biases and norms, nor on ``extra``, a
    regularizer's own parameters) and the step-wise schedule."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0})
    opt = torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total))
    return opt, sched


def train_pass(
    model: nn.Module,
    batches: Iterable,
    opt,
    sched,
    cfg: FinetuneConfig,
    device: torch.device,
    step: int = 0,
    reg: Regularizer | None = None,
) -> tuple[float, int]:
    """One pass over ``batches``; returns the mean loss and the step count after it.

    ``reg``'s penalty is added to the loss of every step (the returned mean is the task
    loss alone). A non-finite loss raises ``TrialFailed`` (checked every 50 steps and at
    the end, so the GPU is not synchronised at every step).
    """
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    running, seen = torch.zeros((), device=device), 0
    for x, y in batches:
        with _autocast(device):
            loss = loss_fn(model(_inputs(x, device)), y.to(device, non_blocking=True))
            extra = reg.penalty(model) if reg is not None else None
        opt.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        opt.step()
        sched.step()
        running += loss.detach()
        seen += 1
        step += 1
        if reg is not None:
            reg.after_step(model, step)
        if step % 50 == 0 and not torch.isfinite(running):
            raise TrialFailed(f"training loss became non-finite at step {step} (lr {cfg.lr})")
    mean = (running / max(seen, 1)).item()
    if not math.isfinite(mean):
        raise TrialFailed(f"training loss became non-finite by step {step} (lr {cfg.lr})")
    return mean, step


def finetune(
    model: nn.Module,
    loader: Iterable,
    cfg: FinetuneConfig,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
    reg: Regularizer | None = None,
) -> float:
    """Train ``model`` for the budget; ``on_epoch(epoch, train_loss)`` after each epoch.

    A budget that ends mid-epoch calls ``on_epoch`` once more at the end. ``reg`` is
    attached for the run and detached at its end (before the last ``on_epoch``, so the
    final evaluation sees the plain network). Returns the mean training loss of the
    last epoch.
    """
    torch.manual_seed(cfg.seed)
    reseed(loader, cfg.seed)  # the data order follows the fine-tune's seed, not the split's
    prepare_model(model, device)
    total = cfg.total_steps(len(loader))
    if reg is not None:
        reg.total_steps = total
    extra = reg.attach(model) if reg is not None else []
    opt, sched = make_optimizer(model, cfg, total, extra)
    if reg is not None:
        reg.optimizer = opt
    step, epoch, mean_loss = 0, 0, float("nan")
    try:
        while step < total:  # on_epoch may evaluate: train_pass puts the model back in train mode
            mean_loss, step = train_pass(model, islice(loader, total - step), opt, sched, cfg, device, step, reg)
            epoch += 1
            if reg is not None and step >= total:
                reg.detach(model)
                reg = None
            if on_epoch is not None:
                on_epoch(epoch, mean_loss)
    finally:
        if reg is not None:
            reg.detach(model)
    return mean_loss


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over ``loader`` (eval mode)."""
    prepare_model(model, device).eval()
    correct, total = 0, 0
    loss_sum = torch.zeros((), device=device)
    for x, y in loader:
        y = y.to(device, non_blocking=True)
        with _autocast(device):
            logits = model(_inputs(x, device)).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    if total == 0:
        raise UserError("evaluation got an empty data split")
    return {"accuracy": correct / total, "loss": loss_sum.item() / total}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, batches: int, device: torch.device) -> None:
    """Adaptive BN (EagleEye): re-estimate BN statistics from ``batches`` training batches.

    Train-mode forward passes without gradients; running stats are reset first and
    averaged with equal weight (momentum=None) over the batches.
    """
    prepare_model(model, device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x, _ in islice(loader, batches):
        with _autocast(device):
            model(_inputs(x, device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()
