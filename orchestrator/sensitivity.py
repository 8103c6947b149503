"""The sensitivity map of a baseline: one job per channel group, as Ray tasks over the
cluster when Ray is up (a search), in this process otherwise (``prunetune prune``),
cached beside the baseline so that it is computed once per baseline and setting."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.baseline import Baseline
from orchestrator.config import SearchConfig

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

from trials.sensitivity import SensitivityMap, base_score, group_curve, keep_levels


def _key(cfg: SearchConfig, base: Baseline, levels: tuple[float, ...], criterion: str, calib: int) -> str:
    h = hashlib.sha256()
    for name, t in sorted(base.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    setting = {
        "arch": cfg.model.arch,
        "data": cfg.data_config().__dict__,
        "levels": levels,
        "criterion": criterion,
        "calib": calib,
        "val_batches": cfg.sensitivity.val_batches,
        "round_to": cfg.search.round_to,
    }
    h.update(json.dumps(setting, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _setting(cfg: SearchConfig) -> tuple[tuple[float, ...], str, int]:
    levels = keep_levels(cfg.search.keep_min, cfg.sensitivity.levels)
    criterion = cfg.trial.criterion if cfg.trial.criterion in ("l1", "l2", "bn", "random") else "l1"
    return levels, criterion, max(1, cfg.trial.adaptive_bn_batches)


def cache_path(cfg: SearchConfig, base: Baseline) -> Path:
    """Where the map of this baseline and setting is cached: under the storage root, shared
    by every search of the storage (the key hashes the baseline's weights and the setting),
    so a second search of a baseline, under any name, reads the first one's map."""
    key = _key(cfg, base, *_setting(cfg))
    return cfg.storage_dir().parent / "sensitivity" / f"{key}.json"


def _read(path: Path) -> SensitivityMap | None:
    """The map cached at ``path``, or None where none is."""
    return SensitivityMap.from_dict(json.loads(path.read_text())) if path.is_file() else None


def sensitivity_map(cfg: SearchConfig, base: Baseline, graph, say=print) -> SensitivityMap:
    """The baseline's map, from the cache under the storage root or computed."""
    path = cache_path(cfg, base)
    cached = _read(path)
    if cached is not None:
        say(f"sensitivity: loaded {path}")
        return cached
    levels, criterion, calib = _setting(cfg)
    info, data = base.info, cfg.data_config()
    state = {k: v.detach().cpu().clone() for k, v in base.model.state_dict().items()}
    kw = {
        "criterion": criterion,
        "round_to": cfg.search.round_to,
        "calib_batches": calib,
        "val_batches": cfg.sensitivity.val_batches,
    }
    jobs = [(g.name, g.channels) for g in graph.groups]
    say(f"sensitivity: {len(jobs)} groups x {len(levels)} keep ratios, adaptive BN on {calib} batches ...")
    curves = _run(cfg, info, state, jobs, levels, data, kw)
    top = base_score(info.arch, info, state, data, val_batches=cfg.sensitivity.val_batches)
    smap = SensitivityMap(
        levels + (1.0,),
        {name: curve + [top] for (name, _), curve in zip(jobs, curves)},
        top,
        dict(jobs),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(smap.to_dict()))
    say(f"sensitivity: saved to {path}")
    return smap


def search_map(cfg: SearchConfig, base: Baseline, graph, say=print) -> tuple[SearchConfig, SensitivityMap | None]:
    """The map a search starts from, and the config it runs with: computed (or read from
    the cache) where ``search.warm_start_methods`` names sensitivity; with
    ``search.cached_sensitivity``, read where cached, the search then starting from it as
    if it were named; else none (nothing is computed)."""
    if "sensitivity" in cfg.search.warm_start_methods:
        return cfg, sensitivity_map(cfg, base, graph, say)
    path = cache_path(cfg, base) if cfg.search.cached_sensitivity else None
    cached = _read(path) if path is not None else None
    if cached is None:
        return cfg, None
    say(f"sensitivity: the map cached at {path} starts the sweep (search.cached_sensitivity)")
    search = cfg.search.model_copy(update={"warm_start_methods": ["sensitivity"]})
    return cfg.model_copy(update={"search": search}), cached


def _run(cfg: SearchConfig, info, state, jobs, levels, data, kw) -> list[list[float]]:
    ray = sys.modules.get("ray")  # a search has connected; `prunetune prune` never loads Ray
    if ray is None or not ray.is_initialized():
        return [group_curve(info.arch, info, state, n, c, levels, data, **kw) for n, c in jobs]
    device = "cuda" if cfg.trial.gpu > 0 else "cpu"  # Ray gives the task its GPU
    task = ray.remote(num_cpus=cfg.trial.cpu, num_gpus=cfg.trial.gpu, max_retries=cfg.trial.max_failures)(group_curve)
    ref = ray.put(state)
    futures = [task.remote(info.arch, info, ref, n, c, levels, data, device=device, **kw) for n, c in jobs]
    return ray.get(futures)


SENSITIVITY_DIR = "sensitivity"  # a run's sensitivity map: map.json, table.json, heatmap.png


def log_sensitivity(client: MlflowClient, run_id: str, smap) -> None:
    """A sensitivity map on ``run_id``: the document (``map.json``, which ``SensitivityMap``
    reads back), a table (per group, the monotone score at each keep ratio) and a heatmap."""
    from orchestrator.plots import write_sensitivity_png

    if any(a.path.endswith("map.json") for a in client.list_artifacts(run_id, SENSITIVITY_DIR)):
        return
    client.log_text(run_id, json.dumps(smap.to_dict(), indent=1), f"{SENSITIVITY_DIR}/map.json")
    client.log_text(run_id, json.dumps(smap.table()), f"{SENSITIVITY_DIR}/table.json")
    with tempfile.TemporaryDirectory() as tmp:
        png = write_sensitivity_png(list(smap.levels), smap.scores, smap.base, Path(tmp) / "heatmap.png")
        client.log_artifact(run_id, str(png), SENSITIVITY_DIR)
