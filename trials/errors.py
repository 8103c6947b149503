"""Errors a person can act on.

Everything that is the user's fault (a bad name, path, spec or checkpoint) raises
``UserError``; the CLI prints its message and exits with status 2. A trial that
runs but cannot produce a result (NaN loss) raises ``TrialFailed``.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message names the field and the problem."""


class TrialFailed(RuntimeError):
    """A trial ran but produced no usable result (for instance a NaN loss)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line (its type name when it has no message): what a one-line
    error shows of an engine's multi-line traceback text."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
