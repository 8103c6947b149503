"""Buffered, ordered writes to the MLflow record, in a background thread.

The driver's Tune callback hands each write (a ``SearchRecord`` method name and its
arguments) to a ``BufferedWriter``; a thread performs them in order, so Tune's event loop
never waits on the tracking server. Failures are told apart:

- an outage (connection refused, timeout, HTTP 5xx, a locked database) keeps the write at
  the head of the queue and retries it every few seconds: later writes wait behind it, so
  the record stays in order;
- any other failure (HTTP 4xx, a value MLflow refuses) can never succeed: it is reported
  once, with the trial it belongs to, set aside in the spill file, and the writer goes on.

``drain`` retries at the end; what is still queued then goes to the spill file, a JSON
file under the search's directory that ``replay_spill`` (``prunetune sync``, or
``--resume``) writes to MLflow later, in order, once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from trials.errors import first_line

SPILL_FORMAT = "prunetune-spill/1"


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the tracking store is unreachable or overloaded (worth a
    retry), False when the write itself is refused (a retry would fail the same way)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (OSError, TimeoutError)):  # ConnectionError, requests' errors, a full disk
        return True
    try:
        import requests

        if isinstance(exc, requests.RequestException):
            return True
    except ImportError:  # pragma: no cover - mlflow depends on requests
        pass
    try:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):  # a locked or vanished sqlite file
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, MlflowException):
        return exc.get_http_status_code() >= 500
    return False


def _trial_of(args: tuple) -> str:
    return str(args[0]) if args else "?"


class Spill:
    """The spill file of one search: writes not yet in MLflow, in order, and writes MLflow
    refused (kept, never dropped)."""

    def __init__(self, path: Path, *, experiment: str = "", parent_run_id: str = "") -> None:
        self.path, self.experiment, self.parent_run_id = Path(path), experiment, parent_run_id

    def read(self) -> dict:
        if not self.path.is_file():
            return {"format": SPILL_FORMAT, "writes": [], "rejected": [], "finished": False}
        data = json.loads(self.path.read_text())
        if isinstance(data, list):  # the format before prunetune-spill/1: a bare list of writes
            data = {"format": SPILL_FORMAT, "writes": data, "rejected": []}
        data.setdefault("rejected", [])
        data.setdefault("finished", False)
        return data

    def save(self, data: dict) -> None:
        """Write atomically (a temp file renamed), so a crash never leaves half a file."""
        data = {
            **data,
            "format": SPILL_FORMAT,
            "experiment": data.get("experiment") or self.experiment,
            "parent_run_id": data.get("parent_run_id") or self.parent_run_id,
        }
        if not data["writes"] and not data["rejected"] and not data.get("finished"):
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, default=str))
        os.replace(tmp, self.path)

    def add(self, *, writes: list[dict] = (), rejected: list[dict] = (), finished: bool | None = None) -> None:
        data = self.read()
        data["writes"] += list(writes)
        data["rejected"] += list(rejected)
        if finished is not None:
            data["finished"] = finished
        self.save(data)


class BufferedWriter:
    """Performs ``getattr(target, op)(*args)`` for each queued write, in order, in a thread.

    ``open_target`` builds the target (a ``SearchRecord``) on first use and again after a
    failure, so a restarted tracking server gets a fresh client.
    """

    def __init__(
        self,
        open_target: Callable[[], object],
        spill: Spill,
        *,
        say: Callable[[str], None] = print,
        retry_every: float = 2.0,
        on_write: Callable[[str, tuple, float, float], None] | None = None,
    ) -> None:
        self.open_target, self.spill, self.say = open_target, spill, say
        self.retry_every, self.on_write = retry_every, on_write
        self.pending: deque = deque()  # (op, args) not yet written
        self.rejected: list[dict] = []  # writes MLflow refused (also in the spill file)
        self.outage_since: float | None = None
        self._target = None
        self._init_thread()

    def _init_thread(self) -> None:
        self._lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:  # Tune pickles its callbacks: no client, no thread
        state = self.__dict__.copy()
        if self._lock is not None:
            with self._lock:
                state["pending"] = deque(self.pending)
        for k in ("_target", "_lock", "_wake", "_thread", "say", "on_write", "open_target"):
            state[k] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.say = print
        self._init_thread()

    def put(self, op: str, *args) -> None:
        self.pending.append((op, args))
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="prunetune-mlflow", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(timeout=self.retry_every)
            self._wake.clear()
            if self.pending and not self.flush():
                time.sleep(self.retry_every)

    def flush(self) -> bool:
        """Write what is queued, in order; False (the rest kept) while MLflow is down."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        while self.pending:
            op, args = self.pending[0]
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                if self._target is None:
                    self._target = self.open_target()
                getattr(self._target, op)(*args)
            except Exception as exc:  # noqa: BLE001 - sorted into outage or refusal below
                self._target = None
                if is_outage(exc):
                    if self.outage_since is None:
                        self.outage_since = time.time()
                        self.say(f"MLflow unreachable ({type(exc).__name__}); buffering results and retrying")
                    return False
                self._reject(op, args, exc)
            finally:
                if self.on_write is not None:
                    self.on_write(op, args, time.perf_counter() - t0, time.thread_time() - c0)
            self.pending.popleft()
        if self.outage_since is not None:
            self.say(f"MLflow reachable again after {time.time() - self.outage_since:.0f} s; buffer written")
            self.outage_since = None
        return True

    def _reject(self, op: str, args: tuple, exc: BaseException) -> None:
        entry = {"op": op, "args": list(args), "error": f"{type(exc).__name__}: {first_line(exc)}"}
        self.rejected.append(entry)
        self.say(
            f"MLflow refused the {op} write of trial {_trial_of(args)} ({entry['error']}); "
            f"kept in {self.spill.path}, going on"
        )
        try:
            self.spill.add(rejected=[entry])
        except OSError as err:  # the write is still in self.rejected
            self.say(f"could not save the refused write to {self.spill.path}: {err}")

    def stop(self, timeout: float) -> None:
        """Stop the thread after its current write."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout)

    def drain(self, timeout: float) -> bool:
        """At the end: retry for up to ``timeout`` s, then save what is left to the spill file."""
        deadline = time.time() + timeout
        self.stop(timeout)
        while not self.flush() and time.time() < deadline:
            time.sleep(self.retry_every)
        if not self.pending:
            return True
        writes = [{"op": op, "args": list(args)} for op, args in self.pending]
        self.spill.add(writes=writes)
        self.say(
            f"MLflow still unreachable: {len(writes)} writes saved to {self.spill.path}; "
            f"`prunetune sync` writes them once it is back"
        )
        self.pending.clear()
        return False


def replay_spill(spill: Spill, open_record: Callable[[str, str], object], say: Callable[[str], None] = print) -> int:
    """Write a spill file's writes to MLflow in order, once, and remove them from the file.

    ``open_record(experiment, parent_run_id)`` gives the ``SearchRecord`` to write to. Stops
    at the first outage (what is left stays in the file); a refused write is kept under
    ``rejected``. When the spilled search had ended, its parent run is closed with the
    final front. Returns how many writes reached MLflow.
    """
    data = spill.read()
    writes, rejected = list(data["writes"]), list(data["rejected"])
    if not writes and not rejected and not data.get("finished"):
        return 0
    record = open_record(data.get("experiment", ""), data.get("parent_run_id", ""))
    done, left, still_rejected = 0, [], []
    queue = [(w, False) for w in writes] + [(w, True) for w in rejected]
    for i, (w, _) in enumerate(queue):
        try:
            getattr(record, w["op"])(*w["args"])
            done += 1
        except Exception as exc:  # noqa: BLE001 - sorted into outage or refusal
            if is_outage(exc):
                left = [q for q, r in queue[i:] if not r]
                still_rejected += [q for q, r in queue[i:] if r]
                break
            still_rejected.append({**w, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    finished = bool(data.get("finished"))
    if not left and finished:  # the search had ended: close its run with the final front
        record.finish()
        finished = False
    spill.save({**data, "writes": left, "rejected": still_rejected, "finished": finished})
    say(
        f"replayed {done} of {len(queue)} saved MLflow writes from {spill.path}"
        + (f"; {len(left)} wait for MLflow" if left else "")
        + (f"; {len(still_rejected)} refused (kept in the file)" if still_rejected else "")
    )
    return done
