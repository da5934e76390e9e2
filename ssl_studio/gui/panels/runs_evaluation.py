"""Evaluating runs from the runs browser: the protocol dialog, the progress bar, one run after another.

Evaluate… runs ``engine.evaluate.evaluate_run`` on the selected runs in turn, in the background
(``gui.evaluation.EvaluationJob``), with a progress bar, Cancel, and a one-line outcome per run.
A mixin of ``RunsBrowser``: the finished runs' rows and comparisons are refreshed through it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from ssl_studio.engine.evaluate import PROTOCOLS
from ssl_studio.engine.run_model import is_number
from ssl_studio.gui.evaluation import DEFAULT_PROTOCOLS, EvaluationJob, protocol_title
from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.gui.naming import name_control

ERROR_COLOUR = "#C62828"
PROTOCOL_TIPS = {
    "knn": "Weighted k-NN (k = 5 and 20, cosine) on frozen features; takes seconds.",
    "linear": "Logistic regression on frozen, standardised features; weight decay chosen on 10 % of the training images.",
    "finetune": "Trains a copy of the backbone with a new head (the run's own weights stay as they are); the slowest.",
    "fractions": "Linear probe and fine-tuning with 1 %, 10 % and 100 % of the labels.",
    "zeroshot": "Classifies by text prompts with the run's text tower; needs an image-text objective such as clip.",
    "baselines": "The same network at initialisation (k-NN and linear probe) and raw pixels: what training has to beat.",
    "scratch": "Fine-tunes the same network from its untrained weights, at the fine-tuning budget: what pre-training has to beat.",
}


def _absolute(path: str | Path) -> Path:
    """One spelling per folder (the root's listing and Open folder… must name a run the same way)."""
    return Path(path).expanduser().resolve()


class RunEvaluation:
    """The evaluation bar under the runs browser's buttons, and the queue of runs it evaluates."""

    def _build_evaluation_bar(self) -> None:
        self._job: EvaluationJob | None = None
        self._finished_job: EvaluationJob | None = None
        self._job_path: Path | None = None
        self._pending: list[tuple[Path, tuple[str, ...], str, float]] = []
        self._job_index = 0  # position of the running job in the current batch (for "run 2 of 3")
        self._job_total = 0
        self._batch_notes: list[str] = []
        self._batch_errors: list[str] = []
        # evaluation: progress while one runs, then a one-line outcome
        self.evaluation_progress = name_control(QProgressBar(), "evaluationProgress", "Evaluation progress")
        self.evaluation_progress.setRange(0, 1000)
        self.evaluation_progress.setTextVisible(True)
        self.cancel_evaluation_button = name_control(QPushButton("Cancel"), "cancelEvaluationButton", "Cancel evaluation",
                                                     "Stop the evaluation; protocols already finished stay in report.json.")
        self.evaluation_message = name_control(WrappingLabel(), "evaluationMessage", "Evaluation message")
        self.evaluation_message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dismiss_evaluation_button = name_control(QPushButton("Dismiss"), "dismissEvaluationMessage",
                                                      "Dismiss evaluation message")
        self.evaluation_bar = name_control(QWidget(), "evaluationBar", "Evaluation")
        eb = QHBoxLayout(self.evaluation_bar)
        eb.setContentsMargins(4, 0, 4, 2)
        eb.addWidget(self.evaluation_progress, 2)
        eb.addWidget(self.cancel_evaluation_button)
        eb.addWidget(self.evaluation_message, 3)
        eb.addWidget(self.dismiss_evaluation_button)
        self.evaluation_bar.hide()

    @property
    def evaluating(self) -> bool:
        return self._job is not None and not self._job.done

    @property
    def evaluation_job(self) -> EvaluationJob | None:
        return self._job

    def start_evaluation(self, paths, protocols=DEFAULT_PROTOCOLS, device: str = "auto", finetune_epochs: float = 3.0) -> bool:
        """Evaluate ``paths`` in turn in a background thread; False when one is already running."""
        if self.evaluating:
            return False
        protocols = tuple(p for p in PROTOCOLS if p in protocols)  # the engine's order: zero-shot, which may refuse, last
        self._pending = [(_absolute(p), protocols, device, float(finetune_epochs)) for p in paths]
        if not self._pending or not protocols:
            self._pending = []
            return False
        self._job_index, self._job_total = 0, len(self._pending)
        self._batch_notes, self._batch_errors = [], []
        self._close_after_evaluation = None
        self._start_next()
        return True

    def cancel_evaluation(self) -> None:
        """Cancel the running evaluation (and those queued after it); finished protocols stay in report.json."""
        self._pending.clear()
        if self.evaluating:
            self._job.cancel()
            self.cancel_evaluation_button.setEnabled(False)
            self.evaluation_progress.setFormat(f"Cancelling the evaluation of {self._job_path.name}…")

    def _start_next(self) -> None:
        if not self._pending:
            self._evaluation_done()
            return
        path, protocols, device, epochs = self._pending.pop(0)
        self._job_index += 1
        job = EvaluationJob(path, protocols, device=device, finetune_epochs=epochs)
        job.progress.connect(self._on_job_progress)
        job.finished.connect(self._on_job_finished)
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(self._on_job_cancelled)
        self._job, self._job_path = job, path
        self.evaluation_bar.show()
        self.evaluation_progress.show()
        self.cancel_evaluation_button.show()
        self.cancel_evaluation_button.setEnabled(True)
        self.evaluation_message.hide()
        self.dismiss_evaluation_button.hide()
        self.evaluation_progress.setValue(0)
        self.evaluation_progress.setFormat(f"{self._run_heading()}: loading the checkpoint…")
        self._update_buttons()
        self._fill_table()
        job.start()

    def _run_heading(self) -> str:
        name = self._job_path.name if self._job_path is not None else ""
        return name + (f" ({self._job_index} of {self._job_total})" if self._job_total > 1 else "")

    def _on_job_progress(self, protocol: str, fraction: float) -> None:
        job = self._job
        if job is None or job.cancel_requested:
            return
        which = f", protocol {job.protocols.index(protocol) + 1} of {len(job.protocols)}" if protocol in job.protocols and len(job.protocols) > 1 else ""
        self.evaluation_progress.setValue(int(round(fraction * 1000)))
        self.evaluation_progress.setFormat(f"{self._run_heading()}: {protocol_title(protocol)}{which} – %p%")

    def _on_job_finished(self, results: dict) -> None:
        headline = []
        for name, (key, title) in (("knn", ("k20", "k-NN@20")), ("linear", ("top1", "linear")), ("finetune", ("top1", "fine-tune")),
                                   ("zeroshot", ("top1", "zero-shot"))):
            value = results.get(name, {}).get(key) if isinstance(results.get(name), dict) else None
            if is_number(value):
                headline.append(f"{title} {value:.3f}")
        if "fractions" in results:
            headline.append("label fractions done")
        self._batch_notes.append(f"Evaluated {self._job_path.name}: {', '.join(headline) or 'done'}.")
        self._job_ended()

    def _on_job_failed(self, message: str) -> None:
        self._batch_errors.append(f"Could not evaluate {self._job_path.name}: {message}")
        self._job_ended()

    def _on_job_cancelled(self) -> None:
        self._pending.clear()
        self._batch_notes.append(f"Cancelled the evaluation of {self._job_path.name}; protocols finished before the cancel are kept.")
        self._job_ended()

    def _job_ended(self) -> None:
        path = self._job_path
        self._finished_job = self._job  # dropped at the next start, not inside its own signal
        self._job, self._job_path = None, None
        track = self.tracks.get(path) if path is not None else None
        if track is not None:
            track.update()  # report.json changed: the row, the comparison and the protocols follow
        self._fill_table()
        self._selection_changed(force=True)
        self._start_next()

    def _evaluation_done(self) -> None:
        self.evaluation_progress.hide()
        self.cancel_evaluation_button.hide()
        lines = self._batch_errors + self._batch_notes
        if lines:
            self.evaluation_message.setText("\n".join(lines))
            self.evaluation_message.setStyleSheet(f"color:{ERROR_COLOUR};" if self._batch_errors else "")
            self.evaluation_message.show()
            self.dismiss_evaluation_button.show()
            self.evaluation_bar.show()
        else:
            self.evaluation_bar.hide()
        self._update_buttons()
        window, self._close_after_evaluation = self._close_after_evaluation, None
        if window is not None:
            QTimer.singleShot(0, window.close)

    def _dismiss_message(self) -> None:
        self.evaluation_message.clear()
        if not self.evaluating:
            self.evaluation_bar.hide()


class EvaluateDialog(QDialog):
    """Which protocols, how long to fine-tune, on which device."""

    def __init__(self, parent: QWidget | None, run_names: list[str], text_capable: bool = False,
                 defaults=DEFAULT_PROTOCOLS, finetune_epochs: float = 3.0):
        super().__init__(parent)
        name_control(self, "evaluateDialog", "Evaluate runs")
        self.setWindowTitle("Evaluate runs")
        shown = ", ".join(run_names[:3]) + (f" and {len(run_names) - 3} more" if len(run_names) > 3 else "")
        intro = name_control(QLabel(f"Evaluate {shown} from {'its' if len(run_names) == 1 else 'their'} last checkpoint. "
                                    "Results are added to report.json; the run itself is not changed."),
                             "evaluateIntro", "What will be evaluated")
        intro.setWordWrap(True)
        self.checks: dict[str, QCheckBox] = {}
        box = QVBoxLayout()
        for p in PROTOCOLS:
            check = name_control(QCheckBox(protocol_title(p)), f"evaluateProtocol_{p}", f"Evaluate by {protocol_title(p)}",
                                 PROTOCOL_TIPS.get(p))
            check.setChecked(p in defaults and (p != "zeroshot" or text_capable))
            if p == "zeroshot" and not text_capable:
                check.setEnabled(False)
                check.setToolTip(PROTOCOL_TIPS["zeroshot"] + " None of the selected runs has one.")
            check.toggled.connect(lambda _on: self._update())
            self.checks[p] = check
            box.addWidget(check)
        self.epochs = name_control(QDoubleSpinBox(), "evaluateFinetuneEpochs", "Fine-tuning epochs",
                                   "Passes over the training images when fine-tuning (at least 40 steps are taken).")
        self.epochs.setRange(0.1, 1000.0)
        self.epochs.setDecimals(1)
        self.epochs.setSingleStep(0.5)
        self.epochs.setValue(finetune_epochs)
        self.device_box = name_control(QComboBox(), "evaluateDevice", "Evaluation device",
                                       "auto: the device the run was configured for.")
        self.device_box.addItems(["auto", "cpu", "cuda", "mps"])
        form = QFormLayout()
        form.addRow("Fine-tuning epochs", self.epochs)
        form.addRow("Device", self.device_box)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Evaluate")
        name_control(ok, "evaluateStart", "Start evaluation")
        name_control(self.buttons.button(QDialogButtonBox.StandardButton.Cancel), "evaluateCancelDialog", "Cancel")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(box)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update()

    def _update(self) -> None:
        chosen = self.protocols()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(chosen))
        self.epochs.setEnabled(bool({"finetune", "fractions", "scratch"} & set(chosen)))

    def protocols(self) -> tuple[str, ...]:
        return tuple(p for p, c in self.checks.items() if c.isChecked() and c.isEnabled())

    def finetune_epochs(self) -> float:
        return float(self.epochs.value())

    def device(self) -> str:
        return self.device_box.currentText()
