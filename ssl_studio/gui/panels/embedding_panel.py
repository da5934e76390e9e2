"""The probe set in two dimensions, coloured by class, live.

PCA comes with every probe and is drawn as it arrives; t-SNE and UMAP show
structure PCA flattens but cost seconds, so they are computed on request in the
background from the last probe's features.  Hovering a point shows its image,
clicking it lists its nearest neighbours in feature space: the quickest way to
see *what* the representation groups together (colour? shape? nothing?).

One ScatterPlotItem is reused for every update, and per-point brushes are
references to one shared QBrush per class, so 10,000 points cost one numpy
gather and one ``setData``, not 10,000 Python objects.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout,
                               QWidget)

from ssl_studio.engine.events import Probe, Started
from ssl_studio.gui.fitting import ElidedLabel
from ssl_studio.gui.panels.base import Panel, class_colour, image_to_pixmap, legend_brush, name_control, watch_theme
from ssl_studio.gui.panels.projection import METHOD_TITLES, UMAP_HINT, ProjectionRunner, umap_available

POINT_SIZE = 6
NEIGHBOURS = 8
HOVER_RADIUS_PX = 7.0


def nearest_point(points: np.ndarray, x: float, y: float, px: float, py: float, radius_px: float) -> int | None:
    """Index of the point nearest (x, y) in screen pixels (px, py = view units per pixel), if within radius."""
    if points is None or len(points) == 0 or px <= 0 or py <= 0:
        return None
    dx = (points[:, 0] - x) / px
    dy = (points[:, 1] - y) / py
    d2 = dx * dx + dy * dy
    i = int(np.argmin(d2))
    return i if d2[i] <= radius_px * radius_px else None


def normalise_rows(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norms, 1e-12)


def nearest_neighbours(unit_features: np.ndarray, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows most cosine-similar to row i (itself excluded), best first, and their similarities."""
    sims = unit_features @ unit_features[i]
    sims[i] = -np.inf
    k = min(k, len(sims) - 1)
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-sims, k - 1)[:k]
    order = part[np.argsort(-sims[part], kind="stable")]
    return order.astype(np.int64), sims[order]


class _Inset(QFrame):
    """The hover card: the image under the cursor and its label."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("embeddingHoverInset")
        self.setAccessibleName("Image under the cursor")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setStyleSheet("#embeddingHoverInset { background: rgba(255,255,255,235); border: 1px solid #888; border-radius: 4px; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        self.text.setStyleSheet("color: #222; font-size: 11px;")
        layout.addWidget(self.image)
        layout.addWidget(self.text)
        self.hide()


class EmbeddingPanel(Panel):
    title = "Embedding"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("embeddingPanel")
        self.setAccessibleName("Embedding panel")
        self.step = 0
        self.samples = "images"  # what a point is called: "token windows" for a text run (Started.samples)
        self.pca_points: np.ndarray | None = None
        self.points: np.ndarray | None = None  # what is drawn now
        self.labels: np.ndarray | None = None
        self.indices: np.ndarray | None = None
        self.features: np.ndarray | None = None
        self.features_step = 0
        self._unit: np.ndarray | None = None
        self.projections: dict[str, tuple[np.ndarray, int]] = {}
        self.method = "pca"
        self.selected: int | None = None
        self.neighbour_indices = np.empty(0, np.int64)
        self.neighbour_sims = np.empty(0, np.float32)
        self.hovered: int | None = None
        self._brushes: list = []
        self._brush_array = None
        self._brush_labels: np.ndarray | None = None
        self._drawn_brush = None  # the brush (array) the scatter item holds now
        self._legend_key: tuple | None = None
        self.runner = ProjectionRunner(self)
        self.runner.finished.connect(self._projection_done)
        self.runner.failed.connect(self._projection_failed)
        self._build()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.method_combo = name_control(QComboBox(), "embeddingMethod", "Projection method",
                                         "PCA follows the run live; t-SNE and UMAP are computed on request from the latest probe.")
        for key in ("pca", "tsne", "umap"):
            self.method_combo.addItem(METHOD_TITLES[key], key)
        if not umap_available():
            item = self.method_combo.model().item(2)
            item.setEnabled(False)
            item.setText("UMAP (needs umap-learn)")  # greyed out with its reason in sight, not only in a tooltip
            self.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.method_combo.setMinimumContentsLength(7)  # the list opens wide enough; the closed box stays narrow
            item.setToolTip(UMAP_HINT)
            self.method_combo.setItemData(2, UMAP_HINT, Qt.ItemDataRole.ToolTipRole)
        self.compute_button = name_control(QPushButton("Compute"), "embeddingCompute", "Compute projection",
                                           "Compute the chosen projection from the latest probe's features, in the background.")
        self.compute_button.setEnabled(False)
        self.status = name_control(ElidedLabel("Waiting for the first probe…"), "embeddingStatus", "Embedding status")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addWidget(QLabel("Map"))
        bar.addWidget(self.method_combo)
        bar.addWidget(self.compute_button)
        bar.addSpacing(8)
        bar.addWidget(self.status, 1)

        self.plot_widget = name_control(pg.PlotWidget(), "embeddingPlot", "Embedding scatter plot",
                                        "Hover a point to see its image; click it to list its nearest neighbours.")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.hideButtons()
        # No axes: PCA, t-SNE and UMAP coordinates have no units worth reading, and tick labels
        # are most of a redraw's paint time at 10,000 points.
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(False)
        self.scatter = pg.ScatterPlotItem(size=POINT_SIZE, pxMode=True, pen=None, symbol="o", hoverable=False)
        self.plot.addItem(self.scatter)
        self._selected_pen, self._neighbour_pen = pg.mkPen("#E0218A", width=3), pg.mkPen("#FF7F0E", width=1.8)  # visible on light and dark
        self.highlight = pg.ScatterPlotItem(size=POINT_SIZE + 8, pxMode=True, brush=None, symbol="o")
        self.highlight.setZValue(5)
        self.plot.addItem(self.highlight)
        self.legend = self.plot.addLegend(offset=(-6, 6), labelTextSize="8pt", verSpacing=-6, brush=legend_brush())
        watch_theme([self.legend])
        self.inset = _Inset(self.plot_widget)

        self.neighbour_caption = name_control(ElidedLabel("Click a point to see its nearest neighbours."), "embeddingNeighbourCaption",
                                              "Nearest neighbours caption")
        strip = QWidget()
        strip_layout = QHBoxLayout(strip)
        strip_layout.setContentsMargins(2, 0, 2, 0)
        strip_layout.setSpacing(4)
        self.neighbour_cells: list[tuple[QLabel, QLabel]] = []
        for k in range(NEIGHBOURS + 1):
            cell = QWidget()
            v = QVBoxLayout(cell)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(0)
            img = QLabel()
            img.setFixedSize(56, 56)
            img.setAlignment(Qt.AlignmentFlag.AlignCenter)
            txt = QLabel()
            txt.setAlignment(Qt.AlignmentFlag.AlignCenter)
            txt.setStyleSheet("font-size: 10px;")
            v.addWidget(img)
            v.addWidget(txt)
            name_control(cell, f"embeddingNeighbour{k}", "Selected image" if k == 0 else f"Neighbour {k}")
            cell.hide()
            strip_layout.addWidget(cell)
            self.neighbour_cells.append((img, txt))
        strip_layout.addStretch(1)
        self.neighbour_strip = name_control(QScrollArea(), "embeddingNeighbours", "Nearest neighbours")
        self.neighbour_strip.setWidget(strip)
        self.neighbour_strip.setWidgetResizable(True)
        self.neighbour_strip.setFixedHeight(92)
        self.neighbour_strip.setFrameShape(QFrame.Shape.NoFrame)

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(2)
        root.addLayout(bar)
        root.addWidget(self.plot_widget, 1)
        root.addWidget(self.neighbour_caption)
        root.addWidget(self.neighbour_strip)

        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.compute_button.clicked.connect(self.compute_projection)
        scene = self.plot_widget.scene()
        self.plot_widget.viewport().installEventFilter(self)  # hide the hover card when the mouse leaves
        scene.sigMouseMoved.connect(self._mouse_moved)
        scene.sigMouseClicked.connect(self._mouse_clicked)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Leave:
            self._hide_hover()
        return False

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        self.runner.cancel()
        self.step = 0
        self.pca_points = self.points = self.labels = self.indices = self.features = self._unit = None
        self.projections.clear()
        self.selected = self.hovered = None
        self.neighbour_indices = np.empty(0, np.int64)
        self.scatter.setData([], [])
        self._drawn_brush = None
        self.highlight.setData([], [])
        self.inset.hide()
        self._show_neighbours()
        self.legend.clear()
        self._legend_key = None
        self.status.setText("Waiting for the first probe…")
        self.compute_button.setEnabled(False)

    def handle_events(self, events: Sequence[Any]) -> None:
        probe = None
        for ev in events:
            if isinstance(ev, Started):
                if ev.resumed_from_step == 0 and self.points is not None:
                    self.clear()
                if ev.class_names:
                    self.class_names = list(ev.class_names)
                self.samples = ev.samples
            elif isinstance(ev, Probe) and ev.points2d is not None:
                probe = ev  # only the newest probe in a batch is worth drawing
        if probe is not None:
            self.set_probe(probe.points2d, probe.labels, probe.indices, probe.features, probe.step)

    def shutdown(self) -> None:
        """Drop queued projections and wait briefly for a running one (scikit-learn cannot be interrupted)."""
        self.runner.cancel()
        self.runner.pool.clear()
        self.runner.wait(3000)

    def set_imageset(self, imageset) -> None:
        super().set_imageset(imageset)
        self._legend_key = None
        if self.points is not None:
            self._redraw()

    # -- data --------------------------------------------------------------------------
    def set_probe(self, points2d: np.ndarray, labels: np.ndarray | None = None, indices: np.ndarray | None = None,
                  features: np.ndarray | None = None, step: int = 0) -> None:
        """Show one probe's PCA (and keep its features for projections and neighbours)."""
        points2d = np.asarray(points2d, dtype=np.float32)
        n = len(points2d)
        self.step = int(step)
        self.pca_points = points2d
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64, copy=False)
        self.indices = np.arange(n) if indices is None else np.asarray(indices).astype(np.int64, copy=False)
        if features is not None and len(features) == n:
            self.features = features
            self.features_step = self.step
            self._unit = None  # normalised lazily, on the first click
        elif self.features is not None and len(self.features) != n:
            self.features = self._unit = None
        for method in list(self.projections):
            if len(self.projections[method][0]) != n:
                del self.projections[method]
        self.compute_button.setEnabled(self.features is not None and self.method != "pca")
        self._redraw()
        if self.selected is not None and self.selected < n:
            self.select_point(self.selected)

    def _current_points(self) -> tuple[np.ndarray | None, str]:
        if self.method != "pca" and self.method in self.projections:
            pts, step = self.projections[self.method]
            note = "" if step == self.step else f"; latest probe is step {self.step}: Compute to update"
            return pts, f"{METHOD_TITLES[self.method]} of the probe at step {step}{note}"
        if self.method != "pca":
            busy = " (computing…)" if self.runner.busy else ""
            return self.pca_points, f"PCA at step {self.step}; {METHOD_TITLES[self.method]} not computed yet{busy}"
        return self.pca_points, f"PCA of the probe at step {self.step}"

    def _class_count(self) -> int:
        n = len(self.class_names) if self.class_names else 0
        if self.labels is not None and len(self.labels):
            n = max(n, int(self.labels.max()) + 1)
        return n

    def _brushes_for(self, labels: np.ndarray | None):
        """Per-point brushes as references to one shared QBrush per class (cached for the fixed probe set)."""
        n_classes = self._class_count()
        if len(self._brushes) != max(n_classes, 1):
            self._brushes = [pg.mkBrush(class_colour(i, n_classes)) for i in range(max(n_classes, 1))]
            self._brush_labels = None
        if labels is None:
            return self._brushes[0]
        if self._brush_labels is None or not np.array_equal(self._brush_labels, labels):
            table = np.empty(len(self._brushes), dtype=object)
            table[:] = self._brushes
            self._brush_array = table[np.clip(labels, 0, len(self._brushes) - 1)]
            self._brush_labels = labels.copy()
        return self._brush_array

    def class_name(self, label: int | None) -> str:
        if label is None:
            return "unlabelled"
        if self.class_names and 0 <= label < len(self.class_names):
            return str(self.class_names[label])
        return f"class {label}"

    # -- drawing -----------------------------------------------------------------------
    def _redraw(self) -> None:
        pts, text = self._current_points()
        self.points = pts
        if pts is None:
            return
        brush = self._brushes_for(self.labels)
        if not self._move_points(pts, brush):
            self.scatter.setData(x=pts[:, 0], y=pts[:, 1], brush=brush, pen=None, size=POINT_SIZE)
            self._drawn_brush = brush
        self._update_legend()
        self._leave_room_for_legend(pts)
        self.status.setText(f"{text} · {len(pts):,} {self.samples}")
        self._update_highlight()

    def _leave_room_for_legend(self, pts: np.ndarray) -> None:
        """Widen the x range on the right by the legend's width, so the class legend sits beside
        the points instead of over the densest part of the map."""
        vb = self.plot.getViewBox()
        finite = pts[np.isfinite(pts).all(1)] if len(pts) else pts
        legend_w = self.legend.boundingRect().width() if self.legend.isVisible() and self.legend.items else 0.0
        if not len(finite) or legend_w <= 0 or vb.width() <= legend_w + 40:
            vb.enableAutoRange()
            return
        (x0, y0), (x1, y1) = finite.min(0), finite.max(0)
        span = max(float(x1 - x0), 1e-6)
        room = span * (legend_w + 12) / (vb.width() - legend_w - 12)
        vb.setRange(xRange=(float(x0), float(x1) + room), yRange=(float(y0), float(y1)), padding=0.03)

    def _move_points(self, pts: np.ndarray, brush) -> bool:
        """Move the existing points when only their positions changed (the live case: the probe
        set is fixed, so each probe brings new coordinates for the same images and classes).

        ``setData`` would rebuild every point's style, which pyqtgraph does with a Python loop
        per point (brush lookup, symbol-atlas key): most of a 10,000-point redraw.  Here the
        coordinates are written into the item's record array and the item is invalidated the
        way ``addPoints`` does it; the cached symbol rectangles stay valid because no style
        changed.  Anything unexpected (another pyqtgraph's internals) falls back to setData.
        """
        item = self.scatter
        try:
            data = item.data
            if brush is not self._drawn_brush or len(data) != len(pts) or len(pts) == 0:
                return False
            data["x"] = pts[:, 0]
            data["y"] = pts[:, 1]
            item.prepareGeometryChange()
            item.informViewBoundsChanged()
            item.bounds = [None, None]
            item.invalidate()
            item.sigPlotChanged.emit(item)
            return True
        except (AttributeError, KeyError, ValueError, TypeError):
            return False

    def _update_legend(self) -> None:
        n = self._class_count() if self.labels is not None else 0
        key = (n, tuple(self.class_names or ()))
        if key == self._legend_key:
            return
        self._legend_key = key
        self.legend.clear()
        for i in range(min(n, 30)):  # beyond 30 a legend is noise; colours still differ
            sample = pg.ScatterPlotItem(brush=self._brushes[i], pen=None, size=8, symbol="o")
            self.legend.addItem(sample, self.class_name(i))

    def _update_highlight(self) -> None:
        if self.selected is None or self.points is None or self.selected >= len(self.points):
            self.highlight.setData([], [])
            return
        idx = np.concatenate([[self.selected], self.neighbour_indices])
        pens = [self._selected_pen] + [self._neighbour_pen] * len(self.neighbour_indices)  # shared: no re-render
        self.highlight.setData(x=self.points[idx, 0], y=self.points[idx, 1], pen=pens, brush=None)

    # -- projections -------------------------------------------------------------------
    def set_method(self, method: str) -> None:
        self.method_combo.setCurrentIndex(self.method_combo.findData(method))

    def _method_changed(self, index: int) -> None:
        self.method = self.method_combo.itemData(index)
        self.compute_button.setEnabled(self.features is not None and self.method != "pca")
        if self.method != "pca" and self.method not in self.projections and self.features is not None:
            self.compute_projection()
        self._redraw()

    def compute_projection(self) -> int | None:
        """Start the chosen projection of the latest probe's features in the background."""
        if self.method == "pca" or self.features is None:
            return None
        if self.method == "umap" and not umap_available():
            self.status.setText(UMAP_HINT)
            return None
        job = self.runner.start(self.method, self.features, self.features_step)
        self.status.setText(f"Computing {METHOD_TITLES[self.method]} of {len(self.features):,} {self.samples} in the background…")
        return job

    def _projection_done(self, method: str, points, step: int) -> None:
        if self.pca_points is None or len(points) != len(self.pca_points):
            return
        self.projections[method] = (points, step)
        if method == self.method:
            self._redraw()

    def _projection_failed(self, message: str) -> None:
        self.status.setText(message)

    # -- hover and click ---------------------------------------------------------------
    def index_at(self, x: float, y: float, radius_px: float = HOVER_RADIUS_PX) -> int | None:
        """The probe point under view coordinates (x, y), within a few screen pixels."""
        if self.points is None:
            return None
        px, py = self.plot.getViewBox().viewPixelSize()
        return nearest_point(self.points, x, y, px, py, radius_px)

    def _mouse_moved(self, scene_pos) -> None:
        vb = self.plot.getViewBox()
        if self.points is None or not vb.sceneBoundingRect().contains(scene_pos):
            self._hide_hover()
            return
        p = vb.mapSceneToView(scene_pos)
        i = self.index_at(p.x(), p.y())
        if i is None:
            self._hide_hover()
            return
        widget_pos = self.plot_widget.mapFromScene(scene_pos)
        self.show_hover(i, QPoint(int(widget_pos.x()), int(widget_pos.y())))

    def _hide_hover(self) -> None:
        self.hovered = None
        self.inset.hide()

    def hover_text(self, i: int) -> str:
        label = None if self.labels is None else int(self.labels[i])
        return f"#{int(self.indices[i])} · {self.class_name(label)}"

    def show_hover(self, i: int, at: QPoint | None = None) -> None:
        if self.hovered == i and self.inset.isVisible():
            return
        self.hovered = i
        pix = self._pixmap(i, 72)
        self.inset.image.setVisible(pix is not None)
        if pix is not None:
            self.inset.image.setPixmap(pix)
        self.inset.text.setText(self.hover_text(i))
        self.inset.adjustSize()
        at = at or QPoint(10, 10)
        x = at.x() + 14
        y = at.y() + 14
        if x + self.inset.width() > self.plot_widget.width():
            x = at.x() - 14 - self.inset.width()
        if y + self.inset.height() > self.plot_widget.height():
            y = at.y() - 14 - self.inset.height()
        self.inset.move(max(0, x), max(0, y))
        self.inset.show()
        self.inset.raise_()

    def _mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.points is None:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        i = self.index_at(p.x(), p.y())
        if i is not None:
            self.select_point(i)

    def select_point(self, i: int | None) -> None:
        """Select probe point i and list its nearest neighbours (cosine on features; 2-D distance if none)."""
        self.selected = i
        if i is None or self.points is None:
            self.neighbour_indices = np.empty(0, np.int64)
            self._show_neighbours()
            self._update_highlight()
            return
        if self.features is not None:
            if self._unit is None:
                self._unit = normalise_rows(self.features)
            self.neighbour_indices, self.neighbour_sims = nearest_neighbours(self._unit, i, NEIGHBOURS)
            how = f"cosine similarity of the features at step {self.features_step}"
        else:
            d = np.linalg.norm(self.points - self.points[i], axis=1)
            d[i] = np.inf
            order = np.argsort(d, kind="stable")[:NEIGHBOURS]
            self.neighbour_indices, self.neighbour_sims = order, -d[order]
            how = "distance in this 2-D map (this probe carries no features)"
        self._show_neighbours(how)
        self._update_highlight()

    def _show_neighbours(self, how: str = "") -> None:
        if self.selected is None:
            self.neighbour_caption.setText("Click a point to see its nearest neighbours.")
            for k, (img, txt) in enumerate(self.neighbour_cells):
                img.parentWidget().hide()
            return
        self.neighbour_caption.setText(f"Nearest neighbours of {self.hover_text(self.selected)}, by {how}:")
        entries = [(self.selected, None)] + list(zip(self.neighbour_indices.tolist(), self.neighbour_sims.tolist()))
        for k, (img, txt) in enumerate(self.neighbour_cells):
            cell = img.parentWidget()
            if k >= len(entries):
                cell.hide()
                continue
            i, sim = entries[k]
            pix = self._pixmap(i, 52)
            if pix is not None:
                img.setPixmap(pix)
            else:
                img.clear()
                img.setText(f"#{int(self.indices[i])}")
            label = None if self.labels is None else int(self.labels[i])
            name = self.class_name(label)
            txt.setText(name if sim is None else (f"{name} {sim:.2f}" if self.features is not None else name))
            cell.setToolTip(self.hover_text(i))
            cell.show()

    def _pixmap(self, i: int, size: int):
        if self.imageset is None or self.indices is None:
            return None
        images = getattr(self.imageset, "images", None)
        j = int(self.indices[i])
        if images is None or not 0 <= j < len(images):
            return None
        return image_to_pixmap(images[j], size)

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.plot

    def table(self):
        header = ["point", "image_index", "label", "class", "x", "y", "pca_x", "pca_y"]
        if self.points is None:
            return header, []
        rows = []
        for i in range(len(self.points)):
            label = None if self.labels is None else int(self.labels[i])
            rows.append([i, int(self.indices[i]), label, self.class_name(label) if label is not None else "",
                         float(self.points[i, 0]), float(self.points[i, 1]),
                         float(self.pca_points[i, 0]), float(self.pca_points[i, 1])])
        return header, rows
