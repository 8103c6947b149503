"""The search: Ray Tune runs trials, Optuna proposes them, the driver records them.

The Ray side is deliberately thin: ``orchestrator.trainable.trainable`` turns a sampled
config into a ``trials.TrialConfig`` and forwards ``run_trial``'s reports to ``tune.report``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ray import tune

from cluster.connect import connect
from orchestrator import progress
from orchestrator.axis import ROW_EXTRAS
from orchestrator.baseline import Baseline, prepare_baseline
from orchestrator.config import SearchConfig, dump_config, flat_config
from orchestrator.latency import latency_table, log_latency_model, log_round_to, resolve_round_to
from orchestrator.progress import TrackingCallback
from orchestrator.reevaluate import reevaluate
from orchestrator.resume import check_new, resume_config
from orchestrator.screen import ScreenScheduler
from orchestrator.searcher import PrunetuneOptunaSearch, new_searcher, starting_points
from orchestrator.sensitivity import log_sensitivity, search_map
from orchestrator.settings import trial_settings
from orchestrator.space import (
    variables,
)
from orchestrator.sync import patience, spill_of, sync
from orchestrator.tracking import SearchRecord
from orchestrator.trainable import trainable as trainable_fn
from orchestrator.widths import log_groups
from trials.errors import UserError
from trials.groups import build_graph, check_prunable
from trials.trial import resolve_device

log = logging.getLogger("prunetune")


def run_sizes(num_trials: int, per_run: int) -> list[int]:
    """The trials of each Tune run of a search."""
    return [min(per_run, num_trials - i) for i in range(0, num_trials, per_run)]


def run_name(i: int) -> str:
    return "tune" if i == 0 else f"tune-{i}"


class SearchStopped(Exception):
    """The search was stopped (Ctrl-C): its state is saved and ``--resume`` goes on."""


class TrackingOutage(Exception):
    """MLflow stayed unreachable at the end of a search: Tune's results and the spill
    file hold everything; ``prunetune sync`` writes it once MLflow is back."""


def _tune_env() -> None:
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # failure reports carry no metrics
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Fail an MLflow write in seconds during an outage (the writer buffers and retries it)
    # rather than blocking Tune's event loop through minutes of client-side retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # snapshot often: a killed driver loses little
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    logging.getLogger("ray.tune.tune").addFilter(_NoRestoreHint())


class _NoRestoreHint(logging.Filter):
    """Ray's own hint after Ctrl-C (``Tuner.restore(...)``) is not how a prunetune search
    goes on; prunetune prints its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


def check_node_resource(cfg: SearchConfig) -> None:
    """latency.node_resource must name a resource some node of the cluster offers."""
    res = cfg.latency.node_resource
    if cfg.search.objective != "latency" or not res:
        return
    import ray

    if ray.cluster_resources().get(res, 0) < 1:
        raise UserError(
            f"latency.node_resource '{res}': no node of the cluster offers it; start the measurement "
            f"machine with `ray start --address HEAD:PORT --resources='{{\"{res}\": 1}}'`"
        )


def _prepare(cfg: SearchConfig, resume: bool, say) -> tuple[SearchConfig, Baseline, object, dict]:
    """Every check that can refuse the search, then the baseline and its channel groups
    (and the config it runs under: a resume keeps the search's own unset settings)."""
    check_prunable(cfg.model.arch)
    if resume:
        cfg = resume_config(cfg, say)
        if spill_of(cfg).path.is_file():  # what an outage left behind goes to MLflow first
            sync(cfg.name, cfg.storage_dir().parent, cfg.tracking.uri, say)
    else:
        check_new(cfg)
    connect(cfg.cluster.address, say)  # before the baseline: a wrong address fails in seconds
    check_node_resource(cfg)
    cfg.storage_dir().mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.trial.device) if cfg.trial.gpu > 0 else "cpu"
    base = prepare_baseline(cfg, device, say)
    m = base.metrics
    say(f"baseline: val_accuracy {m['val_accuracy']:.4f}, MACs {m['macs'] / 1e6:.2f} M")
    info = base.info
    graph = build_graph(base.model, (info.in_channels, info.input_size, info.input_size), info.arch)
    return cfg, base, graph, variables(graph.groups, cfg.search.granularity)


def _record(cfg: SearchConfig, base: Baseline, resume: bool, say) -> tuple[SearchRecord, TrackingCallback]:
    record = SearchRecord.open(cfg.tracking.uri, cfg.name, cfg.storage_uri(), resume, cfg.search.objective)
    if resume:  # a driver killed outright (SIGKILL, a lost machine) left its trials' runs RUNNING
        left = record.kill_open_trials()  # those Tune's snapshot holds run again and finish theirs
        if left:
            say(f"{left} trial run(s) the stopped driver left RUNNING marked KILLED (Tune runs again those it holds)")
    record.log_config(dump_config(cfg), flat_config(cfg.model_dump(mode="json")))
    record.log_baseline(base.metrics, base.history)
    record.log_baseline_checkpoint(base.model, base.info, base.scores)
    callback = TrackingCallback(
        cfg.tracking.uri,
        cfg.name,
        record.parent_run_id,
        cfg.search.num_trials,
        base.metrics,
        spill=spill_of(cfg).path,
        say=say,
        drain_timeout=patience(),
        objective=cfg.search.objective,
    )
    # a resumed search counts and ranks what is done (not the uniform cuts reevaluate logged)
    callback.seed({tid: row for tid, row in record.finished.items() if not row.get("comparator")})
    return record, callback


def _trainable(cfg: SearchConfig, base: Baseline, var_map: dict, record: SearchRecord, resume: bool, table=None):
    settings = trial_settings(cfg, var_map, table)
    if resume:  # trials MLflow holds as finished are replayed from the record, never trained again
        recorded = {
            tid: {k: row[k] for k in ("val_accuracy", "macs", "macs_ratio", "params", *ROW_EXTRAS) if k in row}
            for tid, row in record.finished.items()
        }
        settings = replace(settings, recorded=recorded)
    state = {k: v.detach().clone() for k, v in base.model.state_dict().items()}
    return tune.with_resources(
        tune.with_parameters(
            trainable_fn,
            baseline_state=state,
            settings=settings,
            scores={k: v.tolist() for k, v in base.scores.items()} or None,
        ),
        {"cpu": cfg.trial.cpu, "gpu": cfg.trial.gpu},
    )


def _new_tuner(cfg: SearchConfig, trainable, searcher, size: int, name: str, callback) -> tune.Tuner:
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=ScreenScheduler(cfg.search.screen) if cfg.search.screen else None,
            num_samples=size,
            max_concurrent_trials=cfg.search.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=cfg.storage_uri(),
            verbose=0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=cfg.trial.max_failures),
        ),
    )


def _restored_searcher(experiment: str) -> PrunetuneOptunaSearch | None:
    """The searcher of a finished Tune run, restored from its snapshot with Ray's public
    ``Searcher.restore_from_dir``: the next run goes on with its study."""
    searcher = PrunetuneOptunaSearch()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            searcher.restore_from_dir(_local_dir(experiment, tmp))
        except (FileNotFoundError, RuntimeError, OSError):
            return None
    return searcher


def _local_dir(experiment: str, tmp: str) -> str:
    """A local folder holding the searcher snapshots of ``experiment`` (copied from a
    storage URI, as ``restore_from_dir`` reads a local folder)."""
    if "://" not in experiment:
        return experiment
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(experiment)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.base_name.startswith("searcher-state"):
            with fs.open_input_stream(info.path) as src:
                Path(tmp, info.base_name).write_bytes(src.read())
    return tmp


def _stopped(grid, size: int) -> bool:
    """Tune returns normally after Ctrl-C (it catches SIGINT): a run stopped early has
    fewer than ``size`` trials that ended."""
    return grid.num_terminated + grid.num_errors < size


def _stop(record: SearchRecord, callback: TrackingCallback, say) -> None:
    """A stopped search: every write drained (or spilled), no run left RUNNING."""
    callback.drain(30.0)
    try:
        final = SearchRecord(record.uri, record.experiment, record.parent_run_id, record.objective)  # as written
        final.baseline = record.baseline
        killed = final.kill_open_trials()
        final.finish("KILLED")
        say(f"search stopped: {len(callback.done)} trials done, {killed} cut short (they run again on --resume)")
    except Exception as exc:  # noqa: BLE001 - MLflow down too: Tune's snapshot still holds the state
        say(f"search stopped; MLflow could not be told ({type(exc).__name__})")


def run_search(cfg: SearchConfig, *, resume: bool = False, say=print) -> list[dict]:
    """Run (or resume) a search; returns the ranked rows of its finished trials.

    The flow: check and prepare (baseline, groups), open the MLflow record, run the Tune
    runs, finish the record. Raises ``SearchStopped`` after Ctrl-C and
    ``TrackingOutage`` when MLflow is gone at the end.
    """
    _tune_env()
    cfg, base, graph, var_map = _prepare(cfg, resume, say)
    given = cfg  # as the record logs it (round_to: auto, not what it measured)
    cfg = resolve_round_to(cfg, base, say)  # round_to: auto, measured where latency is, cached
    table = check = None
    if cfg.search.objective == "latency":  # a Ray task where trials run, cached; its networks keep round_to
        table, check = latency_table(cfg, base, say)
        base.metrics["latency_ms"] = table.predict(table.sizes)  # the baseline's point of the front
    record, callback = _record(given, base, resume, say)
    log_groups(record.client, record.parent_run_id, graph)  # the front page's width views
    log_round_to(given, base, record.client, record.parent_run_id)
    if table is not None:
        log_latency_model(record.client, record.parent_run_id, table, check)
    cfg, smap = search_map(cfg, base, graph, say)  # Ray tasks over the cluster, cached
    if smap is not None:
        log_sensitivity(record.client, record.parent_run_id, smap)
    trainable = _trainable(cfg, base, var_map, record, resume, table)
    settings = trial_settings(cfg, var_map, table)
    t0, started_at = time.perf_counter(), time.time()
    try:
        _tune_runs(cfg, resume, trainable, callback, lambda: _searcher(cfg, base, graph, var_map, smap, record), say)
    except (KeyboardInterrupt, SearchStopped):
        _stop(record, callback, say)
        raise SearchStopped() from None
    finally:
        callback.thaw()
    if cfg.search.reevaluate:  # the top configurations over more data orders, Ray tasks
        callback.drain(callback.drain_timeout)  # the writer's records are what is ranked
        state = {k: v.detach().clone() for k, v in base.model.state_dict().items()}
        scores = {k: v.tolist() for k, v in base.scores.items()} or None
        reevaluate(cfg, record, settings, state, scores, say)
    return _finish(cfg, record, say, tune_seconds=time.perf_counter() - t0, tune_started_at=started_at)


def _searcher(cfg: SearchConfig, base: Baseline, graph, var_map: dict, smap, record: SearchRecord):
    """A new searcher; its starting points, with where each came from, go on the search run."""
    starts = starting_points(cfg, base, graph, var_map, smap)
    record.log_starts(starts)
    return new_searcher(cfg, var_map, starts)


def _tune_runs(cfg: SearchConfig, resume: bool, trainable, callback, new_searcher, say) -> None:
    """Tune keeps every trial of a run in the driver, so a long search is split into runs
    of at most trials_per_run trials over one searcher (one Optuna study): "tune",
    "tune-1", ... A run starts only when the one before it has finished, so a resumed
    search restores the last run Tune holds a snapshot of and goes on from there."""
    s, storage = cfg.search, cfg.storage_uri()
    sizes = run_sizes(s.num_trials, s.trials_per_run)
    restorable = [i for i in range(len(sizes)) if resume and tune.Tuner.can_restore(f"{storage}/{run_name(i)}")]
    first, searcher = max(restorable, default=0), None
    for i in range(first, len(sizes)):
        experiment = f"{storage}/{run_name(i)}"
        restoring = i == first and bool(restorable)
        if restoring:
            say(f"resuming the search stored at {experiment}")
            progress.RESTORING.update(
                uri=callback.uri, say=callback.say, drain_timeout=callback.drain_timeout, finished=dict(callback.done)
            )
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            if resume and i == first:  # no run has a snapshot (first is 0)
                say(f"nothing to resume at {experiment}: starting a new search")
            searcher = searcher or new_searcher()
            tuner = _new_tuner(cfg, trainable, searcher, sizes[i], run_name(i), callback)
        grid = tuner.fit()
        if _stopped(grid, sizes[i]):
            raise SearchStopped()
        if restoring and i + 1 < len(sizes):
            searcher = _restored_searcher(experiment)
            if searcher is None:
                say(f"no searcher state in {experiment}: the next run starts a new study")


def _finish(
    cfg: SearchConfig,
    record: SearchRecord,
    say,
    tune_seconds: float | None = None,
    tune_started_at: float | None = None,
) -> list[dict]:
    """Write the final front and close the parent run, retrying while MLflow is unreachable."""
    deadline = time.time() + patience()
    while True:
        try:
            final = SearchRecord(cfg.tracking.uri, cfg.name, record.parent_run_id, cfg.search.objective)
            final.baseline = record.baseline
            if tune_seconds is not None:  # wall time of Tune's run (this driver's share of a resumed one)
                final.client.log_metric(record.parent_run_id, "tune_seconds", tune_seconds)
                final.client.log_metric(record.parent_run_id, "tune_started_at", tune_started_at or 0.0)
            final.finish()
            return final.rows()
        except Exception as exc:  # noqa: BLE001 - tracking outage: retry, then say where things are
            if time.time() > deadline:
                spill = spill_of(cfg)
                spill.parent_run_id = record.parent_run_id
                spill.add(finished=True)
                raise TrackingOutage(
                    f"MLflow at {cfg.tracking.uri or 'sqlite:///mlflow.db'} unreachable at the end of the search "
                    f"({type(exc).__name__}). Nothing is lost: Tune's results are under {cfg.storage_uri()} and "
                    f"the MLflow writes in {spill.path}; once MLflow is back, run "
                    f"`prunetune sync {cfg.name} --storage {cfg.storage_dir().parent}`"
                ) from None
            time.sleep(2.0)
