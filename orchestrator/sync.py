"""What a search saved while MLflow was unreachable: the spill file under the search's
storage folder, and ``prunetune sync``, which writes it once MLflow is back."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.config import SearchConfig
from orchestrator.tracking import SearchRecord
from orchestrator.writer import Spill, replay_spill
from trials.errors import UserError


def patience() -> float:
    """Seconds to wait for MLflow at the end of a search before saving to the spill file."""
    return float(os.environ.get("PRUNETUNE_MLFLOW_PATIENCE", "300"))


def spill_of(cfg: SearchConfig) -> Spill:
    return Spill(cfg.storage_dir() / "mlflow-pending.json", experiment=cfg.name)


def sync(cfg_name: str, storage: str | Path, uri: str | None, say=print) -> int:
    """Write a search's spill file to MLflow (``prunetune sync``); returns the writes done."""
    path = Path(storage) / cfg_name / "mlflow-pending.json"
    if not path.is_file():
        say(f"nothing to sync: {path} does not exist (every result of '{cfg_name}' is in MLflow)")
        return 0
    spill = Spill(path)

    def open_record(experiment: str, parent_run_id: str) -> SearchRecord:
        if not parent_run_id:
            raise UserError(f"{path} names no search run: it predates prunetune sync")
        return SearchRecord(uri, experiment, parent_run_id)

    return replay_spill(spill, open_record, say)
