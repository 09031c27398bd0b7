"""What every `dmon` command shares: the one-line error."""

from __future__ import annotations


class UsageError(Exception):
    """An error to report in one line."""


def one_line(message: str) -> str:
    """`message` with every run of whitespace (newlines too) as one space."""
    return " ".join(message.split())
