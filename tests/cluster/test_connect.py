"""Joining Ray (cluster.connect): an address nothing answers at is one line in seconds."""

from __future__ import annotations

import time

import pytest

from cluster.connect import _probe, connect
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
