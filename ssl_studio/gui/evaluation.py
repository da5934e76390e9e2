"""Evaluating a finished run (k-NN, linear probe, fine-tuning, ...) in a background thread.

``EvaluationJob`` is the GUI-thread face of one ``engine.evaluate.evaluate_run``
call, run as a background job (``gui.jobs``): Cancel only sets a flag that
``evaluate_run`` reads through ``should_stop`` (between protocols and between
fine-tuning steps), and the terminal signal (finished, failed or cancelled) is
emitted on the GUI thread after the work has ended, so whoever listens may drop
the job at once.

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

from PySide6.QtCore import QObject, QThreadPool, Signal

from ssl_studio.gui.jobs import Job

PROTOCOL_TITLES = {
    "knn": "k-NN",
    "linear": "linear probe",
    "finetune": "fine-tuning",
    "fractions": "label fractions",
    "zeroshot": "zero-shot",
    "scratch": "fine-tuning from scratch",
}
DEFAULT_PROTOCOLS = ("knn", "linear", "finetune")

_LINGERING: set["EvaluationJob"] = set()  # jobs whose thread outlived a shutdown wait: kept alive until it ends


def protocol_title(name: str) -> str:
    return PROTOCOL_TITLES.get(name, name)


def evaluate_once(run_dir: str, protocols: Sequence[str], device: str, finetune_epochs: float, stop: threading.Event,
                  report) -> tuple[str, Any]:
    """One ``evaluate_run`` as (outcome, value): ("finished", results), ("cancelled", None) or ("failed", a sentence);
    never raises.  ``report(protocol, fraction)`` is its progress, throttled to a percent."""
    from ssl_studio.engine.evaluate import Cancelled, evaluate_run
    from ssl_studio.params import ConfigError

    last: list[tuple[str, float]] = []

    def progress(protocol: str, fraction: float) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if not last or last[0][0] != protocol or fraction in (0.0, 1.0) or fraction - last[0][1] >= 0.01:
            last[:] = [(protocol, fraction)]
            report((protocol, fraction))

    try:
        results = evaluate_run(run_dir, tuple(protocols), device=device, progress=progress, should_stop=stop.is_set,
                               finetune_epochs=finetune_epochs)
        _write_markdown(run_dir)
        return ("finished", dict(results))
    except Cancelled:
        _write_markdown(run_dir)  # the protocols that finished before the cancel are kept in report.json
        return ("cancelled", None)
    except ConfigError as exc:
        return ("failed", str(exc))
    except MemoryError:
        return ("failed", "The evaluation ran out of memory; try a smaller data set or the CPU.")
    except BaseException as exc:  # noqa: BLE001 - reported as one sentence, the GUI carries on
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ("failed", f"The evaluation ended with an internal error ({type(exc).__name__}{': ' + text if text else ''}).")


def _write_markdown(run_dir: str) -> None:
    """report.md beside report.json, as ``ssl-studio eval`` writes it."""
    try:
        from ssl_studio.engine.evaluate import report_markdown

        (Path(run_dir) / "report.md").write_text(report_markdown(run_dir), encoding="utf-8")
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
        self._ended = threading.Event()  # set by the work itself, so a blocked GUI thread can wait on it
        self._result: tuple[str, Any] = ("failed", "The evaluation did not start.")
        self.job = Job(self._work)
        self.job.signals.progress.connect(self._on_progress)
        self.job.signals.finished.connect(self._deliver)
        self.protocol: str | None = None  # the protocol in progress
        self.fraction = 0.0
        self.outcome: str | None = None  # "finished", "failed" or "cancelled" once done
        self._started = False
        self._done = False

    def _work(self) -> None:  # on a pool thread
        try:
            self._result = evaluate_once(self.run_dir, self.protocols, self.device, self.finetune_epochs, self._stop,
                                         self.job.report)
        finally:
            self._ended.set()

    # -- control (GUI thread) ----------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.job.start(QThreadPool.globalInstance())

    def cancel(self) -> None:
        """Ask the evaluation to stop at its next check (between protocols, or fine-tuning steps)."""
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._started and not self._ended.is_set()

    @property
    def done(self) -> bool:
        return self._done

    def shutdown(self, timeout_ms: int | None = 30_000) -> bool:
        """Cancel and wait for the work; True when it has ended (and the terminal signal was sent).

        An embedding pass or a linear fit cannot be interrupted half-way, so the wait can take a
        while on a large data set; if it runs out, the job is kept alive until its work ends.
        """
        self.cancel()
        if self.running:
            if not self._ended.wait(None if timeout_ms is None else timeout_ms / 1000):
                _LINGERING.add(self)
                self.job.signals.finished.connect(lambda: _LINGERING.discard(self))
                return False
        if self._started:
            self._deliver()
        return True

    # -- delivery ----------------------------------------------------------------------
    def _on_progress(self, value: tuple[str, float]) -> None:
        if self._done:
            return
        self.protocol, self.fraction = value
        self.progress.emit(*value)

    def _deliver(self) -> None:
        if self._done or not self._ended.is_set():
            return
        self._done = True
        kind, value = self._result
        self.outcome = kind
        if kind == "finished":
            self.finished.emit(value)
        elif kind == "cancelled":
            self.cancelled.emit()
        else:
            self.failed.emit(str(value))
