"""MAE reconstructions of the fixed probe images, live: original, masked input, reconstruction,
and the reconstruction with the visible patches pasted back.

The pictures come from ``Visuals(kind="reconstruction")`` events (see
``ssl_studio.objectives.mae.MAE.reconstruct`` for the arrays).  The mask-ratio
slider and the "New mask" button need the *model*, not the last pictures (a
re-mask of old pixels would show nothing the model did), so the panel only asks:
it emits ``requestVisuals(dict)`` and whoever holds the model answers with a new
``Visuals(kind="reconstruction")`` event, which arrives through
``handle_events`` like any other.

The denoising autoencoder (``objectives/dae.py``) sends the same event kind with a ``noise`` entry:
the panel then shows noisy / reconstructed / clean and hides the mask controls, which do not apply.

The request contract::

    {"kind": "reconstruction", "mask_ratio": float in [0, 0.95], "seed": int}

A live run answers it with ``objective.reconstruct(probe_images, mask_ratio, seed)``
between two steps; a finished run with
``ssl_studio.engine.trained.reconstruction_from_run(run_dir, mask_ratio, seed)``.

The module also holds the small Qt picture helpers the attention and I-JEPA
panels share (pixmaps with column titles, scroll areas); the numpy ones (tiles,
montages, heat overlays, patch outlines) come from ``ssl_studio.engine.attention``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider, QVBoxLayout, QWidget

# The numpy picture helpers (tiles, heat overlays, outlines) live in the engine, because the study
# figures draw the same pictures without Qt; the panels re-export them from here.
from ssl_studio.engine.attention import (
    BACKGROUND,
    GAP,
    dim_outside,
    grid_to_pixels,
    heat_overlay,
    montage,
    outline,
    to_hwc_uint8,
    upscale,
)
from ssl_studio.engine.events import Visuals
from ssl_studio.gui.panels.base import GrowArray, VisualPanel, name_control

# ----------------------------------------------------------------------------- picture helpers (Qt)


def array_to_pixmap(arr: np.ndarray, headers: Sequence[tuple[int, str]] = (), header_height: int = 18) -> QPixmap:
    """An ``H x W x 3`` uint8 picture as a pixmap, with optional column titles ``(x, text)`` above it."""
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    image = QPixmap.fromImage(QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())
    if not headers:
        return image
    from PySide6.QtGui import QColor, QFont, QPainter

    out = QPixmap(w, h + header_height)
    out.fill(QColor(BACKGROUND, BACKGROUND, BACKGROUND))
    painter = QPainter(out)
    try:
        painter.drawPixmap(0, header_height, image)
        font = QFont()
        font.setPixelSize(11)
        painter.setFont(font)
        painter.setPen(QColor(60, 60, 60))
        for x, text in headers:
            painter.drawText(int(x), header_height - 5, text)
    finally:
        painter.end()
    return out


def tile_positions(row: Sequence[np.ndarray], gap: int = GAP) -> list[int]:
    """The x of each tile of a montage row."""
    xs, x = [], 0
    for tile in row:
        xs.append(x)
        x += tile.shape[1] + gap
    return xs


def picture_label(name: str, accessible: str) -> QLabel:
    label = name_control(QLabel(), name, accessible)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    return label


def scroll(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    return area


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- the panel

COLUMNS = ("original", "masked", "reconstruction", "pasted")
# The denoising autoencoder's payload (its info has "noise"): which arrays, under which headers, in which order.
DAE_COLUMNS = (("masked", "noisy"), ("reconstruction", "reconstructed"), ("original", "clean"))
MAX_IMAGES = 16
IMAGES_PER_ROW = 2  # two (original | masked | reconstruction | pasted) groups side by side


class ReconstructionPanel(VisualPanel):
    """Live MAE reconstructions; asks for new masks through ``requestVisuals``."""

    title = "Reconstructions"
    visual_kind = "reconstruction"
    requestVisuals = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("reconstructionPanel")
        self.setAccessibleName("MAE reconstruction panel")
        self.last: Visuals | None = None
        self.picture: np.ndarray | None = None
        self.seed = 0
        self.steps = GrowArray(64)
        self.mse = GrowArray(64)
        self.history: list[tuple[int, float, int, float | None, bool]] = []  # step, ratio, seed, mse, requested
        self._build()

    def _build(self) -> None:
        self.ratio_slider = name_control(QSlider(Qt.Orientation.Horizontal), "reconstructionMaskRatio", "Mask ratio",
                                         "Share of patches hidden in this view (asks the model for a new reconstruction).")
        self.ratio_slider.setRange(0, 95)
        self.ratio_slider.setValue(75)
        self.ratio_label = name_control(QLabel("mask 75 %"), "reconstructionMaskRatioValue", "Mask ratio value")
        self.new_mask = name_control(QPushButton("New mask"), "reconstructionNewMask", "Draw a new mask",
                                     "Hide a different random set of patches (asks the model for a new reconstruction).")
        self.status = name_control(QLabel("Waiting for the first reconstructions…"), "reconstructionStatus", "Reconstruction status")
        self.status.setWordWrap(True)
        self.ratio_slider.valueChanged.connect(self._on_slider)
        self.ratio_slider.sliderReleased.connect(self._emit_request)
        self.new_mask.clicked.connect(self._on_new_mask)

        controls = QHBoxLayout()
        self.ratio_caption = QLabel("mask ratio")
        controls.addWidget(self.ratio_caption)
        controls.addWidget(self.ratio_slider, 1)
        controls.addWidget(self.ratio_label)
        controls.addWidget(self.new_mask)

        self.image = picture_label("reconstructionImages", "Original, masked, reconstructed and pasted probe images")
        self._history_plot("reconstructionErrorPlot", "Masked-patch error over steps",
                           "masked-patch MSE (probe images, display scale)", 180)
        self.curve = pg.PlotDataItem([], [], pen=pg.mkPen("#D62728", width=2), symbol="o", symbolSize=4,
                                     symbolBrush="#D62728", symbolPen=None)
        self.plot.addItem(self.curve)

        root = QVBoxLayout(self)
        root.setContentsMargins(2, 2, 2, 2)
        root.addLayout(controls)
        root.addWidget(self.status)
        root.addWidget(scroll(self.image), 1)
        root.addWidget(self.plot_widget)

    # -- requests ---------------------------------------------------------------------
    @property
    def mask_ratio(self) -> float:
        return self.ratio_slider.value() / 100.0

    def request(self) -> dict[str, Any]:
        return {"kind": self.visual_kind, "mask_ratio": self.mask_ratio, "seed": int(self.seed)}

    def _on_slider(self, value: int) -> None:
        self.ratio_label.setText(f"mask {value} %")
        if not self.ratio_slider.isSliderDown():  # keyboard, wheel, programmatic: ask now; a drag asks on release
            self._emit_request()

    def _on_new_mask(self) -> None:
        self.seed += 1
        self._emit_request()

    def _emit_request(self) -> None:
        self.requestVisuals.emit(self.request())

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        self.last = None
        self.picture = None
        self.steps.clear()
        self.mse.clear()
        self.history.clear()
        self.curve.setData([], [])
        self.image.clear()
        self.status.setText("Waiting for the first reconstructions…")

    def has_content(self) -> bool:
        return bool(len(self.steps)) or self.last is not None

    def on_visuals(self, ev: Visuals) -> bool:
        info = ev.info or {}
        mse = info.get("masked_mse")
        requested = bool(info.get("requested"))
        self.history.append((int(ev.step), float(info.get("mask_ratio", float("nan"))), int(info.get("seed", 0)),
                             None if mse is None else float(mse), requested))
        if mse is not None and not requested:  # the curve: the trained ratio on the fixed probe mask
            self.steps.append(ev.step)
            self.mse.append(float(mse))
        return False  # the curve is drawn with the picture

    def show_visuals(self, ev: Visuals) -> None:
        self._draw(ev)

    @staticmethod
    def columns(info: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(array keys, column headers): MAE's four columns, or the denoising AE's noisy / reconstructed / clean."""
        if "noise" in info:
            return tuple(k for k, _ in DAE_COLUMNS), tuple(h for _, h in DAE_COLUMNS)
        return COLUMNS, COLUMNS

    def _draw(self, ev: Visuals) -> None:
        a = ev.arrays
        info = ev.info or {}
        keys, titles = self.columns(info)
        if not all(k in a for k in keys):
            return
        self.last = ev
        self._show_mask_controls("noise" not in info)
        n = min(MAX_IMAGES, len(a[keys[0]]))
        groups = []
        for i in range(n):
            groups.append([upscale(to_hwc_uint8(a[k][i])) for k in keys])
        rows, headers = [], []
        for start in range(0, n, IMAGES_PER_ROW):
            row: list[np.ndarray] = []
            for group in groups[start:start + IMAGES_PER_ROW]:
                if row:
                    row.append(np.full_like(group[0], BACKGROUND)[:, : GAP * 2])  # a wider gap between groups
                row.extend(group)
            rows.append(row)
        if rows:
            xs = [x for x, t in zip(tile_positions(rows[0]), rows[0]) if t.shape[1] > GAP * 2]
            headers = [(x + 2, titles[k % len(titles)]) for k, x in enumerate(xs)]
        self.picture = _montage_ragged(rows)
        self.image.setPixmap(array_to_pixmap(self.picture, headers))
        what = "requested view" if info.get("requested") else "probe images"
        if "noise" in info:
            self.status.setText(f"Step {ev.step}, probe images: {_noise_words(info)}; reconstruction MSE against the clean images "
                                f"{_fmt(info.get('masked_mse'), 4)}.")
            self.curve.setData(self.steps.view, self.mse.view)
            return
        self.status.setText(f"Step {ev.step}, {what}: {_fmt(100 * float(info.get('mask_ratio', float('nan'))), 0)} % of patches hidden "
                            f"(seed {info.get('seed', 0)}), masked-patch MSE {_fmt(info.get('masked_mse'), 4)}.")
        self.curve.setData(self.steps.view, self.mse.view)

    def _show_mask_controls(self, shown: bool) -> None:
        """MAE's mask-ratio slider and New mask button; the denoising AE has no mask to change, so they hide."""
        for w in (self.ratio_slider, self.ratio_label, self.new_mask, self.ratio_caption):
            w.setVisible(shown)
        self.plot.setTitle("masked-patch MSE (probe images, display scale)" if shown else
                           "reconstruction MSE (probe images)")

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.plot

    def table(self):
        header = ["step", "mask_ratio", "seed", "masked_mse", "requested"]
        return header, [list(r) for r in self.history]


def _noise_words(info: dict[str, Any]) -> str:
    strength = info.get("mask_ratio", float("nan"))
    if info.get("noise") == "masking":
        return f"masking noise on {_fmt(100 * float(strength), 0)} % of pixels"
    return f"Gaussian noise of {_fmt(float(strength), 2)} × the data's std"


def _montage_ragged(rows: list[list[np.ndarray]], gap: int = GAP) -> np.ndarray:
    """Like ``montage`` but tiles may differ in width (the spacer between groups)."""
    if not rows:
        return np.full((1, 1, 3), BACKGROUND, np.uint8)
    th = rows[0][0].shape[0]
    widths = [sum(t.shape[1] for t in r) + gap * (len(r) - 1) for r in rows]
    out = np.full((len(rows) * (th + gap) - gap, max(widths), 3), BACKGROUND, np.uint8)
    for i, r in enumerate(rows):
        x = 0
        for tile in r:
            out[i * (th + gap):i * (th + gap) + th, x:x + tile.shape[1]] = tile
            x += tile.shape[1] + gap
    return out


__all__ = ["ReconstructionPanel", "array_to_pixmap", "tile_positions", "dim_outside", "grid_to_pixels", "heat_overlay", "montage", "outline",
           "to_hwc_uint8", "upscale"]
