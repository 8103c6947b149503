"""Promotion's fine-tuning: Ray Train DDP workers with a checkpoint each epoch (a lost
worker resumes from the last one), each epoch's metrics logged live to the promote run
by rank 0 and printed by the driver as they arrive."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from mlflow.entities import Metric

from orchestrator import faults
from orchestrator.config import SearchConfig
from trials.baseline import ModelInfo
from trials.data import DataConfig, load_train_val
from trials.errors import UserError
from trials.prune import rebuild
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate, recalibrate_bn

if TYPE_CHECKING:
    from orchestrator.promote import PromoteOptions

WARMUP_STEPS = 20  # promotion's learning-rate warm-up (linear), in optimizer steps


def _live(live: dict | None, metrics: dict, epochs: int) -> None:
    """Rank 0, after each epoch: the epoch's metrics logged to the promote run as they come
    (the driver prints them from there, ``follow``). MLflow out of reach costs the live
    curve, never the promotion."""
    if not live:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(live["uri"])
        if metrics["epoch"] in {m.step for m in client.get_metric_history(live["run_id"], "val_accuracy")}:
            return  # an epoch trained again after a restart: its first record stands
        now = int(time.time() * 1000)
        client.log_batch(
            live["run_id"],
            metrics=[
                Metric(k, float(metrics[k]), now, metrics["epoch"]) for k in ("train_loss", "val_accuracy", "val_loss")
            ],
        )
    except Exception as exc:  # noqa: BLE001 - the final record writes the history again
        print(f"promote epoch {metrics['epoch']}: not logged live ({type(exc).__name__})", flush=True)


def follow(client, run_id: str, epochs: int, say, stop, every: float = 2.0) -> None:
    """The driver's side of the live curve: each epoch the workers log, printed once."""
    shown: set[int] = set()
    while True:
        last = stop.wait(every)
        try:
            rows = {
                k: {m.step: m.value for m in client.get_metric_history(run_id, k)}
                for k in ("train_loss", "val_accuracy")
            }
        except Exception:  # noqa: BLE001 - the tracking store is away: the final record holds the curve
            rows = {"train_loss": {}, "val_accuracy": {}}
        for epoch in sorted(set(rows["val_accuracy"]) & set(rows["train_loss"]) - shown):
            if epoch >= 1:
                shown.add(epoch)
                say(
                    f"promote epoch {epoch}/{epochs}: train_loss {rows['train_loss'][epoch]:.4f}, "
                    f"val_accuracy {rows['val_accuracy'][epoch]:.4f}"
                )
        if last:
            return


def _train_loop(config: dict) -> None:
    """Runs on every Ray Train worker: DDP fine-tuning with a checkpoint each epoch."""
    import ray.train
    import ray.train.torch

    from trials.train import make_optimizer, prepare_model, train_pass

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    info = ModelInfo(**config["info"])
    model = rebuild(
        info.arch, ChannelSpec.from_dict(config["spec"]), info.num_classes, info.in_channels, info.input_size
    )
    model.load_state_dict(config["state"])
    ft = FinetuneConfig(**config["finetune"])
    splits = load_train_val(DataConfig(**config["data"]), device)
    train = splits.train.shard(rank, world) if hasattr(splits.train, "shard") else splits.train
    if not hasattr(train, "shard"):
        train = ray.train.torch.prepare_data_loader(train, move_to_device=False)
    total = ft.total_steps(len(train))
    prepare_model(model, device)
    ddp = ray.train.torch.prepare_model(model, move_to_device=False)
    opt, sched = make_optimizer(ddp, ft, total)
    start, step, history, resumes = 0, 0, [], []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # a restarted run (a worker died) continues from the last epoch
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / "state.pt", map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        start, step, history = saved["epoch"], saved["step"], saved["history"]
        resumes = saved["resumes"] + [start]
    epochs = -(-total // len(train))
    for epoch in range(start + 1, epochs + 1):
        loss, step = train_pass(ddp, islice(train, total - step), opt, sched, ft, device, step)
        # precise BN: the running statistics lag the weights while the learning rate is
        # high (measured: val 0.30 after 10 steps of a cut ResNet-20, 0.87 once they are
        # re-estimated), so each epoch's score is taken after re-estimating them
        recalibrate_bn(model, train, config["bn_batches"], device)
        val = evaluate(model, splits.val, device)
        history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": val["accuracy"], "val_loss": val["loss"]})
        metrics = history[-1]
        if rank == 0:
            _live(config.get("live"), metrics, epochs)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
            _report_with_checkpoint(metrics, state, epoch=epoch, step=step, history=history, resumes=resumes)
            faults.maybe_exit_promotion(epoch)  # fault tests only
        else:
            ray.train.report(metrics)


def _report_with_checkpoint(metrics: dict, state: dict, **progress) -> None:
    """Rank 0: the epoch's metrics reported to Ray Train with a checkpoint that a restarted
    run continues from (weights, optimizer and schedule, and where training stood)."""
    import ray.train

    state = {**state, "model": {k: v.cpu() for k, v in state["model"].items()}, **progress}
    with tempfile.TemporaryDirectory() as d:
        torch.save(state, Path(d) / "state.pt")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def fine_tune(
    cfg: SearchConfig, info: ModelInfo, spec: ChannelSpec, state: dict, opts: PromoteOptions, name: str, live=None
) -> tuple[dict, list[dict], list[int]]:
    """The pruned network fine-tuned on the whole training split; returns its state, the
    per-epoch history and the epochs a lost worker resumed from."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = opts.use_gpu
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= opts.workers
    ft = cfg.trial.finetune(cfg.search.seed)
    ft = FinetuneConfig(
        **{**asdict(ft), "epochs": float(opts.epochs), "steps": None, "schedule": "cosine", "lr": opts.lr or ft.lr}
    )
    # the full learning rate at once knocks a freshly cut network off what it kept: warm up
    # linearly over the first WARMUP_STEPS optimizer steps
    ft = replace(ft, warmup_steps=WARMUP_STEPS)
    # Full fine-tuning trains on the whole training split, even after a search on a share of it.
    data = replace(cfg.data_config(opts.batch_size or cfg.trial.batch_size), train_fraction=1.0)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "info": asdict(info),
            "spec": spec.to_dict(),
            "state": state,
            "finetune": asdict(ft),
            "data": asdict(data),
            "live": live,
            "bn_batches": cfg.trial.adaptive_bn_batches or 10,
        },
        scaling_config=ScalingConfig(
            num_workers=opts.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": 1, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=f"{cfg.storage_uri()}/promote",
            failure_config=FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise UserError(f"promotion '{name}' produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
    return saved["model"], saved["history"], saved["resumes"]
