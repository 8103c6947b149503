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
from trials.latency_table import LatencyTable, build_table, check_table, solver_for

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
        "fit": solver_for(cfg.latency.runtime),  # the calibration's solver (a table cached with another is rebuilt)
        "round_to": cfg.search.round_to,  # the multiple its calibration and check networks keep
    }
    return hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]


def build_and_check(
    arch: str, info, settings: LatencySettings, levels: int, keep_min: float, round_to: int = 1
) -> dict:
    """Build the table for ``arch`` (weights do not change timings) and check it, on random
    networks that keep multiples of ``round_to`` as the search's do; runs where it is
    called (a Ray task, or this process)."""
    from trials.groups import build_graph
    from trials.models import create_model
    from trials.prune import rebuild

    model = create_model(arch, num_classes=info.num_classes, in_channels=info.in_channels).eval()
    shape = (info.in_channels, info.input_size, info.input_size)
    graph = build_graph(model, shape, arch)
    build = lambda spec: rebuild(arch, spec, info.num_classes, info.in_channels, info.input_size)  # noqa: E731
    table = build_table(
        graph, settings, count=levels, build=build, calibrate=CALIBRATION_NETWORKS, keep_min=keep_min, round_to=round_to
    )
    check = check_table(table, graph, build, n=CHECK_NETWORKS, keep_min=keep_min, round_to=round_to)
    return {"table": table.to_dict(), "check": check}


def where_measured(cfg: SearchConfig, fn, *args):
    """``fn(*args)`` where latency is measured: a Ray task on the node offering
    ``latency.node_resource`` (one request at a time, no CPU held), else on a node that can
    run a trial, when a search has connected; in this process otherwise."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return fn(*args)
    lat = cfg.latency
    gpus = cfg.trial.gpu if lat.device.startswith("cuda") else 0
    where = {"num_cpus": cfg.trial.cpu, "num_gpus": gpus}
    if lat.node_resource:  # the measurement machine
        where = {"num_cpus": 0, "num_gpus": gpus, "resources": {lat.node_resource: 1}}
    return ray.get(ray.remote(**where, max_retries=cfg.trial.max_failures)(fn).remote(*args))


def latency_table(cfg: SearchConfig, base: Baseline, say=print) -> tuple[LatencyTable, dict]:
    """The table and its check, from the cache under the storage directory or built (a Ray
    task on a node that can run a trial, when a search has connected). ``cfg``'s
    ``round_to`` is a number here (``resolve_round_to`` first): its networks keep it."""
    path = cfg.storage_dir() / f"latency-{_key(cfg, base)}.json"
    if path.is_file():
        say(f"latency: loaded the latency model {path}")
        doc = json.loads(path.read_text())
    else:
        lat = cfg.latency
        say(
            f"latency: timing every layer shape over {lat.table_levels} channel counts ({lat.runtime}, {lat.device}) ..."
        )
        round_to = cfg.search.round_to if isinstance(cfg.search.round_to, int) else 1
        args = (base.info.arch, base.info, lat.settings(), lat.table_levels, cfg.search.keep_min, round_to)
        doc = where_measured(cfg, build_and_check, *args)
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
        ("latency_model_median_abs_rel_error", check.get("median_abs_rel_error", float("nan"))),
        ("baseline_latency_pred_ms", full),
    ):
        client.log_metric(run_id, key, float(value))


def _aligned(arch: str, info, settings: LatencySettings) -> dict:
    from trials.alignment import auto_round_to
    from trials.groups import build_graph
    from trials.models import create_model

    model = create_model(arch, num_classes=info.num_classes, in_channels=info.in_channels).eval()
    graph = build_graph(model, (info.in_channels, info.input_size, info.input_size), arch)
    _, report = auto_round_to(graph, settings)
    return report


def _round_to_path(cfg: SearchConfig, base: Baseline):
    """Where ``round_to: auto``'s report is cached: keyed like the table, and by the rule that
    picks the layer it times (a report from the widest-layer rule is measured again)."""
    from trials.alignment import NARROW

    return cfg.storage_dir() / f"round-to-{_key(cfg, base)}-narrow{NARROW}.json"


def resolve_round_to(cfg: SearchConfig, base: Baseline, say=print):
    """``search.round_to: auto`` measured (where latency is measured, cached beside the
    baseline) and put in: the config with the chosen multiple (``log_round_to`` logs what
    was measured). Other configs come back as given."""
    if cfg.search.round_to != "auto":
        return cfg
    path = _round_to_path(cfg, base)
    if path.is_file():
        report = json.loads(path.read_text())
    else:
        lat = cfg.latency
        say(f"round_to auto: timing one layer over its widths ({lat.runtime}, {lat.device}) ...")
        report = where_measured(cfg, _aligned, base.info.arch, base.info, lat.settings())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))
    m = int(report["round_to"])
    steps = ", ".join(f"{k}: {'step' if e['real'] else 'none'}" for k, e in report["evidence"].items())
    say(f"round_to auto: channel multiples of {m} ({report['layer']}; latency steps by multiple {steps or '-'})")
    return cfg.model_copy(update={"search": cfg.search.model_copy(update={"round_to": m})})


def log_round_to(cfg: SearchConfig, base: Baseline, client, run_id: str) -> None:
    """What ``round_to: auto`` measured (``resolve_round_to`` first, with this ``cfg``: its
    cached report) on ``run_id``: metric ``round_to_auto`` and ``latency/round_to.json``;
    nothing for a given multiple."""
    if cfg.search.round_to == "auto":
        report = json.loads(_round_to_path(cfg, base).read_text())
        client.log_metric(run_id, "round_to_auto", int(report["round_to"]))
        client.log_text(run_id, json.dumps(report, indent=1), f"{LATENCY_DIR}/round_to.json")
