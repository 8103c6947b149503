"""The searcher: Ray Tune's OptunaSearch, with what a pruning search needs on top.

- A trial that reported its own failure (NaN loss, bad spec) is told to Optuna as FAIL:
  it ends normally, so Ray does not retry it (retries are for lost nodes).
- A configuration proposed again is not trained again: samplers do propose the same
  point twice (discrete steps, enqueued warm starts, NSGA-II's offspring), and a trial
  costs a fine-tune. The repeat gets the stored result in its config (``REUSE``), which
  the trainable reports at once; it is recorded with tag ``prunetune.reused_from``.
- A trial ``search.fill`` placed in a gap of the front carries, in its config (``FILL``),
  the trial whose shape it took; it is recorded with tag ``prunetune.filled_from``.
"""

from __future__ import annotations

import threading

import optuna
from ray.tune.search.optuna import OptunaSearch

from orchestrator.axis import axis
from orchestrator.baseline import Baseline, method_points
from orchestrator.config import SearchConfig
from orchestrator.gaps import PLAN, FrontFillSampler
from orchestrator.noise import quiet_optuna
from orchestrator.space import (
    FILL,
    REUSE,
    dedup,
    search_space,
    target_distribution,
    uniform_sweep_points,
    warm_levels,
    warm_start_points,
    with_spread,
    with_targets,
)
from orchestrator.tracking import FINAL_METRICS

# what a reused trial reports: the stored trial's final metrics and spec (its time is 0)
# (not criterion_scores: the searcher is snapshotted with the run, so what it keeps per trial stays small)
REUSED = (*FINAL_METRICS, "epoch", "spec_json", "criterion", "baseline_macs", "baseline_params")


def config_key(config: dict) -> tuple:
    """A configuration as a key: its sampled values, rounded as the search space steps them."""
    return tuple(
        sorted((k, round(v, 10) if isinstance(v, float) else v) for k, v in config.items() if k not in (REUSE, FILL))
    )


class PrunetuneOptunaSearch(OptunaSearch):
    def __init__(self, *args, **kwargs):
        quiet_optuna()  # the study is made here: "A new study created" only with --verbose
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config
        key = config_key(config)
        self._running()[trial_id] = key
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            self._trial_ids()[ot_trial.number] = trial_id
        filled = self._filled_from(ot_trial)
        if filled is not None:
            config = {**config, FILL: filled}
        stored = self._stored().get(key)
        return {**config, REUSE: stored} if stored is not None else config

    def _filled_from(self, ot_trial) -> str | None:
        """The Ray trial whose shape a fill trial took (orchestrator.gaps), else None."""
        if ot_trial is None:
            return None
        plan = self._ot_study._storage.get_trial_system_attrs(ot_trial._trial_id).get(PLAN)
        return None if plan is None else self._trial_ids().get(plan["from"], f"optuna-{plan['from']}")

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and (result.get("trial_failed") or not result.get("final")):
            result, error = None, True
        key = self._running().pop(trial_id, None)
        if result and not error and not result.get("reused_from") and key is not None:
            kept = {k: result[k] for k in REUSED if k in result}
            self._stored()[key] = {**kept, "trial_seconds": 0.0, "reused_from": trial_id}
        super().on_trial_complete(trial_id, result=result, error=error)

    def _stored(self) -> dict:
        """Final results by configuration (a searcher restored from an older snapshot starts empty)."""
        if not hasattr(self, "_results_by_config"):
            self._results_by_config: dict[tuple, dict] = {}
        return self._results_by_config

    def _trial_ids(self) -> dict:
        """Ray's trial id by Optuna's trial number (a searcher restored from an older snapshot starts empty)."""
        if not hasattr(self, "_ids_by_number"):
            self._ids_by_number: dict[int, str] = {}
        return self._ids_by_number

    def _running(self) -> dict:
        """Each running trial's configuration key, by trial id."""
        if not hasattr(self, "_keys_by_trial"):
            self._keys_by_trial: dict[str, tuple] = {}
        return self._keys_by_trial


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: Optuna 5.1 gave it a thread lock (its generation cache)
    and no ``__getstate__``, so Ray Tune could not snapshot a searcher holding it (every
    nsga2 search failed at its first Tune run: "cannot pickle '_thread.lock' object").
    The lock guards a cache; a restored sampler starts with a new one."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if "_thread_lock" in state:
            state["_thread_lock"] = None  # a lock does not pickle: __setstate__ makes a new one
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_thread_lock" in state:
            self._thread_lock = threading.Lock()


def sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    s = cfg.search
    if s.sampler == "tpe":
        base = optuna.samplers.TPESampler(seed=s.seed, constant_liar=True, multivariate=True)
    elif s.sampler == "random":
        base = optuna.samplers.RandomSampler(seed=s.seed)
    else:
        population = s.population_size or max(4, min(50, s.num_trials // 4))
        base = NSGAIISampler(seed=s.seed, population_size=population)
    if s.fill:  # a share of the trials fills the front's widest gaps
        return FrontFillSampler(base, s.fill, low=target_distribution(s.keep_min).low)
    return base


def starting_points(cfg: SearchConfig, base: Baseline, graph, var_map: dict, smap=None) -> list[tuple[str, dict]]:
    """The points Optuna runs first, in this order, each once and each with where it came
    from: the methods' allocations ("adapruner", "sensitivity@0.5", "paam"; with
    ``search.sweep``, at each sweep target, or the uniform cut there where no method is
    named), then the uniform warm starts ("uniform@0.5")."""
    s, names = cfg.search, list(var_map)
    uniform = warm_start_points(names, warm_levels(s), s.keep_min, s.keep_max, s.keep_step)
    if s.sweep and not s.warm_start_methods:  # the sweep, with the uniform cut
        uniform = uniform_sweep_points(cfg, graph, names) + uniform
    named = method_points(cfg, base, graph, var_map, smap) + [
        (f"uniform@{p[names[0]]:g}" if names else "uniform", p) for p in uniform
    ]
    points = with_targets(cfg, graph, var_map, with_spread(cfg, [p for _, p in named]))
    return dedup([(origin, p) for (origin, _), p in zip(named, points)], key=lambda item: item[1])


def new_searcher(cfg: SearchConfig, var_map: dict, starts: list[tuple[str, dict]]) -> PrunetuneOptunaSearch:
    """Optuna behind Ray Tune, over the search's space, evaluating ``starts`` first."""
    s = cfg.search
    cost = axis(s.objective).key  # the front's cost: macs, params, or the measured latency ratio
    metric, mode = (["val_accuracy", cost], ["max", "min"]) if s.mode == "front" else ("val_accuracy", "max")
    return PrunetuneOptunaSearch(
        space=search_space(cfg, list(var_map)),
        metric=metric,
        mode=mode,
        sampler=sampler(cfg),
        points_to_evaluate=[p for _, p in starts],
    )
