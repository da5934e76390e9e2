"""Evaluating a finished run (k-NN, linear probe, fine-tuning, ...) in a background thread.

``EvaluationJob`` is the GUI-thread face of one ``engine.evaluate.evaluate_run``
call, built like ``worker.TrainingSession``: the work runs in a QThread, Cancel
only sets a flag that ``evaluate_run`` reads through ``should_stop`` (between
protocols and between fine-tuning steps), and the terminal signal (finished,
failed or cancelled) is emitted on the GUI thread after the thread has ended,
so whoever listens may drop the job at once.

Progress is throttled in the worker (at most one signal per percent, plus every
protocol's start and end): fine-tuning on a fast GPU reports every step.
A ``ConfigError`` (unlabelled data, no checkpoint, an image-text protocol on an
image-only run) arrives as its own one-sentence message; anything unexpected is
summarised in one sentence too, never as a traceback.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ssl_studio.gui.main_thread_gc import main_thread_collection

PROTOCOL_TITLES = {
    "knn": "k-NN",
    "linear": "linear probe",
    "finetune": "fine-tuning",
    "fractions": "label fractions",
    "zeroshot": "zero-shot",
}
DEFAULT_PROTOCOLS = ("knn", "linear", "finetune")

_LINGERING: set["EvaluationJob"] = set()  # jobs whose thread outlived a shutdown wait: kept alive until it ends


def protocol_title(name: str) -> str:
    return PROTOCOL_TITLES.get(name, name)


class _EvaluationWorker(QObject):
    """Lives in the job's thread; ``run`` calls evaluate_run once and never raises."""

    progress = Signal(str, float)
    done = Signal()

    def __init__(self, run_dir: str, protocols: Sequence[str], device: str, finetune_epochs: float, stop: threading.Event):
        super().__init__()
        self.run_dir = run_dir
        self.protocols = tuple(protocols)
        self.device = device
        self.finetune_epochs = finetune_epochs
        self.stop = stop
        self.outcome: tuple[str, Any] = ("failed", "The evaluation did not start.")
        self._last: tuple[str, float] | None = None

    def _progress(self, protocol: str, fraction: float) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        last = self._last
        if last is None or last[0] != protocol or fraction in (0.0, 1.0) or fraction - last[1] >= 0.01:
            self._last = (protocol, fraction)
            self.progress.emit(protocol, fraction)

    @Slot()
    def run(self) -> None:
        from ssl_studio.engine.evaluate import Cancelled, evaluate_run
        from ssl_studio.params import ConfigError

        try:
            results = evaluate_run(self.run_dir, self.protocols, device=self.device, progress=self._progress,
                                   should_stop=self.stop.is_set, finetune_epochs=self.finetune_epochs)
            self._write_markdown()
            self.outcome = ("finished", dict(results))
        except Cancelled:
            self._write_markdown()  # the protocols that finished before the cancel are kept in report.json
            self.outcome = ("cancelled", None)
        except ConfigError as exc:
            self.outcome = ("failed", str(exc))
        except MemoryError:
            self.outcome = ("failed", "The evaluation ran out of memory; try a smaller data set or the CPU.")
        except BaseException as exc:  # noqa: BLE001 - reported as one sentence, the GUI carries on
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.outcome = ("failed", f"The evaluation ended with an internal error ({type(exc).__name__}{': ' + text if text else ''}).")
        self.done.emit()

    def _write_markdown(self) -> None:
        """report.md beside report.json, as ``ssl-studio eval`` writes it."""
        try:
            from ssl_studio.engine.evaluate import report_markdown

            (Path(self.run_dir) / "report.md").write_text(report_markdown(self.run_dir), encoding="utf-8")
        except Exception:  # noqa: BLE001 - report.json is the result; the Markdown copy is a convenience
            pass


class EvaluationJob(QObject):
    """One evaluation of one run folder; every signal fires on the GUI thread.

    Signals:
        progress(str, float)  protocol name, fraction of that protocol done
        finished(dict)        evaluate_run's results (also merged into report.json)
        failed(str)           a one-sentence, readable reason
        cancelled()           Cancel was honoured; finished protocols stay in report.json
    """

    progress = Signal(str, float)
    finished = Signal(dict)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, run_dir: str | Path, protocols: Sequence[str] = DEFAULT_PROTOCOLS, device: str = "auto",
                 finetune_epochs: float = 3.0, parent: QObject | None = None):
        super().__init__(parent)
        self.run_dir = str(run_dir)
        self.protocols = tuple(protocols)
        self.device = device
        self.finetune_epochs = float(finetune_epochs)
        self._stop = threading.Event()
        self.thread = QThread()
        self.thread.setObjectName("evaluationThread")
        self.worker = _EvaluationWorker(self.run_dir, self.protocols, device, self.finetune_epochs, self._stop)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        # quit from the worker's own thread: a GUI thread blocked in shutdown()'s wait could not deliver a queued quit
        self.worker.done.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread.finished.connect(self._on_thread_finished)
        self.protocol: str | None = None  # the protocol in progress
        self.fraction = 0.0
        self.outcome: str | None = None  # "finished", "failed" or "cancelled" once done
        self._started = False
        self._done = False

    # -- control (GUI thread) ----------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        main_thread_collection.hold()  # no cyclic collection in the evaluation thread (see main_thread_gc)
        self.thread.start()

    def cancel(self) -> None:
        """Ask the evaluation to stop at its next check (between protocols, or fine-tuning steps)."""
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self.thread.isRunning()

    @property
    def done(self) -> bool:
        return self._done

    def shutdown(self, timeout_ms: int | None = 30_000) -> bool:
        """Cancel and wait for the thread; True when it has ended (and the terminal signal was sent).

        An embedding pass or a linear fit cannot be interrupted half-way, so the wait can take a
        while on a large data set; if it runs out, the job is kept alive until its thread ends,
        so a QThread is never destroyed while it runs.
        """
        self.cancel()
        if self.thread.isRunning():
            self.thread.quit()  # the thread's loop ends as soon as evaluate_run returns
            ended = self.thread.wait() if timeout_ms is None else self.thread.wait(int(timeout_ms))
            if not ended:
                _LINGERING.add(self)
                self.thread.finished.connect(self._release)
                return False
        if self._started:
            self._on_thread_finished()
        return True

    # -- delivery ----------------------------------------------------------------------
    @Slot(str, float)
    def _on_progress(self, protocol: str, fraction: float) -> None:
        if self._done:
            return
        self.protocol, self.fraction = protocol, fraction
        self.progress.emit(protocol, fraction)

    @Slot()
    def _on_thread_finished(self) -> None:
        if self._done:
            return
        self._done = True
        if self._started:
            main_thread_collection.release()
        kind, value = self.worker.outcome
        self.outcome = kind
        if kind == "finished":
            self.finished.emit(value)
        elif kind == "cancelled":
            self.cancelled.emit()
        else:
            self.failed.emit(str(value))

    @Slot()
    def _release(self) -> None:
        _LINGERING.discard(self)
