"""Errors a person can act on (trials.errors)."""

from __future__ import annotations

from trials.errors import TrialFailed, UserError, first_line


def test_first_line_is_what_a_one_line_error_shows_of_a_traceback_text():
    assert first_line(RuntimeError("  Failed to connect\n  at frame 1\n")) == "Failed to connect"
    assert first_line(TimeoutError()) == "TimeoutError"  # no message: its type
    assert first_line(ValueError("x" * 500)) == "x" * 300
    assert first_line(ValueError("abcdef"), limit=3) == "abc"


def test_a_user_error_is_a_value_error_and_a_failed_trial_is_not():
    assert issubclass(UserError, ValueError) and not issubclass(TrialFailed, ValueError)
