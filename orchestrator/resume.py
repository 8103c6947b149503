"""Which searches may start and which may go on: one name (and storage) is one search;
``--resume`` continues it only under the config it started with. Checked before any
baseline is trained or cluster joined."""

from __future__ import annotations

from orchestrator.config import SearchConfig
from orchestrator.readback import stored_config, stored_search
from orchestrator.tracking import param_value
from trials.errors import UserError


def flat_config(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat_config(v, key + ".") if isinstance(v, dict) else {key: v})
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
    changes = resume_changes(stored or {}, flat_config(cfg.model_dump(mode="json")))
    if changes:
        raise UserError(
            f"--resume: the config differs from the one the search stored at {cfg.storage_uri()} started with: "
            + "; ".join(changes)
            + ". A resumed search runs its own config (only cluster, tracking, the trials' resources and "
            "data.root may change); to change it, start a new search (another name or storage)"
        )


def _tune_dirs(cfg: SearchConfig) -> list[str]:
    """The Tune runs already stored for this search (local storage only: a URI is checked
    through MLflow's record of it)."""
    if "://" in cfg.storage:
        return []
    return sorted(p.name for p in cfg.storage_dir().glob("tune*") if (p / "tuner.pkl").is_file())


def check_new(cfg: SearchConfig) -> None:
    """Refuse (exit 2) to start a search where one of the same name and storage exists: it
    would overwrite Tune's state and mix its trials into the first search's record."""
    found = stored_search(cfg.tracking.uri, cfg.name, cfg.storage_uri())
    dirs = _tune_dirs(cfg)
    if found is None and not dirs:
        return
    where = f"MLflow run {found.info.run_id}" if found is not None else f"Tune runs {', '.join(dirs)}"
    raise UserError(
        f"name: a search named '{cfg.name}' already exists at {cfg.storage_uri()} ({where}). "
        f"Continue it with `prunetune search CONFIG --resume`, or start a new one under another name "
        f"(`--set name={cfg.name}-2`) or storage (`--set storage=DIR`)"
    )
