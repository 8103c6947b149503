"""Start-up noise (MLflow's database messages, Optuna's "A new study created", Ray's INFO
lines), held back to warnings unless ``--verbose``."""

from __future__ import annotations

import logging
import os

NOISY = ("mlflow", "alembic", "optuna", "ray", "ray.tune", "ray.train")  # their INFO lines at start-up

_held_back = False  # what the command asked for, in this process (Ray's workers log to files)


def quiet(verbose: bool) -> None:
    """Hold start-up noise back unless ``verbose``; MLflow's level reaches subprocesses
    through its environment variable."""
    global _held_back
    _held_back = not verbose
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow configures its logger
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_optuna() -> None:
    """Importing Optuna sets its logger to INFO, over what ``quiet`` set before the import:
    called where a study is made (the searcher), once Optuna is loaded."""
    if _held_back:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
