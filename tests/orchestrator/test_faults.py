"""Faults at a chosen point (orchestrator.faults): parsed from PRUNETUNE_FAULT, struck at the
named trial and epoch, the first time only, so the retry runs through."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from orchestrator import faults


class Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch, tmp_path):
    """os._exit raises instead of ending the test process; the fault folder is the test's."""

    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setenv(faults.DIR_ENV, str(tmp_path))
    return monkeypatch


def test_no_fault_is_set_in_normal_use(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.delenv(faults.DIR_ENV, raising=False)
    assert faults.driver_fault() is None and faults.worker_env() == {}
    faults.maybe_exit_trial("t0", 1)  # returns: nothing to strike
    faults.maybe_exit_promotion(1)


def test_the_driver_fault_names_its_signal_and_after_how_many_trials(monkeypatch):
    monkeypatch.setenv(faults.ENV, "trial=2@1,driver=KILL@4")
    assert faults.driver_fault() == (signal.SIGKILL, 4)
    monkeypatch.setenv(faults.ENV, "driver=INT@3")
    assert faults.driver_fault() == (signal.SIGINT, 3)
    monkeypatch.setenv(faults.ENV, "driver=HOLD@2")
    assert faults.driver_fault() == (faults.HOLD, 2)


def test_a_held_driver_waits_for_the_release_file(monkeypatch, tmp_path):
    import threading
    import time

    monkeypatch.setenv(faults.DIR_ENV, str(tmp_path))
    said, t0 = [], time.monotonic()
    threading.Timer(0.5, (tmp_path / "release").touch).start()
    faults.strike(faults.HOLD, said.append)
    assert time.monotonic() - t0 >= 0.45 and said[-1] == "fault: driver released"
    assert str(tmp_path / "release") in said[0]


def test_the_second_trial_to_reach_the_epoch_exits_once_and_its_retry_runs_through(exits, tmp_path):
    exits.setenv(faults.ENV, "trial=2@1")
    faults.maybe_exit_trial("a", 0)  # another epoch: no arrival counted
    faults.maybe_exit_trial("a", 1)  # first to arrive at epoch 1
    with pytest.raises(Exited):
        faults.maybe_exit_trial("b", 1)
    faults.maybe_exit_trial("b", 1)  # its retry keeps its place, and the fault struck already
    faults.maybe_exit_trial("c", 1)  # third: not named
    assert faults.worker_env() == {faults.ENV: "trial=2@1", faults.DIR_ENV: str(tmp_path)}


def test_a_node_fault_takes_the_raylet_down_first(exits):
    raylet = subprocess.Popen(["sleep", "60"])  # stands in for the node's raylet
    try:
        exits.setenv(faults.ENV, "node=1@2")
        exits.setenv("RAY_RAYLET_PID", str(raylet.pid))
        with pytest.raises(Exited):
            faults.maybe_exit_trial("a", 2)
        assert raylet.wait(timeout=10) == -signal.SIGKILL
    finally:
        raylet.kill()


def test_a_promotion_exits_after_the_named_epoch_the_first_time_only(exits):
    exits.setenv(faults.ENV, "promote=2")
    faults.maybe_exit_promotion(1)
    with pytest.raises(Exited):
        faults.maybe_exit_promotion(2)
    faults.maybe_exit_promotion(2)  # the resumed promotion goes on
