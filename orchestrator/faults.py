"""Faults injected at a chosen point, for the fault tests (never set in normal use).

``PRUNETUNE_FAULT`` holds comma-separated items:

- ``driver=INT@N`` / ``driver=KILL@N``: the search's driver sends itself SIGINT (Ctrl-C)
  or SIGKILL right after its N-th trial finished;
- ``trial=N@K``: the worker running Tune trial number N (the ``_0000N`` of its id) exits
  at once after reporting epoch K, the first time only;
- ``promote=K``: a promotion's rank-0 worker exits after the checkpoint of epoch K, the
  first time only.

"First time only" is kept by a marker file under ``PRUNETUNE_FAULT_DIR`` (required for
worker faults), so the retry that follows runs through. The driver forwards both
variables to Ray's workers (``cluster.connect``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV, DIR_ENV = "PRUNETUNE_FAULT", "PRUNETUNE_FAULT_DIR"


def _items() -> dict[str, str]:
    raw = os.environ.get(ENV, "")
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


def driver_fault() -> tuple[int, int] | None:
    """(signal, after how many finished trials) for the driver, or None."""
    spec = _items().get("driver")
    if not spec:
        return None
    name, after = spec.split("@")
    return getattr(signal, f"SIG{name}"), int(after)


def _first_time(tag: str) -> bool:
    root = os.environ.get(DIR_ENV)
    if not root:
        return False
    mark = Path(root) / f"fault-{tag}"
    try:
        mark.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def maybe_exit_trial(trial_id: str, epoch: int) -> None:
    """Exit this worker process if a ``trial=N@K`` fault names this trial and epoch."""
    spec = _items().get("trial")
    if not spec:
        return
    number, at = spec.split("@")
    if trial_id.rsplit("_", 1)[-1].lstrip("0") == number.lstrip("0") and epoch == int(at):
        if _first_time(f"trial-{number}-{at}"):
            os._exit(1)


def maybe_exit_promotion(epoch: int) -> None:
    spec = _items().get("promote")
    if spec and epoch == int(spec) and _first_time(f"promote-{spec}"):
        os._exit(1)


def worker_env() -> dict[str, str]:
    """The fault settings to hand to Ray's workers (empty in normal use)."""
    return {k: os.environ[k] for k in (ENV, DIR_ENV) if k in os.environ}
