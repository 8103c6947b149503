"""Joining Ray (cluster.connect): an address nothing answers at is one line in seconds."""

from __future__ import annotations

import json
import time

import pytest

from cluster.connect import _fault_env, _probe, connect
from cluster.local import free_port
from trials.errors import UserError


def test_an_address_nothing_answers_at_is_one_line_before_ray_is_started():
    import ray

    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(UserError, match=f"--address {address}: no Ray cluster answers there"):
        connect(address)
    assert time.monotonic() - started < 10 and not ray.is_initialized()


def test_addresses_ray_resolves_itself_are_left_to_it():
    for address in ("auto", "ray://head:10001x", "localhost"):
        _probe(address)  # nothing to probe: returns


def test_fault_variables_go_to_the_workers_unless_the_job_carries_them(monkeypatch):
    """A submitted job's runtime env carries them already (Ray refuses the same variable
    from the job and from the driver's ``ray.init``); a plain driver forwards them."""
    monkeypatch.setenv("PRUNETUNE_FAULT", "promote=2")
    monkeypatch.setenv("PRUNETUNE_FAULT_DIR", "/tmp/f")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert _fault_env() == {"PRUNETUNE_FAULT": "promote=2", "PRUNETUNE_FAULT_DIR": "/tmp/f"}
    job = {"runtime_env": {"working_dir": "gcs://x.zip", "env_vars": {"PRUNETUNE_FAULT": "promote=2"}}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    assert _fault_env() == {"PRUNETUNE_FAULT_DIR": "/tmp/f"}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": None}))
    assert set(_fault_env()) == {"PRUNETUNE_FAULT", "PRUNETUNE_FAULT_DIR"}
