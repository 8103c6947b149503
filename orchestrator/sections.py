"""The config's sections, one pydantic model each (``orchestrator.config`` puts them
together into ``SearchConfig`` and loads it). Every field's default and check lives here;
the trial-side dataclasses (``DataConfig``, ``FinetuneConfig``) are built from them by
``carry``, so a setting is defined once."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trials.criteria import CRITERIA
from trials.data import DATASETS
from trials.latency import CLOCKS, OBJECTIVES, RUNTIMES, LatencySettings
from trials.regularizers import REGULARIZERS
from trials.train import FinetuneConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSection(_Strict):
    arch: str = "resnet20"


class DataSection(_Strict):
    name: Literal[DATASETS] = "digits"  # type: ignore[valid-type]
    root: str | None = None
    image_size: int | None = Field(None, ge=8, le=4096)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    # < 1: search on a share of the training split (a proxy setting; the val split is unchanged)
    train_fraction: float = Field(1.0, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    num_workers: int = Field(4, ge=0, le=256)


class BaselineSection(_Strict):
    path: str | None = None  # a checkpoint; trained (and saved under storage) when absent
    epochs: float = Field(15, gt=0, le=10_000)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(128, ge=1, le=65_536)
    # Train the baseline so that it prunes well (with a path: train on from that checkpoint):
    # dafp (L1 on BN scales steered to target_sparsity), ffr (feature flow), paam (learned scores).
    regularizer: Literal[REGULARIZERS] = "none"  # type: ignore[valid-type]
    regularizer_weight: float | None = Field(None, gt=0)  # ffr and paam: penalty weight
    target_sparsity: float = Field(0.5, gt=0, lt=1)  # dafp: share of BN scales under the threshold
    sparsity_threshold: float = Field(0.05, gt=0)  # dafp: what counts as a near-zero BN scale
    ffr_curvature: float = Field(1.0, ge=0)  # ffr: weight of the curvature term against the gradient term
    paam_threshold: float = Field(0.5, gt=0, lt=1)  # paam: a filter scoring under it is cut (warm start)

    def regularizer_options(self) -> dict:
        if self.regularizer == "dafp":
            return {"target": self.target_sparsity, "threshold": self.sparsity_threshold}
        if self.regularizer == "ffr":
            return {"weight": self.regularizer_weight, "curvature": self.ffr_curvature}
        if self.regularizer == "paam":
            return {"weight": self.regularizer_weight}
        return {}


class ReevaluateSection(_Strict):
    """search.reevaluate: the top configurations fine-tuned again over more data orders."""

    top: int = Field(3, ge=1, le=10_000)  # configurations: the front's first, then the most accurate
    seeds: int = Field(3, ge=2, le=1000)  # more fine-tunes of each, each over a data order of its own
    # each configuration that is not the uniform cut also against the uniform cut at its
    # cost, seed for seed (objective macs or params): the front shows the paired difference
    uniform: bool = True


SWEEP_DEFAULT = 3  # search.sweep, unset in front mode on MACs: the cheapest, the middle, 0.9


class SearchSection(_Strict):
    mode: Literal["front", "budget"] = "front"
    # what the front trades against accuracy and what budget mode targets; MACs and params
    # are counted for every trial, latency (the `latency` section) measured with `latency`
    objective: Literal[OBJECTIVES] = "macs"  # type: ignore[valid-type]
    target: float | None = Field(None, gt=0, lt=1)  # budget mode: fraction of the baseline's objective kept
    macs_target: float | None = Field(None, gt=0, lt=1)  # the same as objective macs + target
    granularity: Literal["layer", "stage"] = "layer"
    keep_min: float = Field(0.25, gt=0, le=1)
    keep_max: float = Field(1.0, gt=0, le=1)
    keep_step: float = Field(0.05, gt=0, le=1)
    # channel multiple every kept count is rounded to; auto: the multiple with real latency
    # steps on the `latency` section's runtime and device, measured once per search. Default
    # (unset): auto with objective latency (any count sits between the kernels' steps, where a
    # network pruned more can run slower: docs/benchmarks.md), 1 otherwise
    round_to: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = 1
    # Default (unset): tpe where front_targets is on (it measured 3 points of hypervolume
    # above nsga2 there, docs/benchmarks.md), nsga2 otherwise
    sampler: Literal["nsga2", "tpe", "random"] | None = None
    population_size: int | None = Field(None, ge=2, le=100_000)  # NSGA-II; default from num_trials
    num_trials: int = Field(16, ge=1, le=1_000_000)
    max_concurrent: int = Field(2, ge=1, le=100_000)
    # uniform keep ratios evaluated first. Default (unset): [0.5, 0.75, 1.0], or none where
    # a sweep (below) starts the search instead
    warm_start: list[float] | None = None
    # front mode: the first trials sweep the whole MACs range, N targets spread evenly from
    # the lowest reachable (keep_min everywhere) to 0.9, each with every warm-start method's
    # allocation (the uniform cut where none is named); the sampler goes on from them, so
    # the front has no gap at the cheap end that a few draws happened to miss
    # (bench/front_fmnist.py, docs/benchmarks.md). Default (unset): 3 where front_targets is
    # on and warm_start is unset, 0 (none) otherwise
    sweep: int | None = Field(None, ge=0, le=10_000)
    # front mode on MACs: this share of the sampled trials fills the front where it is
    # thinnest (the widest gap between neighbouring points, at the middle, with the cheaper
    # neighbour's shape: orchestrator/gaps.py); the sampler proposes the rest, and every
    # trial once no gap is left to halve. Default (unset): 1.0 where front_targets is on (it
    # measured best: docs/benchmarks.md), 0 otherwise
    fill: float | None = Field(None, ge=0, le=1)
    # ... and allocations by method: adapruner (counts from BN importance, at macs_target or
    # 0.5) and paam (counts from thresholding the learned scores of a paam baseline)
    # and sensitivity (one global accepted-accuracy-loss threshold over the per-group
    # sensitivity map, bisected onto macs_target, or onto 0.25, 0.5, 0.75 in front mode)
    # Default (unset): [sensitivity] in budget mode on MACs, none otherwise. Measured
    # (docs/benchmarks.md): uniform and the sensitivity allocation both evaluated, the better
    # on val kept, was +4.3 points of test accuracy over uniform on ResNet-56 at a 90% cut
    # and never below uniform on ResNet-20, where uniform is near-optimal.
    warm_start_methods: list[Literal["adapruner", "paam", "sensitivity"]] | None = None
    # front mode on MACs: where this baseline's sensitivity map is cached (an earlier search
    # of the same weights and setting computed it, under any name: storage/sensitivity/), the
    # sweep starts from its allocation instead of the uniform cut, at no cost; where none is
    # cached the sweep is uniform and no map is computed (on a tight budget the map costs
    # more trials than it wins back). Default (unset): on in front mode on MACs wherever a
    # sweep runs and warm_start_methods is unset. Measured: docs/benchmarks.md, front mode
    cached_sensitivity: bool | None = None
    # front mode: sample each trial's MACs target as a variable of its own and scale its
    # per-layer ratios onto it, so that the trials spread over the whole MACs range (per-layer
    # ratios drawn independently average out to middling MACs: bench/search_quality.py).
    # Default (unset): on in front mode on MACs, off otherwise.
    front_targets: bool | None = None
    # a variable of its own, 0 to 1, for how far a trial's per-layer ratios depart from the
    # uniform cut (0: every ratio at their mean, 1: as sampled); the uniform warm starts sit
    # at 0, so the sampler starts from uniform and moves away only as far as val pays for.
    # Default (unset): on where front_targets is (docs/quickstart.md)
    spread: bool | None = None
    # budget mode: screen candidates by their adaptive-BN score (seconds each) and fine-tune
    # only this share of them, those scoring among the best so far (orchestrator/screen.py)
    screen: float | None = Field(None, gt=0, lt=1)
    # a longer search runs as successive Tune runs over one Optuna study: Tune keeps every
    # trial of a run in the driver (tens of KB each), so this bounds the driver's memory
    trials_per_run: int = Field(500, ge=1, le=1_000_000)
    reevaluate: ReevaluateSection | None = None  # fronts on means over data orders, not one lucky draw
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        """Unset: budget mode on MACs starts from the sensitivity allocation too, front mode
        on MACs samples each trial's MACs target and its spread, with TPE (docs/benchmarks.md)."""
        if not isinstance(data, dict):
            return data
        mode, objective = (data.get(name, cls.model_fields[name].default) for name in ("mode", "objective"))
        methods_unset = data.get("warm_start_methods") is None
        if data.get("round_to") is None:
            data = {**data, "round_to": "auto" if objective == "latency" else 1}
        if methods_unset:
            data = {**data, "warm_start_methods": ["sensitivity"] if (mode, objective) == ("budget", "macs") else []}
        if data.get("front_targets") is None:
            data = {**data, "front_targets": (mode, objective) == ("front", "macs")}
        if data.get("spread") is None:
            data = {**data, "spread": bool(data["front_targets"])}
        if data.get("sampler") is None:
            data = {**data, "sampler": "tpe" if data["front_targets"] else "nsga2"}
        if data.get("sweep") is None:  # a sweep of 3 starts the front, unless warm_start says where
            data = {**data, "sweep": SWEEP_DEFAULT if data["front_targets"] and data.get("warm_start") is None else 0}
        if data.get("fill") is None:
            data = {**data, "fill": 1.0 if data["front_targets"] else 0.0}
        if data.get("cached_sensitivity") is None:  # a sweep of the defaults' own, no method named
            data = {**data, "cached_sensitivity": bool(data["sweep"] and data["front_targets"] and methods_unset)}
        if data.get("warm_start") is None:
            data = {**data, "warm_start": [] if data["sweep"] else [0.5, 0.75, 1.0]}
        return data

    @model_validator(mode="after")
    def _check(self) -> SearchSection:
        if self.keep_min > self.keep_max:
            raise ValueError(f"keep_min: {self.keep_min} is above keep_max {self.keep_max}")
        if self.macs_target is not None and self.target is not None:
            raise ValueError("macs_target: give target (with objective) or macs_target, not both")
        if self.macs_target is not None and self.objective != "macs":
            raise ValueError(f"macs_target: targets MACs, but objective is {self.objective}: use target")
        if self.mode == "budget" and self.budget_target is None:
            raise ValueError("target: budget mode needs it (the fraction of the baseline's objective to keep)")
        if self.screen is not None and self.mode != "budget":
            raise ValueError("screen: compares candidates of equal MACs, so it needs budget mode (mode: budget)")
        if self.mode == "budget" and self.front_targets:
            raise ValueError("front_targets: samples a MACs target per trial, so it belongs to front mode")
        if self.sweep and not (self.mode == "front" and self.front_targets):
            raise ValueError("sweep: spreads the first trials over the MACs range, so it needs front mode on MACs")
        if self.cached_sensitivity and not (self.mode == "front" and self.sweep):
            raise ValueError(
                "cached_sensitivity: starts the sweep from a cached map, so it needs front mode with a sweep"
            )
        if self.fill and not (self.mode == "front" and self.front_targets):
            raise ValueError("fill: places trials between front points by MACs, so it needs front mode on MACs")
        for r in self.warm_start:
            if not 0 < r <= 1:
                raise ValueError(f"warm_start: ratio {r} is not in (0, 1]")
        return self

    @property
    def budget_target(self) -> float | None:
        """Budget mode's fraction of the baseline's objective (``target`` or ``macs_target``)."""
        return self.target if self.target is not None else self.macs_target


class TrialSection(_Strict):
    # auto: per trial, the criterion whose pruned network scores best after adaptive BN (AdaPruner)
    criterion: Literal[CRITERIA + ("auto",)] = "l1"  # type: ignore[valid-type]
    auto_batches: int = Field(4, ge=1, le=10_000)
    adaptive_bn_batches: int = Field(10, ge=0, le=10_000)
    # adaptive_bn: score candidates after BN recalibration, without fine-tuning (EagleEye)
    evaluation: Literal["finetune", "adaptive_bn"] = "finetune"
    regularizer: Literal["none", "ffr"] = "none"  # ffr: feature-flow regularization during the fine-tune
    regularizer_weight: float | None = Field(None, gt=0)
    epochs: float | None = Field(2, gt=0, le=10_000)
    steps: int | None = Field(None, ge=1, le=100_000_000)
    lr: float = Field(0.02, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(128, ge=1, le=65_536)
    cpu: float = Field(1, gt=0, le=4096)
    gpu: float = Field(0, ge=0, le=64)
    max_failures: int = Field(2, ge=0, le=1000)  # retries of a trial lost with its node
    device: str = "auto"

    @model_validator(mode="after")
    def _check(self) -> TrialSection:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device: '{self.device}' is not one of auto, cpu, cuda, cuda:N")
        if self.device.startswith("cuda") and self.gpu <= 0:
            raise ValueError(f"device: '{self.device}' needs trial.gpu > 0 (Ray gives a trial no GPU otherwise)")
        if self.evaluation == "adaptive_bn" and self.adaptive_bn_batches < 1:
            raise ValueError("evaluation: adaptive_bn needs adaptive_bn_batches >= 1 (the recalibration batches)")
        return self

    def regularizer_options(self) -> dict:
        return {"weight": self.regularizer_weight} if self.regularizer_weight else {}

    def trial_kwargs(self, seed: int) -> dict:
        """What this section sets of a ``trials.TrialConfig`` (the search's trials and
        ``prunetune prune`` alike): criterion, evaluation, regularizer, fine-tune."""
        return {
            "criterion": self.criterion,
            "auto_batches": self.auto_batches,
            "adaptive_bn_batches": self.adaptive_bn_batches,
            "evaluation": self.evaluation,
            "regularizer": self.regularizer,
            "regularizer_options": self.regularizer_options(),
            "finetune": self.finetune(seed),
        }

    def finetune(self, seed: int) -> FinetuneConfig:
        return carry(self, FinetuneConfig, seed=seed)


def carry(section: BaseModel, cls, **extra):
    """The dataclass ``cls`` (a ``trials`` setting) from the section's fields of the same
    name, plus ``extra``: the config validates, the dataclass is what runs, and no field is
    copied by hand (tests/orchestrator/test_sections.py checks that none is left behind)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: getattr(section, k) for k in type(section).model_fields if k in names}, **extra)


class SensitivitySection(_Strict):
    """The per-group sensitivity map (``prune --method sensitivity``, the sensitivity warm
    start): each group cut alone to ``levels`` keep ratios from search.keep_min below 1.0,
    BN recalibrated on trial.adaptive_bn_batches (at least 1) train batches, scored on
    ``val_batches`` val batches (null: all)."""

    # 2 ratios on 2 val batches: on ResNet-56 (30 groups) the map costs about 1.6 budgets of 12
    # brief fine-tunes and its allocation was +4.3 points over uniform (docs/benchmarks.md)
    levels: int = Field(2, ge=1, le=100)
    val_batches: int | None = Field(2, ge=1, le=1_000_000)


class LatencySection(_Strict):
    """Where latency is measured (search.objective: latency): the deployment runtime and
    device, the batch, the CPU threads; a median over ``repeats`` after ``warmup`` runs.
    A per-layer latency table (``table_levels`` kept counts per layer side) predicts every
    candidate; budget mode bisects on it, then verifies by measurement within ``tolerance``."""

    runtime: Literal[RUNTIMES] = "torch"  # type: ignore[valid-type]
    device: str = "cpu"
    batch_size: int = Field(1, ge=1, le=65_536)
    threads: int | None = Field(None, ge=1, le=1024)
    warmup: int = Field(10, ge=0, le=10_000)
    repeats: int = Field(30, ge=3, le=100_000)
    table_levels: int = Field(6, ge=2, le=64)
    tolerance: float = Field(0.05, gt=0, lt=1)
    # a Ray custom resource: latency is measured on the node(s) offering it (one measurement
    # machine for the cluster: `ray start --resources='{"edge_cpu": 1}'`); None: where trials run
    node_resource: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-:/]+$")
    # wall: wall time; thread: the measuring thread's CPU time (device cpu, threads 1), which
    # load from other processes on a shared machine does not stretch
    clock: Literal[CLOCKS] = "wall"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> LatencySection:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device: '{self.device}' is not one of cpu, cuda, cuda:N")
        if self.clock == "thread" and (self.device != "cpu" or self.threads != 1):
            raise ValueError("clock: thread needs device cpu and threads 1 (one thread's CPU time)")
        return self

    def settings(self) -> LatencySettings:
        return carry(self, LatencySettings)


class TrackingSection(_Strict):
    uri: str | None = None  # default: sqlite:///mlflow.db in the working directory


class ClusterSection(_Strict):
    address: str | None = None  # None: start Ray on this machine
