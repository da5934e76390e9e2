"""One way to compute off the GUI thread: ``start_job(fn, *args)`` runs ``fn`` on a pool thread and reports back.

Every panel and dialog that computes in the background (previews, projections, budget
rates, evaluations) uses this, so a job always reports the same way and always on the GUI
thread: ``progress`` for each value a generator function yields, then ``returned`` (its
result) or ``errored`` (the exception), then ``finished``.  ``cancel()`` asks a generator
job to stop at its next yield (it then errors with ``JobCancelled``); a plain function
cannot be interrupted, so its caller drops a stale result instead.  While any job runs the
garbage collector runs on the GUI thread only (``main_thread_gc``), so a Qt object is never
freed from a worker.  The training session (``worker.TrainingSession``) is the one
long-lived engine driver with a thread of its own.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ssl_studio.gui.main_thread_gc import main_thread_collection


class JobCancelled(Exception):
    """A generator job stopped at a yield because ``cancel()`` was called."""


class JobSignals(QObject):
    """Created on the GUI thread, so its signals reach GUI slots (and plain callables) there, queued."""

    progress = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception
    finished = Signal()  # after returned or errored, always


_RUNNING: set["Job"] = set()  # Python holds every job until its end has been reported


class Job(QRunnable):
    """``fn(*args, **kwargs)`` on a pool thread; a generator function's yields are its progress."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # Python owns it (in _RUNNING until finished)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = JobSignals()
        for signal in (self.signals.returned, self.signals.errored, self.signals.finished):
            signal.connect(self._ended)  # first: the callbacks see the job over and the collection guard released
        self._cancel = threading.Event()
        self.done = False

    def report(self, value: Any) -> None:
        """Progress from a function that is not a generator (it is handed ``job.report`` as a callback)."""
        self._emit(self.signals.progress, value)

    def start(self, pool: QThreadPool | None = None) -> "Job":
        """Queue the job on ``pool`` (default: the global one); its end is reported on the GUI thread."""
        _RUNNING.add(self)
        main_thread_collection.hold()  # released when the job's end reaches the GUI thread
        (pool if pool is not None else QThreadPool.globalInstance()).start(self)
        return self

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Stop a generator job at its next yield; a plain function runs to its end."""
        self._cancel.set()

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
        except BaseException as exc:  # noqa: BLE001 - reported to the GUI thread, never raised in a pool thread
            self._emit(self.signals.errored, exc)
        else:
            self._emit(self.signals.returned, result)
        finally:
            self._emit(self.signals.finished)

    def _drain(self, gen) -> Any:
        while True:
            if self._cancel.is_set():
                gen.close()
                raise JobCancelled()
            try:
                value = next(gen)
            except StopIteration as stop:
                return stop.value
            self._emit(self.signals.progress, value)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver's side was deleted meanwhile (a window closed)
            pass

    def _ended(self, *_: Any) -> None:  # on the GUI thread
        self.done = True
        if self in _RUNNING:
            _RUNNING.discard(self)
            main_thread_collection.release()


def start_job(fn: Callable[..., Any], *args: Any, pool: QThreadPool | None = None, on_returned=None, on_errored=None,
              on_progress=None, on_finished=None, **kwargs: Any) -> Job:
    """Run ``fn(*args, **kwargs)`` on ``pool`` (a private pool keeps jobs from queueing behind others; default the
    global one) and call the ``on_*`` callbacks on the GUI thread."""
    job = Job(fn, *args, **kwargs)
    for signal, slot in ((job.signals.progress, on_progress), (job.signals.returned, on_returned),
                         (job.signals.errored, on_errored), (job.signals.finished, on_finished)):
        if slot is not None:
            signal.connect(slot)
    return job.start(pool)


def private_pool(parent: QObject, threads: int = 1) -> QThreadPool:
    """A pool of ``threads`` owned by ``parent``: its jobs run one after another, and the window waits for it on close."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(threads)
    return pool
