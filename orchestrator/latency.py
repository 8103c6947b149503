"""The latency model of a search (search.objective: latency): the baseline's per-layer
latency table, built where latency is measured and checked there against direct
measurement of random pruned networks; cached beside the baseline, one per
(architecture, input, runtime, device, batch, threads, levels)."""

from __future__ import annotations

import hashlib
import json
import sys

from orchestrator.baseline import Baseline
from orchestrator.config import SearchConfig
from trials.latency import LatencySettings
from trials.latency_table import LatencyTable, build_table, check_table

CHECK_NETWORKS = 20  # random pruned networks the model is checked against
CALIBRATION_NETWORKS = 8  # and others it is fitted to (trials/latency_table.py build_table)


def _key(cfg: SearchConfig, base: Baseline) -> str:
    info = base.info
    setting = {
        "arch": info.arch,
        "input": [info.in_channels, info.input_size, info.input_size],
        "classes": info.num_classes,
        "latency": cfg.latency.model_dump(mode="json"),
        "keep_min": cfg.search.keep_min,
    }
    return hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]


def build_and_check(arch: str, info, settings: LatencySettings, levels: int, keep_min: float) -> dict:
    """Build the table for ``arch`` (weights do not change timings) and check it; runs
    where it is called (a Ray task, or this process)."""
    from trials.groups import build_graph
    from trials.models import create_model
    from trials.prune import rebuild

    model = create_model(arch, num_classes=info.num_classes, in_channels=info.in_channels).eval()
    shape = (info.in_channels, info.input_size, info.input_size)
    graph = build_graph(model, shape, arch)
    build = lambda spec: rebuild(arch, spec, info.num_classes, info.in_channels, info.input_size)  # noqa: E731
    table = build_table(graph, settings, count=levels, build=build, calibrate=CALIBRATION_NETWORKS, keep_min=keep_min)
    check = check_table(table, graph, build, n=CHECK_NETWORKS, keep_min=keep_min)
    return {"table": table.to_dict(), "check": check}


def latency_table(cfg: SearchConfig, base: Baseline, say=print) -> tuple[LatencyTable, dict]:
    """The table and its check, from the cache under the storage directory or built (a Ray
    task on a node that can run a trial, when a search has connected)."""
    path = cfg.storage_dir() / f"latency-{_key(cfg, base)}.json"
    if path.is_file():
        say(f"latency: loaded the latency model {path}")
        doc = json.loads(path.read_text())
    else:
        lat = cfg.latency
        say(
            f"latency: timing every layer shape over {lat.table_levels} channel counts ({lat.runtime}, {lat.device}) ..."
        )
        args = (base.info.arch, base.info, lat.settings(), lat.table_levels, cfg.search.keep_min)
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            gpus = cfg.trial.gpu if lat.device.startswith("cuda") else 0
            where = {"num_cpus": cfg.trial.cpu, "num_gpus": gpus}
            if lat.node_resource:  # the measurement machine, one request at a time
                where = {"num_cpus": 0, "num_gpus": gpus, "resources": {lat.node_resource: 1}}
            task = ray.remote(**where, max_retries=cfg.trial.max_failures)
            doc = ray.get(task(build_and_check).remote(*args))
        else:
            doc = build_and_check(*args)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    c = doc["check"]
    say(
        f"latency: model against {c['n']} measured pruned networks: median error "
        f"{100 * c['median_rel_error']:.1f}%, worst {100 * c['worst_rel_error']:.1f}%"
    )
    return LatencyTable.from_dict(doc["table"]), c


LATENCY_DIR = "latency"


def log_latency_model(client, run_id: str, table: LatencyTable, check: dict) -> None:
    """The table (``latency/table.json``, which ``LatencyTable.from_dict`` reads back), its
    check (predicted and measured pairs) and the check's errors as metrics of ``run_id``."""
    if any(a.path.endswith("table.json") for a in client.list_artifacts(run_id, LATENCY_DIR)):
        return  # a resumed search logged it already
    client.log_text(run_id, json.dumps(table.to_dict()), f"{LATENCY_DIR}/table.json")
    client.log_text(run_id, json.dumps(check, indent=1), f"{LATENCY_DIR}/check.json")
    full = table.predict(table.sizes)
    for key, value in (
        ("latency_model_median_rel_error", check["median_rel_error"]),
        ("latency_model_worst_rel_error", check["worst_rel_error"]),
        ("baseline_latency_pred_ms", full),
    ):
        client.log_metric(run_id, key, float(value))
