"""Submit a search or a promotion to a Ray cluster as a Ray job (Ray Jobs SDK).

The job's runtime environment carries the project's packages and the resolved config
(staged into a small folder: no virtualenv, no results), so the cluster needs only the
dependencies installed, not this checkout. Token authentication: the Jobs client sends
``RAY_AUTH_TOKEN`` from this process's environment.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path

from cluster.connect import fault_vars
from trials.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "trials", "cluster", "examples")
JOB_CONFIG = "prunetune-job.yaml"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def stage(config_text: str | None) -> Path:
    """A folder with the project's packages (and the job's config), for the runtime env."""
    where = Path(tempfile.mkdtemp(prefix="prunetune-job-"))
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, where / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    if config_text is not None:
        (where / JOB_CONFIG).write_text(config_text)
    return where


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address '{address}': submit needs the head's dashboard URL, like http://HEAD:8265")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection and authentication errors alike
        raise UserError(f"cannot reach the Ray Jobs API at {address}: {exc}") from None


def submit(
    entrypoint_args: list[str], address: str, config_text: str | None = None, follow: bool = True, say=print
) -> tuple[str, str]:
    """Submit ``python -m orchestrator.job_entry ARGS`` as a job; returns (job id, final status)."""
    client = _client(address)
    staged = stage(config_text)
    try:
        entrypoint = " ".join(["python", "-m", "orchestrator.job_entry", *map(shlex.quote, entrypoint_args)])
        runtime_env: dict = {"working_dir": str(staged)}
        faults = fault_vars()
        if faults:
            runtime_env["env_vars"] = faults
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    except RuntimeError as exc:  # the Jobs API refused it (no agent, runtime env upload, auth)
        raise UserError(f"the Ray cluster at {address} refused the job: {str(exc).splitlines()[0][:500]}") from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    say(f"submitted job {job_id} to {address}: {entrypoint}")
    if not follow:
        return job_id, "PENDING"
    import asyncio

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())
    status = str(client.get_job_status(job_id))
    while status.split(".")[-1] not in TERMINAL:
        time.sleep(1.0)
        status = str(client.get_job_status(job_id))
    status = status.split(".")[-1]
    say(f"job {job_id}: {status}")
    return job_id, status


def submit_search(config_text: str, address: str, tracking_uri: str | None, follow: bool = True) -> tuple[str, str]:
    """A search of the resolved config ``config_text`` (validated by the caller)."""
    args = ["search", JOB_CONFIG] + (["--tracking-uri", tracking_uri] if tracking_uri else [])
    return submit(args, address, config_text, follow)


def submit_promote(promote_args: list[str], address: str, follow: bool = True) -> tuple[str, str]:
    return submit(["promote", *promote_args], address, None, follow)
