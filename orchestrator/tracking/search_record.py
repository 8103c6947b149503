"""A search's record: its parent run, one child run per trial (and per uniform cut that
took a re-evaluated configuration's place), and the front as artifacts under ``pareto/``.
Only the driver writes here.

Trials are identified by their Ray trial id (tag ``prunetune.trial_id``), so that a
resumed search finds its existing child runs instead of creating new ones.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.axis import BASELINE_ROW, Axis, axis, baseline_row
from orchestrator.front_table import BASELINE_KEYS, front_rows, rows_to_csv, summary, trial_row
from orchestrator.pareto import Front, hypervolume
from orchestrator.store import chunks, client_for, experiment_id, param_value, search_all, trial_param
from orchestrator.tracking.names import (
    BASELINE_ARTIFACT,
    COMPARATOR_OF,
    CRITERION,
    ERROR,
    FIDELITY,
    FINAL_METRICS,
    NOTE,
    OBJECTIVE_PARAM,
    PARETO,
    PLACE_TAGS,
    RETRIES,
    ROLE,
    STARTS_ARTIFACT,
    STORAGE,
    TRIAL_ID,
)


def search_runs_of(client: MlflowClient, exp_id: str) -> list:
    """The search (parent) runs of an experiment, newest first."""
    return search_all(client, [exp_id], f"tags.`{ROLE}` = 'search'", order_by=["attributes.start_time DESC"])


def _stored_search(client: MlflowClient, exp_id: str, storage: str):
    """The newest search run recorded for ``storage`` (what ``--resume`` goes on with).
    Compared in Python, not in the filter, so a storage path with a quote in it works."""
    runs = [r for r in search_runs_of(client, exp_id) if r.data.tags.get(STORAGE) == storage]
    return runs[0] if runs else None


class SearchRecord:
    """Writes one search into MLflow: parent run, child runs, front artifacts."""

    def __init__(self, uri: str | None, experiment: str, parent_run_id: str, objective: str | None = None) -> None:
        self.uri, self.experiment, self.parent_run_id = uri, experiment, parent_run_id
        self.objective = objective  # None: read from the search run's params
        self.client = client_for(uri)
        self.children: dict[str, str] = {}  # Ray trial id -> child run id
        self.finished: dict[str, dict] = {}  # Ray trial id -> final metrics row
        self._baseline: dict | None = None
        self._last_plot = self._last_front = 0.0
        self._tagged: dict[str, bool] = {}  # run id -> the pareto tag last written
        self._retag: dict[str, bool] = {}  # run id -> pareto tag to write (pushed off the front)
        self._params_logged: set[str] = set()  # child runs whose params are written
        self._specs: dict[str, str] = {}  # run id -> spec JSON, for the front page's width views
        self._groups: str | None = None  # the search's baseline/groups.json ("" when it has none)
        self.front = Front()  # kept as trials finish: O(log front) per trial
        self._load_existing()

    @property
    def axis(self) -> Axis:
        return axis(self.objective)

    @classmethod
    def open(
        cls, uri: str | None, experiment: str, storage: str, resume: bool, objective: str = "macs"
    ) -> SearchRecord:
        """Create the parent run, or on resume find the one recorded for ``storage``."""
        client = client_for(uri)
        exp_id = experiment_id(client, experiment)
        if resume:
            found = _stored_search(client, exp_id, storage)
            if found:
                client.update_run(found.info.run_id, status="RUNNING")
                return cls(uri, experiment, found.info.run_id, objective)
        name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
        run = client.create_run(exp_id, run_name=name, tags={ROLE: "search", STORAGE: storage})
        return cls(uri, experiment, run.info.run_id, objective)

    def _load_existing(self) -> None:
        run = self.client.get_run(self.parent_run_id)
        self.experiment_id = run.info.experiment_id
        if self.objective is None:
            self.objective = run.data.params.get(OBJECTIVE_PARAM, "macs")
        key = self.axis.key
        children = search_all(self.client, [self.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
        for child in children:
            tid = child.data.tags.get(TRIAL_ID)
            if not tid:
                continue
            self.children[tid] = child.info.run_id
            self._params_logged.add(child.info.run_id)
            if PARETO in child.data.tags:
                self._tagged[child.info.run_id] = child.data.tags[PARETO] == "true"
            m = child.data.metrics
            if child.info.status == "FINISHED" and "val_accuracy" in m and "macs" in m:
                self.finished[tid] = row = trial_row(tid, child.info.run_id, m)
                if row.get(key) is not None:
                    self.front.add(child.info.run_id, row["val_accuracy"], row[key])

    @property
    def baseline(self) -> dict | None:
        """The unpruned network's val_accuracy, macs (params, latency_ms): a point of the front."""
        return self._baseline

    @baseline.setter
    def baseline(self, value: dict | None) -> None:
        self._baseline = value
        if value and value.get("macs"):
            row = baseline_row(value)
            self.front.add(BASELINE_ROW, row["val_accuracy"], float(row[self.axis.key]))

    # -- the parent run -------------------------------------------------------------
    def log_config(self, resolved_yaml: str, flat: dict) -> None:
        self.client.log_text(self.parent_run_id, resolved_yaml, "config.yaml")
        params = [Param(k, param_value(v)) for k, v in flat.items()]
        existing = self.client.get_run(self.parent_run_id).data.params
        params = [p for p in params if p.key not in existing]
        for chunk in chunks(params):
            self.client.log_batch(self.parent_run_id, params=chunk)

    def log_starts(self, starts: list[tuple[str, dict]]) -> None:
        """The starting points in the order Optuna runs them (the first is trial ``_00000``),
        each ``{"origin": "sensitivity@0.5", "params": {...}}`` with params as trial runs hold them."""
        doc = [{"origin": o, "params": {k: trial_param(v) for k, v in p.items()}} for o, p in starts]
        self.client.log_text(self.parent_run_id, json.dumps(doc, indent=1), STARTS_ARTIFACT)

    def log_baseline(self, metrics: dict, history: list[dict] | None = None) -> None:
        """The baseline's metrics, and the course of its regularizer (one metric per
        quantity, stepped by training step: DAFP's coefficient and sparsity, ...)."""
        self.baseline = {k: metrics[k] for k in BASELINE_KEYS if k in metrics}
        now = int(time.time() * 1000)
        rows = [Metric(f"baseline_{k}", float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))]
        for point in history or []:
            step = int(point.get("step", 0))
            rows += [Metric(f"baseline_{k}", float(v), now, step) for k, v in point.items() if k != "step"]
        for chunk in chunks(rows, 1000):
            self.client.log_batch(self.parent_run_id, metrics=chunk)

    def log_baseline_checkpoint(self, model, info, scores: dict | None = None) -> None:
        """The baseline's weights (plain tensors) under ``baseline/``, so that promotion
        needs nothing but the MLflow record."""
        from trials.baseline import save_checkpoint

        if any(a.path == BASELINE_ARTIFACT for a in self.client.list_artifacts(self.parent_run_id, "baseline")):
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = save_checkpoint(Path(tmp) / "baseline.pt", model, info, scores=scores)
            self.client.log_artifact(self.parent_run_id, str(path), "baseline")

    def finish(self, status: str = "FINISHED") -> None:
        rows = self.write_front(plots=True)
        note = summary(self.experiment_id, rows, self.baseline, status, self.objective)
        self.client.set_tag(self.parent_run_id, NOTE, note)
        self.client.set_terminated(self.parent_run_id, status)

    def kill_open_trials(self) -> int:
        """Mark the child runs still RUNNING as KILLED (a stopped search); a resume that
        runs such a trial again finishes its run. Returns how many were marked."""
        where = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"
        running = search_all(self.client, [self.experiment_id], where)
        for run in running:
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(running)

    # -- child runs -------------------------------------------------------------------
    # One trial costs a handful of MLflow calls, whatever the search's size: the child run
    # is created with its tags; params go with the first batch of metrics; the final
    # metrics and tags are one batch; spec.json; the run's end.
    def child(self, trial_id: str) -> str:
        if trial_id not in self.children:
            tags = {"mlflow.parentRunId": self.parent_run_id, ROLE: "trial", TRIAL_ID: trial_id}
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags=tags)
            self.children[trial_id] = run.info.run_id
        return self.children[trial_id]

    def _batch(self, run_id: str, params: dict, metrics: list | None = None, tags: list | None = None) -> None:
        """One log_batch (more only past MLflow's limits: 100 params, 100 tags, 1000 metrics)
        carrying the run's params the first time."""
        plist = [] if run_id in self._params_logged else [Param(k, trial_param(v)) for k, v in params.items()]
        metrics, tags = metrics or [], tags or []
        first = True
        while first or plist or metrics or tags:
            self.client.log_batch(run_id, metrics=metrics[:1000], params=plist[:100], tags=tags[:100])
            plist, metrics, tags, first = plist[100:], metrics[1000:], tags[100:], False
        self._params_logged.add(run_id)

    def log_epoch(self, trial_id: str, params: dict, result: dict) -> None:
        """One epoch's metrics; a screening report (fidelity 0: after the cut and adaptive
        BN, before any fine-tune) as ``screen_accuracy``/``screen_loss``, so that a run
        screened out never carries a ``val_accuracy`` a front could take for a result."""
        run_id = self.child(trial_id)
        now, step = int(time.time() * 1000), int(result.get("epoch", 0))
        names = {"val_accuracy": "val_accuracy", "val_loss": "val_loss", "train_loss": "train_loss"}
        if result.get("fidelity") == 0:
            names = {"val_accuracy": "screen_accuracy", "val_loss": "screen_loss"}
        metrics = [
            Metric(name, float(result[k]), now, step)
            for k, name in names.items()
            if isinstance(result.get(k), (int, float)) and math.isfinite(result[k])
        ]
        self._batch(run_id, params, metrics)

    def log_screened(self, trial_id: str, params: dict, result: dict) -> None:
        """A trial the screen stopped before its fine-tune: its screening score and cost,
        tag ``prunetune.fidelity=adaptive_bn``, finished, never on the front."""
        run_id = self.child(trial_id)
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(result[k]), now, 0) for k in ("macs", "macs_ratio") if k in result]
        if "val_accuracy" in result:
            metrics.append(Metric("screen_accuracy", float(result["val_accuracy"]), now, 0))
        tags = [RunTag(FIDELITY, "adaptive_bn"), RunTag(PARETO, "false")]
        self._batch(run_id, params, metrics, tags)
        self._tagged[run_id] = False
        self.client.set_terminated(run_id, "FINISHED")

    def log_final(self, trial_id: str, params: dict, result: dict) -> None:
        run_id = self.child(trial_id)
        now, step = int(time.time() * 1000), int(result.get("epoch", 0))
        metrics = [Metric(k, float(result[k]), now, step) for k in FINAL_METRICS if k in result]
        self.finished[trial_id] = row = trial_row(trial_id, run_id, result)
        cost = row.get(self.axis.key)
        on_front, gone = self.front.add(run_id, row["val_accuracy"], cost) if cost is not None else (False, [])
        self._retag.update(dict.fromkeys((g for g in gone if g != BASELINE_ROW), False))
        tags = [RunTag(PARETO, "true" if on_front else "false"), RunTag(FIDELITY, "finetune")]
        for key, tag in PLACE_TAGS.items():  # where it trained and was timed; or whose result
            if result.get(key):
                tags.append(RunTag(tag, str(result[key])))
        if result.get("criterion"):  # criterion auto: the one chosen for this spec
            tags.append(RunTag(CRITERION, str(result["criterion"])))
        self._batch(run_id, params, metrics, tags)
        self._tagged[run_id] = on_front
        self.client.log_text(run_id, result["spec_json"], "spec.json")
        self._specs[run_id] = result["spec_json"]
        if result.get("criterion_scores"):
            self.client.log_text(run_id, str(result["criterion_scores"]), "criterion_scores.json")
        self.client.set_terminated(run_id, "FINISHED")
        self.write_front()

    def log_comparator(self, of: dict, job: dict, results: list[dict], criterion: str) -> str:
        """The uniform cut at a re-evaluated configuration's cost (``job``), where it beat
        that configuration over the same data orders (``results``: its fine-tunes): a
        finished trial run of its own, scored as a re-evaluated trial (its counts in
        spec.json, promotable), and the configuration it beat marked ``beaten_by_uniform``,
        which keeps it off the front. Returns the new run's id."""
        run_id = self.child(f"{of['trial']}-uniform")
        now, first = int(time.time() * 1000), results[0]
        vals = [float(r["val_accuracy"]) for r in results]
        metrics = [Metric(k, float(first[k]), now, 0) for k in FINAL_METRICS if k in first and k != "val_accuracy"]
        metrics += [Metric("val_accuracy", vals[0], now, int(first.get("epoch", 0)))]
        metrics += [Metric("val_accuracy_reeval", v, now, j) for j, v in enumerate(vals)]
        metrics += [
            Metric("val_accuracy_mean", statistics.mean(vals), now, 0),
            Metric("val_accuracy_std", statistics.stdev(vals) if len(vals) > 1 else 0.0, now, 0),
            Metric("reevaluations", float(len(vals)), now, 0),
            Metric("uniform_cut", 1.0, now, 0),
            Metric("uniform_comparator", 1.0, now, 0),
        ]
        tags = [RunTag(COMPARATOR_OF, of["run_id"]), RunTag(CRITERION, criterion), RunTag(FIDELITY, "finetune")]
        self._batch(run_id, {"uniform_at": job["uniform_at"], "objective": job["objective"]}, metrics, tags)
        self.client.log_text(run_id, first["spec_json"], "spec.json")
        self.client.set_terminated(run_id, "FINISHED")
        self.client.log_metric(of["run_id"], "beaten_by_uniform", 1.0)
        return run_id

    def log_retry(self, trial_id: str, params: dict, count: int) -> None:
        """Tune started the trial again after its worker was lost (the ``count``-th time)."""
        self._batch(self.child(trial_id), params, tags=[RunTag(RETRIES, str(count))])

    def log_failure(self, trial_id: str, params: dict, message: str) -> None:
        run_id = self.child(trial_id)
        self._batch(run_id, params, tags=[RunTag(ERROR, message[:5000]), RunTag(PARETO, "false")])
        self._tagged[run_id] = False
        self.client.set_terminated(run_id, "FAILED")

    # -- the front --------------------------------------------------------------------
    def rows(self) -> list[dict]:
        return front_rows(list(self.finished.values()), self.baseline, self.objective)

    def write_front(self, plots: bool | None = None) -> list[dict]:
        """Write the front's ``pareto/`` artifacts (and tags the front kept as trials
        finished has not written yet) to the parent.

        While trials finish this costs a tag write per run pushed off the front; the
        json/csv artifacts (which rank every trial) are rewritten at most every 10 s and
        the plots every 30 s. ``plots=True``, at the end, writes everything and checks
        every run's tag against the ranks, so bookkeeping per trial stays flat.
        """
        for run_id, flag in list(self._retag.items()):
            if self._tagged.get(run_id) != flag:
                self.client.set_tag(run_id, PARETO, "true" if flag else "false")
                self._tagged[run_id] = flag
            del self._retag[run_id]
        now = time.time()
        if not plots and now - self._last_front < 10:
            return []
        rows = self.rows()
        if not rows:
            return rows
        if plots:
            for r in rows:
                if not r.get("baseline") and self._tagged.get(r["run_id"]) != r["pareto"]:
                    self.client.set_tag(r["run_id"], PARETO, "true" if r["pareto"] else "false")
                    self._tagged[r["run_id"]] = r["pareto"]
        self._last_front = now
        if plots is None:  # plots are heavier: at most every 30 s while trials finish
            plots = now - self._last_plot > 30
        if self.baseline and self.baseline.get("macs"):
            # the share of the (accuracy 0..1) x (cost 0..baseline's) box the front dominates:
            # one number per search that rises as the search finds better points
            ax = self.axis
            hv = hypervolume([(r["val_accuracy"], ax.relative(r, self.baseline)) for r in rows], (0.0, 1.0))
            self.client.log_metric(self.parent_run_id, "front_hypervolume", hv, step=len(rows))
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "front.json").write_text(json.dumps({"baseline": self.baseline, "trials": rows}, indent=2))
            (d / "front.csv").write_text(rows_to_csv(rows))
            if plots:
                from orchestrator.plots import write_html, write_png  # plotly, matplotlib: only when drawing
                from orchestrator.widths import front_widths, read_groups

                title = f"{self.experiment}: Pareto front of {self.axis.label} against val accuracy"
                if self._groups is None:  # read once per record: the plots are redrawn every 30 s
                    self._groups = read_groups(self.client, self.parent_run_id) or ""
                widths = (
                    front_widths(self.client, self.parent_run_id, rows, self._specs, self._groups)
                    if self._groups
                    else None
                )
                write_html(rows, d / "front.html", title, self.baseline, self.objective, widths)
                write_png(rows, d / "front.png", title, self.baseline, self.objective)
                self._last_plot = time.time()
            self.client.log_artifacts(self.parent_run_id, str(d), "pareto")
        return rows
