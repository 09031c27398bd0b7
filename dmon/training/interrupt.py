"""Ctrl-C during training: finish the epoch, keep what it made."""

from __future__ import annotations

import signal
import threading
from typing import Any


class InterruptFlag:
    """While active (in the main thread, and `enabled`), the first SIGINT sets `raised`
    instead of raising `KeyboardInterrupt`; the second one raises as usual."""

    def __init__(self, enabled: bool = True) -> None:
        self.raised = False
        self.enabled = enabled
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> InterruptFlag:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
