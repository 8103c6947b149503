"""Faults injected at a chosen point, for the fault tests (never set in normal use).

``PRUNETUNE_FAULT`` holds comma-separated items:

- ``driver=INT@N`` / ``driver=KILL@N``: the search's driver sends itself SIGINT (Ctrl-C)
  or SIGKILL right after its N-th trial finished;
- ``driver=HOLD@N``: the driver stops right after its N-th trial finished (its MLflow
  writer thread goes on) until the file ``release`` appears under ``PRUNETUNE_FAULT_DIR``,
  so a test can change the world (stop a server) at a known point of the search;
- ``trial=N@K``: the worker of the N-th trial to report epoch K (Tune's trial ids carry
  no number: arrivals are counted in files under ``PRUNETUNE_FAULT_DIR``) exits at once
  after that report, the first time only;
- ``node=N@K``: the same, but the worker first kills its node's raylet (SIGKILL): the
  whole node is lost, as a machine that goes away mid-trial;
- ``promote=K``: a promotion's rank-0 worker exits after the checkpoint of epoch K, the
  first time only.

"First time only" is kept by a marker file under ``PRUNETUNE_FAULT_DIR`` (required for
worker faults), so the retry that follows runs through. The driver forwards both
variables to Ray's workers (``cluster.connect``), and `prunetune submit` to its job.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV, DIR_ENV = "PRUNETUNE_FAULT", "PRUNETUNE_FAULT_DIR"


def _items() -> dict[str, str]:
    raw = os.environ.get(ENV, "")
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


HOLD = "HOLD"


def driver_fault() -> tuple[int | str, int] | None:
    """(a signal or ``HOLD``, after how many finished trials) for the driver, or None."""
    spec = _items().get("driver")
    if not spec:
        return None
    name, after = spec.split("@")
    return (HOLD if name == HOLD else getattr(signal, f"SIG{name}")), int(after)


def strike(action: int | str, say=print, timeout: float = 600.0) -> None:
    """The driver's fault: a signal to itself, or a hold until ``release`` is there."""
    if action != HOLD:
        os.kill(os.getpid(), action)
        return
    release = Path(os.environ[DIR_ENV]) / "release"
    say(f"fault: driver held until {release} exists")
    deadline = time.monotonic() + timeout
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    say("fault: driver released")


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


def _arrival(tag: str, trial_id: str) -> int:
    """The place of ``trial_id`` among the trials that arrived at ``tag`` (1 for the first),
    kept in files created atomically; a trial that comes back (a retry) keeps its place."""
    root = Path(os.environ[DIR_ENV])
    i = 0
    while True:
        i += 1
        path = root / f"arrival-{tag}-{i}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if path.read_text() == trial_id:
                return i
            continue
        with os.fdopen(fd, "w") as f:
            f.write(trial_id)
        return i


def maybe_exit_trial(trial_id: str, epoch: int) -> None:
    """Exit this worker process (``trial=N@K``), or take its whole node down with it
    (``node=N@K``), when the fault names this trial and epoch."""
    items = _items()
    if DIR_ENV not in os.environ:
        return
    for kind in ("trial", "node"):
        spec = items.get(kind)
        if not spec:
            continue
        number, at = spec.split("@")
        if epoch != int(at) or _arrival(f"{kind}-{at}", trial_id) != int(number):
            continue
        if not _first_time(f"{kind}-{number}-{at}"):
            continue
        raylet = os.environ.get("RAY_RAYLET_PID")
        if kind == "node" and raylet:
            os.kill(int(raylet), signal.SIGKILL)
        os._exit(1)


def maybe_exit_promotion(epoch: int) -> None:
    spec = _items().get("promote")
    if spec and epoch == int(spec) and _first_time(f"promote-{spec}"):
        os._exit(1)


def worker_env() -> dict[str, str]:
    """The fault settings to hand to Ray's workers (empty in normal use)."""
    return {k: os.environ[k] for k in (ENV, DIR_ENV) if k in os.environ}
