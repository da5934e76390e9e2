"""Zero-shot predictions of an image-text model, live, with prompts the user can rewrite.

A grid of probe images shows each one's three best class prompts and their
probabilities as training goes (from the ``Visuals`` events of kind
"zeroshot": normalised image embeddings, the class embeddings of the default
prompts, the logit scale).  The class names and prompt templates are editable
and re-score at once, without retraining: the panel asks its *scorer* (a
``ssl_studio.engine.zeroshot.TextScorer`` the window binds to the run, reading
a CPU copy of the text tower, never the model being trained) for new class
embeddings and re-ranks.  A caption box ranks the probe images by similarity
to any sentence, and after evaluation the confusion matrix shows where the
prompts fail; clicking a cell lists its images.

Probe images are found in the ImageSet by the indices of the latest ``Probe``
event: the trainer's visuals are the first images of the probe set.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QScrollArea, QTabWidget,
                               QVBoxLayout, QWidget)

from ssl_studio.engine.events import Evaluated, Probe, Started, Visuals
from ssl_studio.gui.panels.base import VisualPanel, image_to_pixmap, name_control
from ssl_studio.gui.panels.zeroshot_confusion import CELL_IMAGES, CELL_SIZE, ConfusionPage, _Cell, cell_strip  # noqa: F401 - CELL_IMAGES re-exported

GRID_COLUMNS = 4  # at most; fewer when the panel is narrow
MAX_CELLS = 16
TOP_K = 3
SEARCH_RESULTS = 10
RESCORE_DELAY_MS = 150  # typing in an editor re-scores after a pause this long

Scorer = Callable[[list[str]], Any]


def _fill(template: str, name: str) -> str:
    return template.replace("{}", name) if "{}" in template else f"{template} {name}".strip()


def ensemble(scorer: Scorer, class_names: Sequence[str], templates: Sequence[str]) -> np.ndarray | None:
    """C×D class embeddings: mean of each class's normalised prompt embeddings, renormalised."""
    if not class_names or not templates:
        return None
    flat = [_fill(t, c) for c in class_names for t in templates]
    emb = scorer(flat)
    if emb is None:
        return None
    emb = np.asarray(emb, dtype=np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb = emb.reshape(len(class_names), len(templates), -1).mean(1)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def probabilities(image_emb: np.ndarray, class_emb: np.ndarray, logit_scale: float, logit_bias: float | None, kind: str) -> np.ndarray:
    """CLIP: softmax over classes of scale·cos; SigLIP: an independent sigmoid per class (as the engine computes them)."""
    logits = float(logit_scale) * np.asarray(image_emb, np.float32) @ np.asarray(class_emb, np.float32).T
    if kind == "siglip":
        return 1.0 / (1.0 + np.exp(-(logits + float(logit_bias or 0.0))))
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class ZeroShotPanel(ConfusionPage, VisualPanel):
    title = "Zero-shot"
    visual_kind = "zeroshot"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("zeroshotPanel")
        self.setAccessibleName("Zero-shot panel")
        self.scorer: Scorer | None = None
        self._build()
        self.clear()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.status = name_control(QLabel("Waiting for the first zero-shot visuals…"), "zeroshotStatus", "Zero-shot status")
        self.status.setWordWrap(True)

        grid_host = QWidget()
        self.grid = QGridLayout(grid_host)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(4)
        self.cells = []
        for k in range(MAX_CELLS):
            cell = _Cell(f"zeroshotCell{k}")
            cell.hide()
            self.grid.addWidget(cell, k // GRID_COLUMNS, k % GRID_COLUMNS)
            self.cells.append(cell)
        grid_scroll = QScrollArea()
        grid_scroll.setWidget(grid_host)
        grid_scroll.setWidgetResizable(True)
        grid_scroll.setFrameShape(QFrame.Shape.NoFrame)

        self.class_edit = name_control(QPlainTextEdit(), "zeroshotClasses", "Class names",
                                       "One class name per line; the predictions re-score as you type (no retraining).")
        self.template_edit = name_control(QPlainTextEdit(), "zeroshotTemplates", "Prompt templates",
                                          "One template per line, {} is the class name; the class embedding is the mean of its prompts.")
        for edit in (self.class_edit, self.template_edit):
            edit.setMaximumHeight(90)
        self.prompt_note = name_control(QLabel(""), "zeroshotPromptNote", "Prompt note")
        self.prompt_note.setWordWrap(True)
        self.prompt_note.setStyleSheet("font-size: 10px; color: #a05000;")
        editors = QWidget()
        ev = QVBoxLayout(editors)
        ev.setContentsMargins(2, 0, 2, 0)
        pair = QGridLayout()  # classes and templates side by side: the confusion matrix gets the height
        pair.addWidget(QLabel("Classes"), 0, 0)
        pair.addWidget(self.class_edit, 1, 0)
        pair.addWidget(QLabel("Templates ({} = class)"), 0, 1)
        pair.addWidget(self.template_edit, 1, 1)
        ev.addLayout(pair)
        ev.addWidget(self.prompt_note)

        self.search_edit = name_control(QLineEdit(), "zeroshotSearch", "Caption search",
                                        "Type any caption: the probe images are ranked by cosine similarity to it.")
        self.search_edit.setPlaceholderText("Type a caption, e.g. a small red triangle at the top left")
        self.search_note = name_control(QLabel(""), "zeroshotSearchNote", "Caption search note")
        self.search_note.setStyleSheet("font-size: 10px;")
        search_scroll, self.search_cells = cell_strip("zeroshotSearchResult", SEARCH_RESULTS, size=48, height=96, spacing=4)

        # two pages, each with the dock's whole size: the live predictions with their prompts, and the
        # confusion matrix after evaluation (shown when an evaluation arrives)
        predictions = QWidget()
        pv = QVBoxLayout(predictions)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(grid_scroll, 1)
        pv.addWidget(editors)
        confusion = self._build_confusion()
        split = name_control(QTabWidget(), "zeroshotPages", "Zero-shot pages")
        split.setDocumentMode(True)
        split.addTab(predictions, "Predictions")
        split.addTab(confusion, "Confusion")
        self.pages = split
        self.grid_scroll = grid_scroll
        grid_scroll.setMinimumHeight(CELL_SIZE + 60)
        grid_scroll.viewport().installEventFilter(self)
        self.plot_widget.installEventFilter(self)

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(2)
        root.addWidget(self.status)
        root.addWidget(split, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Caption"))
        row.addWidget(self.search_edit, 1)
        root.addLayout(row)
        root.addWidget(self.search_note)
        root.addWidget(search_scroll)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(RESCORE_DELAY_MS)
        self._timer.timeout.connect(self._prompts_edited)
        self.class_edit.textChanged.connect(self._timer.start)
        self.template_edit.textChanged.connect(self._timer.start)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(RESCORE_DELAY_MS)
        self._search_timer.timeout.connect(lambda: self.search(self.search_edit.text()))
        self.search_edit.textChanged.connect(self._search_timer.start)
        self.search_edit.returnPressed.connect(lambda: self.search(self.search_edit.text()))
        self.plot_widget.scene().sigMouseClicked.connect(self._confusion_clicked)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if obj is self.grid_scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._reflow_grid(event.size().width())
        elif obj is self.plot_widget and event.type() == QEvent.Type.Resize:
            self._label_confusion()  # counts and names for the new size
        return super().eventFilter(obj, event)

    def _reflow_grid(self, width: int) -> None:
        """As many columns of images as the width holds (1 to GRID_COLUMNS)."""
        cell_width = CELL_SIZE + 44 + 8
        columns = max(1, min(GRID_COLUMNS, width // cell_width))
        if columns == getattr(self, "_columns", None):
            return
        self._columns = columns
        for k, cell in enumerate(self.cells):
            self.grid.removeWidget(cell)
            self.grid.addWidget(cell, k // columns, k % columns)

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        self.step = 0
        self.image_emb: np.ndarray | None = None
        self.event_class_emb: np.ndarray | None = None
        self.event_class_names: list[str] | None = None
        self.event_templates: list[str] | None = None
        self.class_emb: np.ndarray | None = None
        self.probs: np.ndarray | None = None
        self.scored_names: list[str] = []
        self.logit_scale, self.logit_bias, self.kind = 1.0, None, "clip"
        self.probe_indices: np.ndarray | None = None
        self.probe_features: np.ndarray | None = None
        self._projected: tuple[Any, np.ndarray] | None = None
        self.search_ranking: list[tuple[int, float]] = []
        self.confusion: np.ndarray | None = None
        self.confusion_names: list[str] = []
        self.eval_indices = self.eval_preds = self.eval_labels = None
        self.selected_cell: tuple[int, int] | None = None
        self.cell_members: list[int] = []
        self.report: dict | None = None
        for cell in self.cells + self.search_cells + self.cell_images:
            cell.hide()
        self.confusion_image.clear()
        self.attribute_label.setText("")
        self._clear_confusion_texts()
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).setTicks(None)  # the last run's class names go with it
        self.plot.setTitle("Confusion (after evaluation)", size="9pt")
        self.cell_caption.setText("Click a cell of the confusion matrix to see its images.")
        self.pages.setCurrentIndex(0)
        for edit in (self.class_edit, self.template_edit):  # the next run's classes and prompts fill them
            edit.blockSignals(True)
            edit.setPlainText("")
            edit.blockSignals(False)
        self._timer.stop()
        self.status.setText("Waiting for the first zero-shot visuals…")
        self.prompt_note.setText("")
        self.search_note.setText("")

    def set_scorer(self, scorer: Scorer | None) -> None:
        """``scorer(texts) -> N×D normalised text embeddings`` (or None while it has nothing to score with)."""
        self.scorer = scorer
        self._projected = None
        if self.image_emb is not None:
            self.rescore()

    def has_content(self) -> bool:
        return self.image_emb is not None

    def on_started(self, ev: Started) -> None:
        if ev.class_names:
            self.class_names = list(ev.class_names)

    def on_event(self, ev: Any) -> bool:
        if isinstance(ev, Probe) and ev.indices is not None:
            self.probe_indices = np.asarray(ev.indices).astype(np.int64)
            if ev.features is not None and len(ev.features) == len(ev.indices):
                self.probe_features = np.asarray(ev.features, np.float32)
                self._projected = None
        elif isinstance(ev, Evaluated) and isinstance(ev.results, dict) and "zeroshot" in ev.results:
            self.set_report(ev.results["zeroshot"])
        return False

    def show_visuals(self, ev: Visuals) -> None:
        self.set_visuals(ev.arrays, ev.info, ev.step)

    # -- live predictions --------------------------------------------------------------
    def set_visuals(self, arrays: dict[str, np.ndarray], info: dict[str, Any] | None = None, step: int = 0) -> None:
        info = info or {}
        self.step = int(step)
        emb = arrays.get("image_embeddings")
        if emb is None:
            return
        self.image_emb = np.asarray(emb, np.float32)
        self.logit_scale = float(info.get("logit_scale", arrays.get("logit_scale", 1.0)) or 1.0)
        bias = info.get("logit_bias")
        self.logit_bias = None if bias is None else float(bias)
        self.kind = str(info.get("kind", "clip"))
        cls = arrays.get("class_embeddings")
        self.event_class_emb = None if cls is None else np.asarray(cls, np.float32)
        self.event_class_names = list(info.get("class_names") or self.class_names or [])
        self.event_templates = list(info.get("templates") or [])
        if not self.class_lines() and self.event_class_names:
            self._set_editor(self.class_edit, self.event_class_names)
        if not self.template_lines() and self.event_templates:
            self._set_editor(self.template_edit, self.event_templates)
        self._projected = None
        self.rescore()
        if self.search_edit.text().strip():
            self.search(self.search_edit.text())

    @staticmethod
    def _lines(edit: QPlainTextEdit) -> list[str]:
        return [line.strip() for line in edit.toPlainText().splitlines() if line.strip()]

    def class_lines(self) -> list[str]:
        return self._lines(self.class_edit)

    def template_lines(self) -> list[str]:
        return self._lines(self.template_edit)

    def _set_editor(self, edit: QPlainTextEdit, lines: Sequence[str]) -> None:
        edit.blockSignals(True)
        edit.setPlainText("\n".join(lines))
        edit.blockSignals(False)

    def set_prompts(self, class_names: Sequence[str] | None = None, templates: Sequence[str] | None = None) -> None:
        """Replace the class names and/or templates and re-score now."""
        if class_names is not None:
            self._set_editor(self.class_edit, list(class_names))
        if templates is not None:
            self._set_editor(self.template_edit, list(templates))
        self.rescore()

    def _prompts_edited(self) -> None:
        self.rescore()

    def _current_class_embeddings(self) -> tuple[np.ndarray | None, list[str], str]:
        names, templates = self.class_lines(), self.template_lines() or ["{}"]
        unchanged = names == (self.event_class_names or []) and templates == (self.event_templates or ["{}"])
        if self.scorer is not None and names:
            emb = ensemble(self.scorer, names, templates)
            if emb is not None:
                return emb, names, "your prompts" if not unchanged else "the default prompts"
        if unchanged and self.event_class_emb is not None:
            return self.event_class_emb, names, "the default prompts"
        if names and self.event_class_emb is not None and len(names) == len(self.event_class_emb):
            return self.event_class_emb, list(self.event_class_names or names), "the default prompts (edits need the run's text encoder)"
        return None, names, ""

    def rescore(self) -> None:
        """Class embeddings from the current names and templates; every probe image's top-3."""
        self._timer.stop()
        if self.image_emb is None:
            return
        emb, names, source = self._current_class_embeddings()
        self.class_emb, self.scored_names = emb, names
        self._update_prompt_note()
        if emb is None or not len(names):
            self.probs = None
            self.status.setText(f"Step {self.step}: no class names to score; type some on the right.")
            self._draw_cells()
            return
        self.probs = probabilities(self.image_emb, emb, self.logit_scale, self.logit_bias, self.kind)
        how = "softmax" if self.kind != "siglip" else "sigmoid per class"
        self.status.setText(f"Step {self.step}: top-{TOP_K} of {len(names)} classes for {len(self.image_emb)} probe images, "
                            f"scored with {source} ({how}, logit scale {self.logit_scale:.1f}).")
        self._draw_cells()

    def top_predictions(self, i: int, k: int = TOP_K) -> list[tuple[str, float]]:
        if self.probs is None:
            return []
        order = np.argsort(-self.probs[i], kind="stable")[:k]
        return [(self.scored_names[j], float(self.probs[i, j])) for j in order]

    def _image_index(self, i: int) -> int | None:
        if self.probe_indices is None or i >= len(self.probe_indices):
            return None
        return int(self.probe_indices[i])

    def _true_name(self, index: int | None) -> str | None:
        imageset = self.imageset
        labels = getattr(imageset, "labels", None) if imageset is not None else None
        names = self.class_names or getattr(imageset, "class_names", None)
        if index is None or labels is None or not names or index >= len(labels):
            return None
        return str(names[int(labels[index])])

    def _pixmap(self, index: int | None, size: int):
        images = getattr(self.imageset, "images", None) if self.imageset is not None else None
        if index is None or images is None or not 0 <= index < len(images):
            return None
        return image_to_pixmap(images[index], size)

    def _draw_cells(self) -> None:
        n = 0 if self.image_emb is None else min(len(self.image_emb), MAX_CELLS)
        for i, cell in enumerate(self.cells):
            if i >= n:
                cell.hide()
                continue
            index = self._image_index(i)
            pix = self._pixmap(index, cell.size)
            if pix is not None:
                cell.image.setPixmap(pix)
            else:
                cell.image.setText("?" if index is None else f"#{index}")
            truth = self._true_name(index)
            lines = []
            for name, p in self.top_predictions(i):
                mark = "<b>" if truth is not None and name == truth else ""
                end = "</b>" if mark else ""
                lines.append(f"{mark}{name} {p:.2f}{end}")
            head = f"<i>{truth}</i><br>" if truth is not None else ""
            cell.text.setText(head + "<br>".join(lines))
            cell.setToolTip(f"image #{index}" if index is not None else "probe image")
            cell.show()

    def _update_prompt_note(self) -> None:
        notes = []
        if self.scorer is None and (self.class_lines() != (self.event_class_names or []) or
                                    (self.template_lines() or ["{}"]) != (self.event_templates or ["{}"])):
            notes.append("Edited prompts are scored once the run's text encoder is connected.")
        unknown_fn = getattr(self.scorer, "unknown_words", None)
        if unknown_fn is not None:
            words = sorted({w for c in self.class_lines() for t in (self.template_lines() or ["{}"]) for w in unknown_fn(_fill(t, c))})
            if words:
                notes.append("Not in the captions' vocabulary (read as <unk>): " + ", ".join(words[:12]))
        self.prompt_note.setText(" ".join(notes))

    # -- caption search ----------------------------------------------------------------
    def _search_pool(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(unit image embeddings, image indices) to rank: every probe image when the scorer can project
        the probe's backbone features, else the visuals' probe images."""
        project = getattr(self.scorer, "project_images", None)
        if project is not None and self.probe_features is not None:
            if self._projected is None or self._projected[0] is not getattr(self.scorer, "snapshot", None):
                z = project(self.probe_features)
                if z is not None:
                    self._projected = (getattr(self.scorer, "snapshot", None), np.asarray(z, np.float32))
            if self._projected is not None:
                return self._projected[1], self.probe_indices
        if self.image_emb is None:
            return None, None
        idx = self.probe_indices[: len(self.image_emb)] if self.probe_indices is not None else None
        return self.image_emb, idx

    def search(self, text: str) -> list[tuple[int, float]]:
        """Rank the probe images by similarity to ``text``; returns (position in the pool, cosine) best first."""
        self._search_timer.stop()
        text = text.strip()
        self.search_ranking = []
        if not text:
            self.search_note.setText("")
            self._draw_search([], None)
            return []
        if self.scorer is None:
            self.search_note.setText("Caption search needs the run's text encoder (open a live or finished CLIP run).")
            self._draw_search([], None)
            return []
        q = self.scorer([text])
        pool, idx = self._search_pool()
        if q is None or pool is None:
            self.search_note.setText("No image embeddings yet: wait for the first zero-shot visuals.")
            self._draw_search([], None)
            return []
        sims = pool @ np.asarray(q, np.float32)[0]
        order = np.argsort(-sims, kind="stable")[:SEARCH_RESULTS]
        self.search_ranking = [(int(j), float(sims[j])) for j in order]
        unknown_fn = getattr(self.scorer, "unknown_words", None)
        unknown = unknown_fn(text) if unknown_fn is not None else []
        note = f"Best {len(order)} of {len(pool)} probe images for “{text}”"
        if unknown:
            note += f" (unknown words read as <unk>: {', '.join(unknown)})"
        self.search_note.setText(note)
        self._draw_search(self.search_ranking, idx)
        return self.search_ranking

    def _draw_search(self, ranking: list[tuple[int, float]], idx: np.ndarray | None) -> None:
        for k, cell in enumerate(self.search_cells):
            if k >= len(ranking):
                cell.hide()
                continue
            j, sim = ranking[k]
            index = int(idx[j]) if idx is not None and j < len(idx) else None
            pix = self._pixmap(index, cell.size)
            if pix is not None:
                cell.image.setPixmap(pix)
            else:
                cell.image.setText(f"#{index}" if index is not None else str(j))
            cell.text.setText(f"{sim:.2f}")
            cap = getattr(self.imageset, "captions", None) if self.imageset is not None else None
            cell.setToolTip(cap[index] if cap is not None and index is not None and index < len(cap) else f"image #{index}")
            cell.show()

    # -- confusion matrix --------------------------------------------------------------
    def set_imageset(self, imageset) -> None:
        super().set_imageset(imageset)
        if self.image_emb is not None:
            self._draw_cells()

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.plot

    def table(self):
        header = ["cell", "image_index", "true_class"] + [f"{kind}{k + 1}" for k in range(TOP_K) for kind in ("class", "p")]
        rows = []
        n = 0 if self.image_emb is None else len(self.image_emb)
        for i in range(n):
            index = self._image_index(i)
            row: list[Any] = [i, "" if index is None else index, self._true_name(index) or ""]
            for name, p in self.top_predictions(i):
                row += [name, round(p, 6)]
            rows.append(row)
        return header, rows


__all__ = ["ZeroShotPanel", "ensemble", "probabilities"]
