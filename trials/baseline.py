"""Baselines: train one for a model and dataset, or load one from a checkpoint file.

Checkpoints are plain dicts of tensors and primitives (no pickled modules) and are
always read with ``torch.load(..., weights_only=True)``:
``{"format": "prunetune/1", "arch", "num_classes", "in_channels", "input_size",
"spec" (or None), "metrics", "state_dict", "scores" (optional: PAAM's learned filter
scores, group -> tensor)}``. A bare state_dict also loads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trials.data import DataConfig, load_train_val
from trials.errors import UserError
from trials.prune import rebuild
from trials.regularizers import Regularizer
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, duration, evaluate, finetune, recalibrate_bn

FORMAT = "prunetune/1"
RECALIBRATE_BATCHES = 50  # BN statistics after a regularized training: equal-weight means over these


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    num_classes: int
    in_channels: int
    input_size: int


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    info: ModelInfo,
    spec: ChannelSpec | None = None,
    metrics: dict | None = None,
    scores: dict | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": FORMAT,
            "arch": info.arch,
            "num_classes": info.num_classes,
            "in_channels": info.in_channels,
            "input_size": info.input_size,
            "spec": spec.to_dict() if spec else None,
            "metrics": dict(metrics or {}),
            "state_dict": state,
            "scores": {k: torch.as_tensor(v).detach().cpu().float() for k, v in (scores or {}).items()},
        },
        path,
    )
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict (a bare state_dict is wrapped); safe loading only."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"baseline.path: no checkpoint file at '{path}'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, zip errors, truncated files
        raise UserError(f"baseline.path: '{path}' is not a loadable weights-only checkpoint ({exc})") from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        return data
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return {"state_dict": data}
    raise UserError(f"baseline.path: '{path}' holds no state_dict")


def load_weights(model: nn.Module, state: dict, source: str) -> nn.Module:
    """Load ``state`` into ``model``; a mismatch names the first offending key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "lacks" if missing else "has an unknown"
        raise UserError(f"{source} does not fit this architecture: it {what} key '{key}'")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserError(
                f"{source} does not fit this architecture: '{k}' is {tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )
    model.load_state_dict(state)
    return model


def load_model(path: str | Path, info: ModelInfo) -> tuple[nn.Module, ChannelSpec | None]:
    """Rebuild the (possibly pruned) network a checkpoint holds and load its weights."""
    data = read_checkpoint(path)
    if data.get("arch") not in (None, info.arch):
        raise UserError(f"baseline.path: '{path}' is a checkpoint of '{data['arch']}', not of '{info.arch}'")
    spec = ChannelSpec.from_dict(data["spec"]) if data.get("spec") else None
    model = rebuild(info.arch, spec, info.num_classes, info.in_channels, info.input_size)
    return load_weights(model, data["state_dict"], f"baseline.path '{path}'"), spec


def read_scores(path: str | Path) -> dict[str, torch.Tensor]:
    """The learned filter scores a checkpoint carries (empty when it has none)."""
    scores = read_checkpoint(path).get("scores") or {}
    if not isinstance(scores, dict) or not all(isinstance(v, torch.Tensor) for v in scores.values()):
        raise UserError(f"baseline.path: '{path}' has a malformed 'scores' entry")
    return scores


def train_baseline(
    info: ModelInfo,
    data: DataConfig,
    cfg: FinetuneConfig,
    device: torch.device | str = "cpu",
    *,
    log=print,
    reg: Regularizer | None = None,
    init: nn.Module | None = None,
) -> tuple[nn.Module, dict]:
    """Train ``info.arch`` on ``data`` (from scratch, or on from ``init``) with an optional
    regularizer; returns the model and its val metrics. With a ``PaamGates`` regularizer
    the metrics carry ``scores`` (group -> learned per-channel scores)."""
    from trials.groups import build_graph
    from trials.models import create_model
    from trials.regularizers import PaamGates, bn_sparsity, group_scores

    device = torch.device(device)
    splits = load_train_val(data, device)
    torch.manual_seed(cfg.seed)  # the initial weights too
    model = init or create_model(info.arch, num_classes=splits.num_classes, in_channels=splits.in_channels)

    epochs, t0 = math.ceil(cfg.total_steps(len(splits.train)) / len(splits.train)), time.time()

    def on_epoch(epoch: int, loss: float) -> None:
        if log:
            took = time.time() - t0
            left = took / epoch * max(0, epochs - epoch)
            log(
                f"baseline epoch {epoch}/{epochs}: train loss {loss:.4f} | {duration(took)} elapsed, about {duration(left)} left"
            )

    finetune(model, splits.train, cfg, device, on_epoch, reg=reg)
    if reg is not None:
        # A regularizer moves BN scales fast (DAFP drives a share of them to zero within a
        # few dozen steps): the running statistics lag them, and a regularized ResNet-20
        # trained on from a 0.93 checkpoint scored 0.15 on val until they were re-estimated
        # (0.92 after). So they are, on up to RECALIBRATE_BATCHES train batches.
        recalibrate_bn(model, splits.train, min(len(splits.train), RECALIBRATE_BATCHES), device)
    m = evaluate(model, splits.val, device)
    metrics = {"val_accuracy": m["accuracy"], "val_loss": m["loss"]}
    if reg is not None:
        metrics["bn_sparsity"] = bn_sparsity(model, getattr(reg, "threshold", 0.05))
        metrics["regularizer_history"] = reg.history
    if isinstance(reg, PaamGates):
        side = splits.image_size
        graph = build_graph(model.cpu(), (splits.in_channels, side, side), info.arch)
        metrics["scores"] = group_scores(reg.final_scores, graph.groups)
    return model.cpu(), metrics
