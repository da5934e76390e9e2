"""The Text panel's Ask box: a person types a prompt, or a sentence with [MASK], and both LMs answer.

One model is the run the panel shows: while it trains in this window the training thread hands a
frozen copy of its network over between two steps (``LanguageModel.visual_request``); otherwise (a
run opened from the runs browser, a finished or paused run) its last checkpoint is loaded.  The
other is a run of the other text objective with the same data and vocabulary, chosen in a combo
(default: the newest finished one, ``engine/text_partners.py``).  Loading and answering run on a
pool thread (``gui/jobs.py``); the answers are ``engine/text_answers.answer``'s, drawn as HTML.
"""

from __future__ import annotations

import html
import queue
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTextBrowser,
                               QVBoxLayout, QWidget)

from ssl_studio.engine.text_answers import AskSettings
from ssl_studio.gui.jobs import private_pool, start_job
from ssl_studio.gui.naming import name_control

LIVE_WAIT_S = 20.0  # a training step (or a probe) must end before the live network is handed over
CAUSAL_COLOUR, MASKED_COLOUR = "#1F77B4", "#D55E00"


def find_partners(run_dir: str) -> tuple[str, str, list]:
    """(objective, data source, partner runs) of a text run: on a pool thread (it reads every run folder's config)."""
    from ssl_studio.engine.text_partners import partner_runs
    from ssl_studio.engine.trained import read_text_run

    _folder, cfg = read_text_run(run_dir)
    return cfg.objective.name, cfg.data.source, partner_runs(run_dir, cfg.objective.name, cfg.data.source)


_MODELS: dict[tuple[str, float], tuple[Any, str]] = {}  # (run folder, checkpoint time) -> (network, objective)


def _load(run_dir: str) -> tuple[Any, str]:
    from ssl_studio.engine.trained import load_text_model

    checkpoint = Path(run_dir) / "checkpoints" / "last.pt"
    key = (str(Path(run_dir).resolve()), checkpoint.stat().st_mtime if checkpoint.is_file() else 0.0)
    if key not in _MODELS:
        if len(_MODELS) >= 4:
            _MODELS.clear()
        _MODELS[key] = load_text_model(run_dir)
    return _MODELS[key]


def ask_models(text: str, settings: AskSettings, run_dir: str, objective: str, live: queue.Queue | None,
               partner: str | None) -> dict[str, Any]:
    """Both models' answers (on a pool thread): the shown run's network, live or from its checkpoint, and the partner's."""
    from ssl_studio.engine.text_answers import answer
    from ssl_studio.params import ConfigError

    own = None
    if live is not None:
        try:
            own = live.get(timeout=LIVE_WAIT_S)
        except queue.Empty:  # paused, or ended meanwhile: its checkpoint answers instead
            own = None
    source = "live" if own is not None else "checkpoint"
    if own is None:
        if not (Path(run_dir) / "checkpoints" / "last.pt").is_file():
            raise ConfigError("", "This run has no checkpoint yet and is not taking steps (paused?); resume it for a moment, "
                                  "then ask again.")
        own = _load(run_dir)[0]
    models = {objective: own}
    names = {objective: f"{Path(run_dir).name} ({source})"}
    if partner:
        model, other = _load(partner)
        models[other], names[other] = model, Path(partner).name
    result = answer(text, models.get("causal-lm"), models.get("masked-lm"), settings)
    result["names"] = {"causal": names.get("causal-lm"), "masked": names.get("masked-lm")}
    return result


def answer_html(result: dict[str, Any]) -> str:
    """The answers as HTML: the continuation after the prompt, or each mask's fills and ranking."""
    e = html.escape
    names = result.get("names", {})
    parts = [f"<p style='color:gray'>{e(n)}</p>" for n in result.get("notes", [])]
    if result["mode"] == "continue":
        parts.append(f"<p><b>Prompt:</b> {e(result['input'].strip())}</p>"
                     f"<p style='color:gray'>Continuations {e(result['rule'])}.</p>")
        for key, title, colour in (("causal", "Causal LM", CAUSAL_COLOUR),
                                   ("masked", "Masked LM (masks appended, filled left to right)", MASKED_COLOUR)):
            if result.get(key) is not None:
                parts.append(f"<p><b style='color:{colour}'>{e(title)}</b> <small>{e(names.get(key) or '')}</small><br/>"
                             f"{e(result['input'].strip())}<b style='color:{colour}'>{e(result[key]['continuation'])}</b></p>")
        return "".join(parts)
    parts.append(f"<p><b>Sentence:</b> {e(result['input'].strip())}</p>")
    for key, title, colour, fmt in (("masked", "Masked LM: top fills, probability", MASKED_COLOUR, "{:.3f}"),
                                    ("causal", "Causal LM: candidates ranked by the sentence's log-likelihood (nats)",
                                     CAUSAL_COLOUR, "{:.2f}")):
        if result.get(key) is None:
            continue
        several = len(result[key]["masks"]) > 1
        tables = []
        for n, per in enumerate(result[key]["masks"], 1):
            rows = "".join(f"<tr><td>{e(repr(t))}</td><td align='right'>{fmt.format(v)}</td></tr>" for t, v in per)
            tables.append((f"<p style='margin:0'>[MASK] {n}</p>" if several else "") +
                          f"<table cellspacing='0' cellpadding='2'>{rows}</table>")
        parts.append(f"<p><b style='color:{colour}'>{e(title)}</b> <small>{e(names.get(key) or '')}</small><br/>"
                     f"best: <b style='color:{colour}'>{e(result[key]['best'].strip())}</b></p>" + "".join(tables))
    return "".join(parts)


class AskBox(QWidget):
    """Prompt line, Ask button, the partner run and the sampling temperature; the answers below."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("textAskBox")
        self.run_dir: str | None = None
        self.objective: str | None = None
        self.source: str | None = None
        self.request_live_model: Callable[[str], queue.Queue | None] | None = None  # the window's, for a run it trains
        self.last_result: dict[str, Any] | None = None
        self.pool = private_pool(self)
        self._job = None
        self._partners_job = None

        self.prompt = name_control(QLineEdit(), "textAskPrompt", "Text to ask",
                                   "A prompt to continue, or a sentence with [MASK] where a word is missing.")
        self.prompt.setPlaceholderText("A prompt to continue, or a sentence with [MASK]")
        self.prompt.returnPressed.connect(self.ask)
        self.ask_button = name_control(QPushButton("Ask"), "textAskButton", "Ask both models")
        self.ask_button.clicked.connect(self.ask)
        self.partner = name_control(QComboBox(), "textAskPartner", "The other model",
                                    "The run of the other text objective that answers too (same data and vocabulary).")
        self.partner.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.partner.setMinimumContentsLength(12)
        self.temperature = name_control(QDoubleSpinBox(), "textAskTemperature", "Sampling temperature",
                                        "Continuations are sampled from the 20 likeliest tokens at this temperature (seed 0); "
                                        "0 is greedy.")
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(AskSettings.temperature)
        self.temperature.setSpecialValueText("greedy")
        self.status = name_control(QLabel("Type a prompt or a sentence with [MASK]; both language models answer."),
                                   "textAskStatus", "Ask status")
        self.status.setWordWrap(True)
        self.answers = name_control(QTextBrowser(), "textAskAnswers", "The models' answers")

        top = QHBoxLayout()
        top.addWidget(self.prompt, 1)
        top.addWidget(self.ask_button)
        options = QHBoxLayout()
        options.addWidget(QLabel("with"))
        options.addWidget(self.partner, 1)
        options.addWidget(QLabel("temperature"))
        options.addWidget(self.temperature)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(options)
        layout.addWidget(self.status)
        layout.addWidget(self.answers, 1)
        self._set_partners([])

    # -- the run and its partners -----------------------------------------------------------
    def set_run(self, run_dir: str | None) -> None:
        """The run the panel shows (from its Started event): its partners are looked up in the background."""
        if run_dir != self.run_dir:
            self.answers.clear()
            self.last_result = None
        self.run_dir = run_dir
        self.refresh_partners(force=True)

    def refresh_partners(self, force: bool = False) -> None:
        """Look the partner runs up again (a run of the other objective may have finished meanwhile); ``force`` even
        while a look-up runs (a new run: the pool answers in order, so the newest run's answer comes last)."""
        if not self.run_dir or (not force and self._partners_job is not None and not self._partners_job.done):
            return
        self._partners_job = start_job(find_partners, self.run_dir, pool=self.pool, on_returned=self._on_partners,
                                       on_errored=lambda exc: self._say(_sentence(exc)))

    def _on_partners(self, found: tuple[str, str, list]) -> None:
        self.objective, self.source, runs = found
        self._set_partners(runs)

    def _set_partners(self, runs: list) -> None:
        from ssl_studio.engine.text_partners import default_partner, no_partner_sentence, other_objective

        chosen = self.partner.currentData()
        self.partner.clear()
        other = other_objective(self.objective) if self.objective else "other LM"
        self.partner.addItem(f"no {other} run", None)
        for run in runs:
            self.partner.addItem(run.label(), str(run.path))
            self.partner.setItemData(self.partner.count() - 1, str(run.path), Qt.ItemDataRole.ToolTipRole)
        best = default_partner(runs)
        keep = self.partner.findData(chosen) if chosen else -1
        self.partner.setCurrentIndex(keep if keep > 0 else self.partner.findData(str(best.path)) if best is not None else 0)
        if self.objective and best is None and self.run_dir and self.last_result is None and not self.busy:
            self._say(no_partner_sentence(self.objective, self.source, Path(self.run_dir).parent))

    # -- asking -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.done

    def settings(self) -> AskSettings:
        return AskSettings(temperature=float(self.temperature.value()))

    def ask(self) -> None:
        text = self.prompt.text()
        if not self.run_dir:
            self._say("No text run to ask yet: start a causal-lm or masked-lm run, or open one from the runs browser.")
            return
        if not self.objective:  # the run folder is still being read (or it could not be: the status says why)
            if self._partners_job is not None and not self._partners_job.done:
                self._say("Still reading this run's folder; ask again in a moment.")
            return
        if self.busy:
            return
        live = self.request_live_model(self.run_dir) if self.request_live_model is not None else None
        self.ask_button.setEnabled(False)
        self._say("Asking" + (" the live model (at its next step)" if live is not None else "") + "…")
        self._job = start_job(ask_models, text, self.settings(), self.run_dir, self.objective, live, self.partner.currentData(),
                              pool=self.pool, on_returned=self._on_answer, on_errored=self._on_error,
                              on_finished=lambda: self.ask_button.setEnabled(True))

    def _on_answer(self, result: dict[str, Any]) -> None:
        self.last_result = result
        self.answers.setHtml(answer_html(result))
        both = result.get("causal") is not None and result.get("masked") is not None
        self._say("Both models answered." if both else "One model answered (choose a run of the other objective to compare).")

    def _on_error(self, exc: BaseException) -> None:
        self._say(_sentence(exc))

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(3000)


def _sentence(exc: BaseException) -> str:
    from ssl_studio.params import ConfigError

    if isinstance(exc, ConfigError):
        return str(exc)[0].upper() + str(exc)[1:] if str(exc) else "The models could not answer."
    return f"The models could not answer ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})."


__all__ = ["AskBox", "answer_html", "ask_models", "find_partners"]
