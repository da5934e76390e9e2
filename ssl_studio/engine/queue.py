"""A queue of runs trained one after another in the background, each an ordinary run.

Studies and the GUI's "run these" both need several configurations trained in
turn without blocking the caller.  Each run is a plain ``Trainer`` run with its
own run folder, so nothing downstream (the runs browser, ``ssl-studio resume``,
the compare view) needs to know it came from a queue.  Events are forwarded with
the position of the run in the queue; one ``RunControl`` is shared by every run,
so Stop stops the run in progress (which saves its checkpoint) and the queue.

Runs that read the same images (same ``[data]`` table and seed) share one
``ImageSet``, loaded once: for the shapes source that saves the rendering, for a
folder source the decoding of every file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ssl_studio.config import RunConfig
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Event
from ssl_studio.engine.trainer import RunResult, Trainer

QueueCallback = Callable[[int, Event], None]


class RunQueue:
    """Train ``configs`` in order; ``callback(index, event)`` sees every run's events.

    ``start()`` runs the queue on a background thread, ``run()`` in the calling
    thread; both fill ``results`` (one ``RunResult`` per run that started).  A run
    that fails does not stop the queue: its ``Failed`` event is forwarded and the
    next run starts.  ``stop()`` (or the shared control's ``stop()``) ends the
    current run cleanly and starts no other.
    """

    def __init__(self, configs: Sequence[RunConfig], callback: QueueCallback | None = None, control: RunControl | None = None,
                 on_done: Callable[[list[RunResult]], None] | None = None, share_data: bool = True):
        self.configs = list(configs)
        self.callback = callback
        self.control = control or RunControl()
        self.on_done = on_done
        self.share_data = share_data
        self.results: list[RunResult] = []
        self.current: int | None = None
        self._thread: threading.Thread | None = None
        self._data: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.configs)

    # -- control -----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this run queue has already been started")
        self._thread = threading.Thread(target=self.run, name="ssl-studio-run-queue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.control.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the queue to finish; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> list[RunResult]:
        try:
            for index, cfg in enumerate(self.configs):
                if self.control.stop_requested:
                    break
                self.current = index
                trainer = Trainer(cfg, callback=self._forward(index), control=self.control, imageset=self._imageset(cfg))
                result = trainer.run()
                self.results.append(result)
                if self.share_data and trainer.imageset is not None:
                    self._data.setdefault(self._data_key(cfg), trainer.imageset)
        finally:
            self.current = None
            if self.on_done is not None:
                self.on_done(self.results)
        return self.results

    def _forward(self, index: int):
        if self.callback is None:
            return None

        def forward(event: Event) -> None:
            self.callback(index, event)

        return forward

    @staticmethod
    def _data_key(cfg: RunConfig) -> Any:
        return repr(cfg.data), cfg.seed

    def _imageset(self, cfg: RunConfig):
        """A cached ImageSet when it has what this run's objective needs; else None (the trainer loads it)."""
        if not self.share_data:
            return None
        imageset = self._data.get(self._data_key(cfg))
        if imageset is None:
            return None
        from ssl_studio.objectives import get_objective

        try:
            cls = get_objective(cfg.objective.name)
        except Exception:  # noqa: BLE001 - the trainer reports a bad name as one sentence
            return None
        if (cls.needs_labels and imageset.labels is None) or (cls.needs_captions and imageset.captions is None):
            return None
        return imageset


__all__ = ["QueueCallback", "RunQueue"]
