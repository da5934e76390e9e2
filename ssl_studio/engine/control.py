"""Pause, resume and stop as flags the trainer checks between steps.

A busy worker thread never has to receive a queued call: the GUI (or a signal
handler in the CLI) flips a flag, and the training loop reads it at the next step
boundary.  This is what keeps Stop responsive without any cross-thread slot.
"""

from __future__ import annotations

import queue
import threading
from typing import Any


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._requests: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def request_visuals(self, request: dict[str, Any]) -> None:
        """Ask for fresh pictures from the current model (e.g. another mask ratio); served between steps."""
        self._requests.put(dict(request))

    def take_requests(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self._requests.get_nowait())
            except queue.Empty:
                return out

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait_while_paused(self, timeout: float = 0.1) -> bool:
        """Block while paused; returns True when the run may go on (False means stop)."""
        while not self._running.wait(timeout):
            pass
        return not self._stop.is_set()
