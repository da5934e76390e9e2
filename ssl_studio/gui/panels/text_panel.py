"""The Text panel: what the language model makes of held-out windows, live.

For the causal LM each row is a held-out prompt (a window's first half), the model's sampled
continuation and the true one; for the masked LM a window with three positions masked and the
model's top-3 fills with their probabilities beside the true tokens.  The rows come from
``Visuals(kind="text")`` events (``LanguageModel.visuals`` in ``objectives/language.py``), drawn
with the same seed at every step, so the panel shows one model getting better on the same text.
Typing a prompt of one's own is not offered yet.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from ssl_studio.engine.events import Started, Visuals
from ssl_studio.gui.panels.base import Panel

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
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.view, 1)
        self.last: Visuals | None = None

    def clear(self) -> None:
        self.last = None
        self.view.clear()

    def handle_events(self, events: Sequence[Any]) -> None:
        latest = None
        for ev in events:
            if isinstance(ev, Started) and ev.resumed_from_step == 0:
                self.clear()
            elif isinstance(ev, Visuals) and ev.kind == self.visual_kind:
                latest = ev
        if latest is not None:
            self._draw(latest)

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

    def table(self):
        info = (self.last.info or {}) if self.last is not None else {}
        return ["input", "output", "truth"], [[r.get("input", ""), r.get("output", ""), r.get("truth", "")] for r in info.get("rows", [])]
