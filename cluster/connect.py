"""Joining Ray: a fresh local instance, or the cluster at an address the user names.

Without an address (neither ``--address`` nor ``RAY_ADDRESS``, which Ray sets for a
submitted job's driver), ``ray.init()`` would join whatever cluster ``ray start`` last left
on this machine (Ray reads it from its temp folder), which may belong to another job and
have no CPUs for us: a local search starts its own instance (``address="local"``). With
an address, an unreachable or refusing cluster is one clear line, and the cluster that
was joined is named.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from trials.errors import UserError, first_line

FAULT_VARS = ("PRUNETUNE_FAULT", "PRUNETUNE_FAULT_DIR")  # fault tests only: forwarded to workers


def _probe(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to HOST:PORT, so a wrong address fails in seconds, not after Ray's
    minute of retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # ray://..., "auto": left to Ray
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def fault_vars() -> dict[str, str]:
    """The fault variables set in this process (fault tests only)."""
    return {k: os.environ[k] for k in FAULT_VARS if k in os.environ}


def _fault_env() -> dict[str, str]:
    """The fault variables set here, to forward to Ray's workers, less those a submitted
    job's runtime env carries already (`prunetune submit` forwards them too, and Ray
    refuses a variable set by both the job and the driver's ``ray.init``)."""
    env = fault_vars()
    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray for a job's driver
    if job:
        carried = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        env = {k: v for k, v in env.items() if k not in carried}
    return env


def connect(address: str | None, say=print) -> None:
    """Start or join Ray once per process."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"log_to_driver": False, "logging_level": logging.WARNING}
    env = _fault_env()
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    named = address or os.environ.get("RAY_ADDRESS")  # a Ray job's driver gets its cluster this way
    if not named:
        ray.init(address="local", include_dashboard=False, **kwargs)
        return
    address = named
    _probe(address)
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds here; all mean "not joined"
        first = first_line(exc)
        hint = " (is RAY_AUTH_MODE=token with the cluster's RAY_AUTH_TOKEN set?)" if "token" in first.lower() else ""
        raise UserError(f"--address {address}: could not join the Ray cluster: {first}{hint}") from None
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    say(f"joined the Ray cluster at {address}: {nodes} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")
