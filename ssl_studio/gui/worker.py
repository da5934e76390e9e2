"""Training in a background thread, with events delivered to the GUI in throttled batches.

The trainer emits an event per step; redrawing on every one would freeze the
window on a fast GPU and queue thousands of cross-thread signals.  So the
worker's callback only appends to a locked list, and a QTimer on the GUI thread
drains it at most ``FLUSH_HZ`` times a second into one ``eventsReady(list)``
batch.  Nothing is dropped: a batch carries every event since the last one, and
the terminal event (Finished or Failed) is always delivered, in a last drain
after the thread has ended.

Pause, resume and stop are ``RunControl`` flags flipped directly from the GUI
thread; a busy worker never has to receive a queued call.

This is the one long-lived engine driver, with a QThread of its own for the run's whole life
(pause, visuals on request, a checkpoint on stop); every shorter computation off the GUI
thread (previews, projections, budget rates, evaluations) is a ``gui.jobs`` job.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from ssl_studio.config import RunConfig
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Failed, Finished, Started
from ssl_studio.gui.main_thread_gc import main_thread_collection

FLUSH_HZ = 20


class GuiRunControl(RunControl):
    """A RunControl that also says when the trainer is actually waiting in a pause.

    ``paused`` only says a pause was asked for; the trainer first finishes its
    step and saves a checkpoint.  The window shows "Paused" once the trainer
    really waits, so the user knows the checkpoint is on disk.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.on_wait: Any = None

    def wait_while_paused(self, timeout: float = 0.1) -> bool:
        self.waiting.set()
        if self.on_wait is not None:
            self.on_wait(True)
        try:
            return super().wait_while_paused(timeout)
        finally:
            self.waiting.clear()
            if self.on_wait is not None:
                self.on_wait(False)


class _Marker:
    """A non-event item in the buffer, kept in order with the events."""

    def __init__(self, kind: str, value: Any = None):
        self.kind = kind
        self.value = value


class TrainingWorker(QObject):
    """Lives in a QThread; ``run`` trains one configuration and never raises.

    The callback runs on the worker thread and does as little as possible:
    append to the buffer.  ``take()`` is called from the GUI thread.
    """

    finished = Signal(object)  # RunResult (or None after an unexpected error)

    def __init__(self, cfg: RunConfig, control: RunControl | None = None, run_dir: str | None = None, resume: bool = False):
        super().__init__()
        self.cfg = cfg
        self.run_dir = run_dir
        self.resume = resume
        self.control = control or GuiRunControl()
        self._lock = threading.Lock()
        self._buffer: list[Any] = []
        self.trainer = None
        self.result = None
        if isinstance(self.control, GuiRunControl):
            self.control.on_wait = lambda waiting: self._push(_Marker("paused", waiting))

    def _push(self, item: Any) -> None:
        with self._lock:
            self._buffer.append(item)

    def take(self) -> list[Any]:
        with self._lock:
            items, self._buffer = self._buffer, []
        return items

    def _on_event(self, event) -> None:
        if isinstance(event, Started) and self.trainer is not None:
            # The trainer loaded the data just before Started: hand the same images to the panels.
            self._push(_Marker("data", self.trainer.imageset))
        self._push(event)

    def _on_data_progress(self, done: int, total: int) -> None:
        self._push(_Marker("loading", (done, total)))

    @Slot()
    def run(self) -> None:
        from ssl_studio.engine.trainer import Trainer

        try:
            self.trainer = Trainer(self.cfg, callback=self._on_event, control=self.control,
                                   data_progress=self._on_data_progress, run_dir=self.run_dir, resume=self.resume)
            self.result = self.trainer.run()
        except BaseException as exc:  # noqa: BLE001 - the trainer should not raise; if it does, say so
            self._push(Failed(step=getattr(self.trainer, "step", 0), status="failed",
                              message=f"The run ended with an internal error ({type(exc).__name__}: {exc}).",
                              run_dir=str(self.trainer.folder.path) if self.trainer is not None and self.trainer.folder else None))
            self.result = None
        self.finished.emit(self.result)


class TrainingSession(QObject):
    """One run: owns the thread, the worker, the flush timer; all its signals fire on the GUI thread.

    Signals:
        eventsReady(list)   every event since the previous batch, in order
        dataReady(object)   the run's ImageSet, before the batch holding Started
        loading(int, int)   images loaded so far, total (while a folder loads)
        pausedChanged(bool) the trainer is (no longer) waiting in a pause
        finished(object)    after the last batch; the RunResult (None if unknown)
    """

    eventsReady = Signal(list)
    dataReady = Signal(object)
    loading = Signal(int, int)
    pausedChanged = Signal(bool)
    finished = Signal(object)

    def __init__(self, cfg: RunConfig, parent: QObject | None = None, flush_hz: float = FLUSH_HZ,
                 run_dir: str | None = None, resume: bool = False):
        """``run_dir`` with ``resume``: go on training that run folder from its last checkpoint."""
        super().__init__(parent)
        self.cfg = cfg
        self.control = GuiRunControl()
        self.thread = QThread()
        self.thread.setObjectName("trainingThread")
        self.worker = TrainingWorker(cfg, self.control, run_dir=run_dir, resume=resume)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.finished.connect(self.thread.quit)
        self.thread.finished.connect(self._on_thread_finished)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, int(1000 / flush_hz)))
        self.timer.timeout.connect(self.flush)
        self.run_dir: str | None = None
        self.last_step = None
        self.terminal = None
        self.trainer_paused = False
        self.started_at: float | None = None
        self._done = False
        self._holds_gc = False

    # -- control (GUI thread; flags only) ---------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        if not self._holds_gc:
            main_thread_collection.hold()  # no cyclic collection in the training thread (see main_thread_gc)
            self._holds_gc = True
        self.timer.start()
        self.thread.start()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def running(self) -> bool:
        return self.thread.isRunning()

    @property
    def done(self) -> bool:
        return self._done

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Stop and wait for the thread; True when it has ended (the trainer saved its checkpoint)."""
        self.control.stop()
        if self.thread.isRunning():
            self.thread.quit()
            if not self.thread.wait(timeout_ms):
                return False
        self._on_thread_finished()
        return True

    # -- delivery ----------------------------------------------------------------------
    @Slot()
    def flush(self) -> None:
        """Drain the buffer into one batch; data and pause markers are emitted in order around it."""
        items = self.worker.take()
        if not items:
            return
        batch: list[Any] = []
        loading = [i for i in items if isinstance(i, _Marker) and i.kind == "loading"]
        if loading:  # a folder reports every file; the status bar needs only the latest count
            self.loading.emit(*loading[-1].value)
        for item in items:
            if isinstance(item, _Marker):
                if item.kind == "loading":
                    continue
                if batch:
                    self.eventsReady.emit(batch)
                    batch = []
                if item.kind == "data":
                    self.dataReady.emit(item.value)
                elif item.kind == "paused":
                    self.trainer_paused = bool(item.value)
                    self.pausedChanged.emit(self.trainer_paused)
                continue
            if isinstance(item, Started):
                self.run_dir = item.run_dir
            elif isinstance(item, (Finished, Failed)):
                self.terminal = item
                if item.run_dir:
                    self.run_dir = item.run_dir
            elif hasattr(item, "progress") and hasattr(item, "images_per_s"):
                self.last_step = item
            batch.append(item)
        if batch:
            self.eventsReady.emit(batch)

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._done:
            return
        self._done = True
        self.timer.stop()
        self.flush()  # the terminal event is always delivered
        self.worker.trainer = None  # free the model and optimiser; the panels hold what they show
        if self._holds_gc:
            self._holds_gc = False
            main_thread_collection.release()
        self.finished.emit(self.worker.result)
