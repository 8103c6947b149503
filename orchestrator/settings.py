"""What every trial of a search is run with: built once from the config on the driver,
sent to Ray's workers (and the re-evaluation tasks) as one frozen, typed value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trials.data import DataConfig
from trials.latency import LatencySettings
from trials.train import FinetuneConfig

if TYPE_CHECKING:
    from orchestrator.config import SearchConfig


@dataclass(frozen=True, kw_only=True)
class TrialSettings:
    """Named as ``trials.TrialConfig`` names them wherever the two share a field, so
    ``orchestrator.trainable.trial_config`` carries them over by name; every value comes
    from the config (``trial_settings``), so none has a default of its own here."""

    arch: str
    data: DataConfig
    variables: Mapping[str, list[str]]  # a search variable -> the channel groups it sets
    device: str
    # the cut: how ratios become counts, and what budget mode scales them onto
    round_to: int
    objective: str
    target: float | None  # budget mode: a fraction of the baseline's objective
    keep_min: float
    keep_max: float
    # how a trial prunes, scores and fine-tunes (the config's trial section)
    criterion: str
    auto_batches: int
    adaptive_bn_batches: int
    evaluation: str
    regularizer: str
    regularizer_options: Mapping[str, float]
    finetune: FinetuneConfig
    screen: bool  # report the adaptive-BN score first (search.screen)
    # latency, with objective latency: where and how it is timed, and the model predicting it
    latency: LatencySettings | None
    latency_tolerance: float
    latency_node_resource: str | None
    latency_table: Mapping | None
    # on --resume: what MLflow holds of trials finished after Tune's last snapshot, by trial id
    recorded: Mapping[str, dict] = field(default_factory=dict)


def trial_settings(cfg: SearchConfig, var_map: dict, table=None) -> TrialSettings:
    """The settings ``cfg`` gives every trial (``table``: the latency model, objective latency)."""
    t, s = cfg.trial, cfg.search
    on_latency = s.objective == "latency"
    return TrialSettings(
        arch=cfg.model.arch,
        data=cfg.data_config(),
        variables=var_map,
        device=t.device,
        round_to=s.round_to,
        objective=s.objective,
        target=s.budget_target if s.mode == "budget" else None,
        keep_min=s.keep_min,
        keep_max=s.keep_max,
        **t.trial_kwargs(s.seed),
        screen=s.screen is not None,
        latency=cfg.latency.settings() if on_latency else None,
        latency_tolerance=cfg.latency.tolerance,
        latency_node_resource=cfg.latency.node_resource if on_latency else None,
        latency_table=table.to_dict() if table is not None else None,
    )
