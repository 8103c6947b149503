"""The trial as Ray runs it: what a trial worker process has to import."""

from __future__ import annotations

import subprocess
import sys

DRIVER_ONLY = (
    "mlflow",
    "plotly",
    "matplotlib",
    "orchestrator.search",
    "orchestrator.tracking",
    "orchestrator.progress",
)


def test_a_trial_worker_imports_none_of_the_drivers_stack():
    # Unpickling the trainable in a fresh worker imports its module: that is paid at every
    # trial slot's start, so it must stay Ray + torch + trials.
    code = f"import sys, orchestrator.trainable; print([m for m in {DRIVER_ONLY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_search_hands_tune_the_light_trainable():
    from orchestrator import search, trainable

    assert search.trainable_fn is trainable.trainable
    assert trainable.trainable.__module__ == "orchestrator.trainable"
