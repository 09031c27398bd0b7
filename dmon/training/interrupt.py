"""Ctrl-C or SIGTERM during training: finish the epoch, keep what it made."""

from __future__ import annotations

import signal
import threading
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptFlag:
    """While active (in the main thread, and `enabled`), the first SIGINT or SIGTERM sets
    `raised` (and `by`, the signal's name) instead of ending the process; a second one
    raises `KeyboardInterrupt` at once. SIGTERM, which service managers and schedulers
    send, so stops a run as Ctrl-C does."""

    def __init__(self, enabled: bool = True) -> None:
        self.raised = False
        self.by: str | None = None
        self.enabled = enabled
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        self.by = signal.Signals(signum).name

    def __enter__(self) -> InterruptFlag:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in _SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
