"""The search: Ray Tune runs trials, Optuna proposes them, the driver records them.

The Ray side is deliberately thin: ``orchestrator.trainable.trainable`` turns a sampled
config into a ``trials.TrialConfig`` and forwards ``run_trial``'s reports to ``tune.report``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import optuna
import ray
import torch
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from torch import nn

from orchestrator.config import SearchConfig, dump_config
from orchestrator.progress import TrackingCallback
from orchestrator.space import (
    TARGET,
    distributions,
    grid,
    group_ratios,
    snap_target,
    target_distribution,
    variables,
    warm_start_points,
)
from orchestrator.tracking import SearchRecord, param_value, stored_config
from orchestrator.trainable import trainable as trainable_fn
from trials.adapruner import allocate
from trials.baseline import ModelInfo, load_model, read_scores, save_checkpoint, train_baseline
from trials.budget import MacsModel
from trials.cost import count_cost
from trials.data import load_train_val
from trials.errors import UserError
from trials.groups import build_graph
from trials.regularizers import bn_sparsity, make_regularizer, threshold_spec
from trials.spec import ChannelSpec
from trials.train import FinetuneConfig, evaluate
from trials.trial import resolve_device

log = logging.getLogger("prunetune")


class PrunetuneOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna FAIL for a trial that reported its own failure.

    A trial that fails deterministically (NaN loss, bad spec) reports ``trial_failed``
    and ends normally, so Ray does not retry it; retries are for lost nodes.
    """

    restored: PrunetuneOptunaSearch | None = None  # the searcher Tune last restored from a snapshot

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and (result.get("trial_failed") or not result.get("final")):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)

    def restore(self, checkpoint_path: str) -> None:
        """Tune restores a resumed run's searcher inside ``Tuner.fit``; the search's next
        run goes on with this one (its study holds every trial so far)."""
        super().restore(checkpoint_path)
        PrunetuneOptunaSearch.restored = self


def _sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    s = cfg.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, constant_liar=True, multivariate=True)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    population = s.population_size or max(4, min(50, s.num_trials // 4))
    return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=population)


@dataclass
class Baseline:
    model: nn.Module  # on the CPU
    metrics: dict  # val_accuracy, val_loss, macs, params (+ bn_sparsity when regularized)
    info: ModelInfo
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # PAAM's learned scores
    history: list[dict] = field(default_factory=list)  # the regularizer's course while training


def prepare_baseline(cfg: SearchConfig, device, say=print) -> Baseline:
    """Load or train the baseline (regularized when ``baseline.regularizer`` says so).

    A trained baseline is saved under the storage directory and reused by later runs of
    the same config; a regularized one is trained on from ``baseline.path`` when given.
    """
    device = torch.device(device)
    b = cfg.baseline
    data = cfg.data_config(b.batch_size)
    splits = load_train_val(data, device)
    info = ModelInfo(cfg.model.arch, splits.num_classes, splits.in_channels, splits.image_size)
    saved = cfg.storage_dir() / ("baseline.pt" if b.regularizer == "none" else f"baseline-{b.regularizer}.pt")
    history: list[dict] = []
    if (b.path and b.regularizer == "none") or saved.is_file():
        path = b.path if b.regularizer == "none" and b.path else str(saved)  # the user's checkpoint first
        model, spec = load_model(path, info)
        if spec is not None:
            raise UserError(f"baseline.path '{path}' holds a pruned network; a search starts from an unpruned one")
        scores = read_scores(path)
        say(f"baseline: loaded {path}")
    else:
        init = None
        if b.path:
            init, spec = load_model(b.path, info)
            if spec is not None:
                raise UserError(
                    f"baseline.path '{b.path}' holds a pruned network; a search starts from an unpruned one"
                )
        how = "training" if init is None else f"training on from {b.path}"
        with_reg = "" if b.regularizer == "none" else f" with regularizer {b.regularizer}"
        say(f"baseline: {how} {info.arch} on {data.name} for {b.epochs:g} epochs{with_reg} ...")
        reg = make_regularizer(b.regularizer, **b.regularizer_options())
        ft = FinetuneConfig(epochs=b.epochs, lr=b.lr, seed=cfg.search.seed)
        model, trained = train_baseline(info, data, ft, device, log=None, reg=reg, init=init)
        scores, history = trained.get("scores", {}), trained.get("regularizer_history", [])
        save_checkpoint(saved, model, info, scores=scores)
        say(f"baseline: saved to {saved}")
    acc = evaluate(model, splits.val, device)
    shape = (info.in_channels, info.input_size, info.input_size)
    cost = count_cost(model.cpu(), shape)
    metrics = {"val_accuracy": acc["accuracy"], "val_loss": acc["loss"], "macs": cost.macs, "params": cost.params}
    if b.regularizer == "dafp":
        metrics["bn_sparsity"] = bn_sparsity(model, b.sparsity_threshold)
    needs_scores = cfg.trial.criterion == "paam" or "paam" in cfg.search.warm_start_methods
    if needs_scores and not scores:
        raise UserError("criterion paam / the paam warm start: the baseline carries no learned scores")
    return Baseline(model, metrics, info, scores, history)


def method_points(cfg: SearchConfig, base: Baseline, graph, var_map: dict[str, list[str]]) -> list[dict]:
    """Warm-start points from the methods named in ``search.warm_start_methods``, as
    sampled variables on the search grid."""
    s = cfg.search
    values = grid(s.keep_min, s.keep_max, s.keep_step)
    points = []
    for method in s.warm_start_methods:
        if method == "adapruner":
            target = (s.macs_target or 0.5) * base.metrics["macs"]
            spec, _ = allocate(graph, target, keep_min=s.keep_min, keep_max=s.keep_max, round_to=s.round_to)
            ratios = spec.ratios(graph.groups)
        else:  # paam: the filters whose learned score clears the threshold
            spec = threshold_spec(base.scores, graph.groups, cfg.baseline.paam_threshold)
            ratios = spec.ratios(graph.groups)
        point = {}
        for var, groups in var_map.items():
            r = sum(ratios[g] for g in groups) / len(groups)
            point[var] = min(values, key=lambda v: abs(v - r))
        points.append(point)
    return points


def _settings(cfg: SearchConfig, var_map: dict) -> dict:
    t, s = cfg.trial, cfg.search
    return {
        "arch": cfg.model.arch,
        "data": asdict(cfg.data_config()),
        "variables": var_map,
        "round_to": s.round_to,
        "macs_target": s.macs_target if s.mode == "budget" else None,
        "keep_min": s.keep_min,
        "keep_max": s.keep_max,
        "trial": t.trial_kwargs(s.seed),
        "device": t.device,
    }


def search_space(cfg: SearchConfig, names: list[str]) -> dict:
    s = cfg.search
    space = distributions(names, s.keep_min, s.keep_max, s.keep_step)
    if s.front_targets:  # front mode only (the config says so)
        space[TARGET] = target_distribution(s.keep_min)
    return space


def with_targets(cfg: SearchConfig, graph, var_map: dict[str, list[str]], points: list[dict]) -> list[dict]:
    """front_targets: each warm-start point gets, as its target, the MACs its own counts keep."""
    s = cfg.search
    if not s.front_targets:
        return points
    macs = MacsModel(graph)
    full = macs({g.name: g.channels for g in graph.groups})
    out = []
    for p in points:
        spec = ChannelSpec.from_ratios(graph.groups, group_ratios(p, var_map), s.round_to, cfg.model.arch)
        out.append({**p, TARGET: snap_target(macs(spec.channels) / full, s.keep_min)})
    return out


def run_sizes(num_trials: int, per_run: int) -> list[int]:
    """The trials of each Tune run of a search."""
    return [min(per_run, num_trials - i) for i in range(0, num_trials, per_run)]


def run_name(i: int) -> str:
    return "tune" if i == 0 else f"tune-{i}"


def _warm_levels(s) -> list[float]:
    """The uniform warm-start levels worth a trial: in budget mode every uniform point is
    scaled onto the same MACs target, so one of them stands for all."""
    return s.warm_start[:1] if s.mode == "budget" else list(s.warm_start)


def _dedup(points: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in points:
        key = tuple(sorted(p.items()))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def connect(address: str | None) -> None:
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(include_dashboard=False, **quiet)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


# What may differ between a search and its --resume: where it runs and records, and the
# trials' resources. Anything else would change what the stored trials mean.
RESUMABLE = (
    "cluster.",
    "tracking.",
    "trial.cpu",
    "trial.gpu",
    "trial.device",
    "trial.max_failures",
    "data.root",
    "data.num_workers",
)


def resume_changes(stored: dict[str, str], flat: dict) -> list[str]:
    """The settings of ``flat`` that differ from a stored search's params (as MLflow holds
    them: strings), other than those a resume may change."""
    return [
        f"{k} {stored[k]} -> {v}"
        for k, v in flat.items()
        if k in stored and not k.startswith(RESUMABLE) and stored[k] != param_value(v)
    ]


def check_resume(cfg: SearchConfig) -> None:
    """Refuse to resume a search under a config it did not start with (exit 2), before
    any baseline is trained or cluster joined."""
    stored = stored_config(cfg.tracking.uri, cfg.name, cfg.storage_uri())
    changes = resume_changes(stored or {}, _flat(cfg.model_dump(mode="json")))
    if changes:
        raise UserError(
            f"--resume: the config differs from the one the search stored at {cfg.storage_uri()} started with: "
            + "; ".join(changes)
            + ". A resumed search runs its own config (only cluster, tracking, the trials' resources and "
            "data.root may change); to change it, start a new search (another name or storage)"
        )


def run_search(cfg: SearchConfig, *, resume: bool = False, say=print) -> list[dict]:
    """Run (or resume) a search; returns the ranked rows of its finished trials."""
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # failure reports carry no metrics
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Fail an MLflow write in seconds during an outage (the callback buffers and replays it)
    # rather than blocking Tune's event loop through minutes of client-side retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # snapshot often: a killed driver loses little
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if resume:
        check_resume(cfg)
    storage = cfg.storage_dir()
    storage.mkdir(parents=True, exist_ok=True)
    tune_storage = cfg.storage_uri()
    device = resolve_device(cfg.trial.device) if cfg.trial.gpu > 0 else "cpu"
    base = prepare_baseline(cfg, device, say)
    model, base_metrics, info = base.model, base.metrics, base.info
    say(f"baseline: val_accuracy {base_metrics['val_accuracy']:.4f}, MACs {base_metrics['macs'] / 1e6:.2f} M")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    graph = build_graph(model, (info.in_channels, info.input_size, info.input_size), info.arch)
    var_map = variables(graph.groups, cfg.search.granularity)
    names = list(var_map)
    s = cfg.search

    record = SearchRecord.open(cfg.tracking.uri, cfg.name, tune_storage, resume)
    record.log_config(dump_config(cfg), _flat(cfg.model_dump(mode="json")))
    record.log_baseline(base_metrics, base.history)
    record.log_baseline_checkpoint(model, info, base.scores)
    callback = TrackingCallback(
        cfg.tracking.uri,
        cfg.name,
        record.parent_run_id,
        s.num_trials,
        base_metrics,
        spill=storage / "mlflow-pending.json",
    )

    connect(cfg.cluster.address)
    settings = _settings(cfg, var_map)
    if resume:  # trials MLflow holds as finished are replayed from the record, never trained again
        settings["recorded"] = {
            tid: {k: row[k] for k in ("val_accuracy", "macs", "macs_ratio", "params")}
            for tid, row in record.finished.items()
        }
    trainable = tune.with_resources(
        tune.with_parameters(
            trainable_fn,
            baseline_state=state,
            settings=settings,
            scores={k: v.tolist() for k, v in base.scores.items()} or None,
        ),
        {"cpu": cfg.trial.cpu, "gpu": cfg.trial.gpu},
    )
    metric, mode = (["val_accuracy", "macs"], ["max", "min"]) if s.mode == "front" else ("val_accuracy", "max")

    def new_searcher() -> PrunetuneOptunaSearch:
        return PrunetuneOptunaSearch(
            space=search_space(cfg, names),
            metric=metric,
            mode=mode,
            sampler=_sampler(cfg),
            points_to_evaluate=_dedup(
                with_targets(
                    cfg,
                    graph,
                    var_map,
                    method_points(cfg, base, graph, var_map)
                    + warm_start_points(names, _warm_levels(s), s.keep_min, s.keep_max, s.keep_step),
                )
            ),
        )

    # Tune keeps every trial of a run in the driver, so a long search is split into runs
    # of at most trials_per_run trials over one searcher (one Optuna study): "tune",
    # "tune-1", ... A run starts only when the one before it has finished, so a resumed
    # search restores the last run Tune holds a snapshot of (its searcher's study holds
    # every trial so far) and goes on from there.
    sizes = run_sizes(s.num_trials, s.trials_per_run)
    restorable = [i for i in range(len(sizes)) if resume and tune.Tuner.can_restore(f"{tune_storage}/{run_name(i)}")]
    first, searcher = max(restorable, default=0), None
    t0, started_at = time.perf_counter(), time.time()
    for i in range(first, len(sizes)):
        experiment = f"{tune_storage}/{run_name(i)}"
        restoring = i == first and bool(restorable)
        if restoring:
            say(f"resuming the search stored at {experiment}")
            PrunetuneOptunaSearch.restored = None
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            if resume and i == first:  # no run has a snapshot (first is 0)
                say(f"nothing to resume at {experiment}: starting a new search")
            searcher = searcher or new_searcher()
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=searcher, num_samples=sizes[i], max_concurrent_trials=s.max_concurrent, reuse_actors=True
                ),
                run_config=tune.RunConfig(
                    name=run_name(i),
                    storage_path=tune_storage,
                    verbose=0,
                    callbacks=[callback],
                    failure_config=tune.FailureConfig(max_failures=cfg.trial.max_failures),
                ),
            )
        try:
            tuner.fit()
        except KeyboardInterrupt:
            callback.drain(30.0, callback.spill)  # what the writer thread still holds
            record.finish("KILLED")
            raise
        finally:
            callback.thaw()
        if restoring:
            searcher = PrunetuneOptunaSearch.restored
            if searcher is None and i + 1 < len(sizes):
                say(f"no searcher state in {experiment}: the next run starts a new study")
    return _finish(cfg, record, say, tune_seconds=time.perf_counter() - t0, tune_started_at=started_at)


def _finish(
    cfg: SearchConfig,
    record: SearchRecord,
    say,
    timeout: float = 300.0,
    tune_seconds: float | None = None,
    tune_started_at: float | None = None,
) -> list[dict]:
    """Write the final front and close the parent run, retrying while MLflow is unreachable."""
    deadline = time.time() + timeout
    while True:
        try:
            final = SearchRecord(cfg.tracking.uri, cfg.name, record.parent_run_id)
            final.baseline = record.baseline
            if tune_seconds is not None:  # wall time of Tune's run (this driver's share of a resumed one)
                final.client.log_metric(record.parent_run_id, "tune_seconds", tune_seconds)
                final.client.log_metric(record.parent_run_id, "tune_started_at", tune_started_at or 0.0)
            final.finish()
            return final.rows()
        except Exception as exc:  # noqa: BLE001 - tracking outage: retry, then say where things are
            if time.time() > deadline:
                raise UserError(
                    f"MLflow at {cfg.tracking.uri} unreachable at the end of the search ({exc}); "
                    f"Tune's results are under {cfg.storage_uri()}"
                ) from None
            time.sleep(2.0)
