"""Which searches may start and which may go on: one name (and storage) is one search;
``--resume`` continues it only under the config it started with. Checked before any
baseline is trained or cluster joined."""

from __future__ import annotations

import ast

from orchestrator.config import SearchConfig, flat_config, validate_config
from orchestrator.readback import stored_config, stored_search
from orchestrator.store import param_value
from trials.errors import UserError

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
    return [k for k, v in flat.items() if k in stored and not k.startswith(RESUMABLE) and stored[k] != param_value(v)]


def _parsed(text: str):
    """A stored param back as the value it was (``str()`` of a bool, number, list or None)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _with_stored(cfg: SearchConfig, stored: dict[str, str], keys: list[str]) -> SearchConfig:
    data = cfg.model_dump(mode="json")
    for key in keys:
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[last] = _parsed(stored[key])
    kept = validate_config(data)
    kept._given = cfg.given
    return kept


def resume_config(cfg: SearchConfig, say=print) -> SearchConfig:
    """The config a ``--resume`` runs under: the stored search's, where the user left a
    setting unset and its default has changed since (a default is not a choice); refused
    (exit 2) where the user set something else than the search started with. Checked
    before any baseline is trained or cluster joined."""
    stored = stored_config(cfg.tracking.uri, cfg.name, cfg.storage_uri()) or {}
    flat = flat_config(cfg.model_dump(mode="json"))
    changes = resume_changes(stored, flat)
    given = cfg.given
    refused = [k for k in changes if given is None or k in given]
    if refused:
        raise UserError(
            f"--resume: the config differs from the one the search stored at {cfg.storage_uri()} started with: "
            + "; ".join(f"{k} {stored[k]} -> {flat[k]}" for k in refused)
            + ". A resumed search runs its own config (only cluster, tracking, the trials' resources and "
            "data.root may change); to change it, start a new search (another name or storage)"
        )
    if not changes:
        return cfg
    say("--resume: kept the search's own " + ", ".join(f"{k}={stored[k]}" for k in changes) + " (unset here)")
    return _with_stored(cfg, stored, changes)


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
