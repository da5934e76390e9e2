"""The zero-shot panel's second page: the confusion matrix of an evaluation, and the images of a cell.

A mixin of ``ZeroShotPanel`` (it reads the panel's class names, image set and
pages): counts are written only where they fit in a cell and class names only
where they fit under a column (numbers otherwise), so the matrix stays legible
in a narrow dock.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from ssl_studio.gui.panels.base import name_control

CELL_SIZE = 72
CELL_IMAGES = 12


class _Cell(QFrame):
    """One image with a few lines of text under it."""

    def __init__(self, name: str, size: int = CELL_SIZE, lines: int = 3):
        super().__init__()
        self.setObjectName(name)
        self.setAccessibleName(name)
        v = QVBoxLayout(self)
        v.setContentsMargins(2, 2, 2, 2)
        v.setSpacing(1)
        self.image = QLabel()
        self.image.setFixedSize(size, size)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        self.text.setStyleSheet("font-size: 10px;")
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setFixedWidth(size + 44)  # "crescent 0.51" in full under each image
        v.addWidget(self.image, 0, Qt.AlignmentFlag.AlignHCenter)
        v.addWidget(self.text)
        self.size = size


def cell_strip(name_prefix: str, count: int, size: int, height: int, spacing: int) -> tuple[QScrollArea, list[_Cell]]:
    """A scrolling row of ``count`` hidden one-line image cells (search results, a confusion cell's images)."""
    strip = QWidget()
    row = QHBoxLayout(strip)
    row.setContentsMargins(2, 0, 2, 0)
    row.setSpacing(spacing)
    cells = []
    for k in range(count):
        cell = _Cell(f"{name_prefix}{k}", size=size, lines=1)
        cell.hide()
        row.addWidget(cell)
        cells.append(cell)
    row.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidget(strip)
    scroll.setWidgetResizable(True)
    scroll.setFixedHeight(height)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    return scroll, cells


class ConfusionPage:
    """The confusion matrix after evaluation; clicking a cell lists its held-out images."""

    def _build_confusion(self) -> QWidget:
        self.plot_widget = pg.PlotWidget()
        self.plot_widget.setObjectName("zeroshotConfusion")
        self.plot_widget.setAccessibleName("Zero-shot confusion matrix")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setTitle("Confusion (after evaluation)", size="9pt")
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.getViewBox().setMouseEnabled(False, False)
        self.plot.setLabel("left", "true")
        self.plot.setLabel("bottom", "predicted")
        self.confusion_image = pg.ImageItem()
        self.confusion_image.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
        self.plot.addItem(self.confusion_image)
        self._confusion_texts: list = []
        self.attribute_label = name_control(QLabel(""), "zeroshotAttributes", "Zero-shot accuracy by caption attribute",
                                            "Zero-shot accuracy of each word the captions name: which of them the image tower can see.")
        self.attribute_label.setWordWrap(True)
        self.attribute_label.setStyleSheet("font-size: 10px;")
        self.cell_caption = name_control(QLabel("Click a cell of the confusion matrix to see its images."), "zeroshotCellCaption",
                                         "Confusion cell caption")
        self.cell_caption.setWordWrap(True)
        cell_scroll, self.cell_images = cell_strip("zeroshotCellImage", CELL_IMAGES, size=40, height=80, spacing=3)

        confusion = QWidget()
        rv = QVBoxLayout(confusion)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.plot_widget, 1)
        rv.addWidget(self.attribute_label)
        rv.addWidget(self.cell_caption)
        rv.addWidget(cell_scroll)
        self.plot_widget.setMinimumHeight(160)

        return confusion

    def load_report(self, source: str | Path | dict) -> None:
        """The zero-shot section of a run's report.json (a run folder, the file, or the parsed dict)."""
        if isinstance(source, dict):
            report = source
        else:
            path = Path(source)
            path = path / "report.json" if path.is_dir() else path
            report = json.loads(path.read_text(encoding="utf-8"))
        if "zeroshot" in report:
            report = report["zeroshot"]
        self.set_report(report)

    def set_report(self, report: dict) -> None:
        conf = report.get("confusion")
        if conf is None:
            return
        self.report = report
        self.pages.setCurrentIndex(1)  # the evaluation's result is what is new
        self.confusion = np.asarray(conf, dtype=np.float64)
        self.confusion_names = list(report.get("class_names") or self.class_names or [str(i) for i in range(len(self.confusion))])
        self.eval_indices = np.asarray(report.get("indices", []), np.int64)
        self.eval_preds = np.asarray(report.get("predictions", []), np.int64)
        self.eval_labels = np.asarray(report.get("labels", []), np.int64)
        rows = self.confusion.sum(1, keepdims=True)
        share = self.confusion / np.maximum(rows, 1)
        self.confusion_image.setImage(share.T, levels=(0.0, 1.0))  # ImageItem's first axis is x: columns = predicted
        self._label_confusion()
        attrs = report.get("attributes") or {}
        self.attribute_label.setText(
            "Zero-shot by attribute: " + " · ".join(f"{k} {v['top1']:.2f} (chance {v['chance']:.2f})" for k, v in attrs.items()
                                                     if v.get("top1") is not None) if attrs else "")
        top1 = report.get("top1")
        extra = ""
        if report.get("seen") is not None or report.get("unseen") is not None:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            extra = f", seen pairs {fmt(report.get('seen'))}, unseen pairs {fmt(report.get('unseen'))}"
        self.plot.setTitle(f"Confusion: zero-shot top-1 {top1:.3f}{extra}" if top1 is not None else "Confusion", size="9pt")

    def _label_confusion(self) -> None:
        """Counts and class names for the matrix's size on screen (again whenever the plot is resized)."""
        if getattr(self, "confusion", None) is None:  # also while the panel is being built
            return
        share = self.confusion / np.maximum(self.confusion.sum(1, keepdims=True), 1)
        self._clear_confusion_texts()
        c = len(self.confusion)
        # the matrix is square (aspect locked): its side is the smaller of the plot's width and height, less the axes
        side = max(min(self.plot_widget.width() - 80, self.plot_widget.height() - 70), 40)
        digits = len(str(int(self.confusion.max()))) if self.confusion.size else 1
        if side / max(c, 1) >= 7 * digits + 5:  # a count fits in its cell: otherwise the colours alone (and the cell's click)
            for i in range(c):
                for j in range(c):
                    if self.confusion[i, j]:
                        t = pg.TextItem(f"{int(self.confusion[i, j])}", anchor=(0.5, 0.5),
                                        color="#000" if share[i, j] > 0.6 else "#fff")
                        t.setPos(j + 0.5, i + 0.5)
                        self.plot.addItem(t)
                        self._confusion_texts.append(t)
        chars = min(8, int(side / max(c, 1) / 7))  # letters that fit under a column
        names = self.confusion_names
        if chars >= 4:
            bottom = [(k + 0.5, n[:chars]) for k, n in enumerate(names)]
            left = [(k + 0.5, n[:10]) for k, n in enumerate(names)]
        else:  # too narrow for names: numbers under the columns, "number name" beside rows tall enough for a line
            bottom = [(k + 0.5, str(k)) for k in range(len(names))]
            tall = side / max(c, 1) >= 14
            left = [(k + 0.5, f"{k} {n[:10]}" if tall else str(k)) for k, n in enumerate(names)]
        self.plot.getAxis("bottom").setTicks([bottom])
        self.plot.getAxis("left").setTicks([left])

    def _clear_confusion_texts(self) -> None:
        for t in self._confusion_texts:
            self.plot.removeItem(t)
        self._confusion_texts = []

    def _confusion_clicked(self, ev) -> None:
        if self.confusion is None or ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= row < len(self.confusion) and 0 <= col < len(self.confusion):
            self.select_cell(row, col)

    def select_cell(self, true_class: int, predicted: int) -> list[int]:
        """Show the held-out images of class ``true_class`` predicted as ``predicted``; returns their indices."""
        self.selected_cell = (true_class, predicted)
        members: list[int] = []
        if self.eval_indices is not None and len(self.eval_indices):
            mask = (self.eval_labels == true_class) & (self.eval_preds == predicted)
            members = self.eval_indices[mask].tolist()
        self.cell_members = members
        names = self.confusion_names
        count = int(self.confusion[true_class, predicted]) if self.confusion is not None else len(members)
        self.cell_caption.setText(f"{names[true_class]} predicted as {names[predicted]}: {count} image{'s' if count != 1 else ''}"
                                  + (f" (showing {min(len(members), CELL_IMAGES)})" if members else ""))
        for k, cell in enumerate(self.cell_images):
            if k >= len(members):
                cell.hide()
                continue
            pix = self._pixmap(members[k], cell.size)
            if pix is not None:
                cell.image.setPixmap(pix)
            else:
                cell.image.setText(f"#{members[k]}")
            cell.text.setText(f"#{members[k]}")
            cell.show()
        return members
