"""The Text panel: what the language model makes of held-out windows, live.

For the causal LM each row is a held-out prompt (a window's first half), the model's sampled
continuation and the true one; for the masked LM a window with three positions masked and the
model's top-3 fills with their probabilities beside the true tokens.  The rows come from
``Visuals(kind="text")`` events (``LanguageModel.visuals`` in ``objectives/language.py``), drawn
with the same seed at every step, so the panel shows one model getting better on the same text.
Below them, the Ask box (``text_ask.py``) puts a person's own prompt or [MASK] sentence to this
run's model and to a run of the other text objective.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QTextBrowser, QVBoxLayout, QWidget

from ssl_studio.engine.events import TEXT_BACKBONE, Finished, Started, Visuals
from ssl_studio.gui.panels.base import Panel
from ssl_studio.gui.panels.text_ask import AskBox

HEADINGS = {"continuation": ("prompt", "model's continuation", "true continuation"),
            "fill": ("masked window", "model's top-3 fills (probability)", "true tokens")}


class TextPanel(Panel):
    title = "Text"
    visual_kind = "text"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("textPanel")
        self.status = QLabel("No text yet: the language model's answers on held-out text appear at each visuals step.")
        self.status.setWordWrap(True)
        self.view = QTextBrowser()
        self.view.setObjectName("textPanelView")
        self.ask_box = AskBox()
        samples = QWidget()
        column = QVBoxLayout(samples)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.status)
        column.addWidget(self.view, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("textPanelSplitter")
        self.splitter.addWidget(samples)
        self.splitter.addWidget(self.ask_box)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)  # the answers to one's own question get the larger share
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.splitter)
        self.last: Visuals | None = None

    def set_run(self, run_dir: str) -> None:
        """The run shown, for the Ask box (the window calls this when the panel appears after the run's Started event)."""
        self.ask_box.set_run(run_dir)

    def set_live_model_source(self, source) -> None:
        """``source(run_dir)``: a queue that will receive the live network, or None (the window's; see ``text_ask``)."""
        self.ask_box.request_live_model = source

    def clear(self) -> None:
        self.last = None
        self.view.clear()

    def handle_events(self, events: Sequence[Any]) -> None:
        latest = None
        for ev in events:
            if isinstance(ev, Started):
                if ev.resumed_from_step == 0:
                    self.clear()
                if ev.backbone == TEXT_BACKBONE:
                    self.ask_box.set_run(ev.run_dir)
            elif isinstance(ev, Finished):
                self.ask_box.refresh_partners()
            elif isinstance(ev, Visuals) and ev.kind == self.visual_kind:
                latest = ev
        if latest is not None:
            self._draw(latest)
            self.ask_box.refresh_partners()  # at each visuals step: a partner may have finished meanwhile

    def _draw(self, ev: Visuals) -> None:
        self.last = ev
        info = ev.info or {}
        mode = info.get("mode", "continuation")
        heads = HEADINGS.get(mode, HEADINGS["continuation"])
        parts = []
        for row in info.get("rows", []):
            cells = (row.get("input", ""), row.get("output", ""), row.get("truth", ""))
            parts.append("".join(f"<p><b>{html.escape(h)}:</b> {html.escape(str(c))}</p>" for h, c in zip(heads, cells)) + "<hr/>")
        self.view.setHtml("".join(parts))
        what = "sampled continuations" if mode == "continuation" else "fills of masked positions"
        self.status.setText(f"Step {ev.step}: {what} on held-out windows (the same windows and draws at every step).")

    def shutdown(self) -> None:
        self.ask_box.shutdown()

    def table(self):
        info = (self.last.info or {}) if self.last is not None else {}
        return ["input", "output", "truth"], [[r.get("input", ""), r.get("output", ""), r.get("truth", "")] for r in info.get("rows", [])]
