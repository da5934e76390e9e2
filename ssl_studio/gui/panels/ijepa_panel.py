"""I-JEPA's task on the probe images: the context block the encoder sees, the target blocks whose
embeddings the predictor must guess, and how close its guesses are (cosine) over the run.

Fed by ``Visuals(kind="ijepa")`` (``image``, ``context_mask`` B x N, ``target_masks``
B x T x N, ``cosine`` B x T; info ``mean_cosine``, ``shuffled_cosine``); the training
batch's cosine is a declared step metric, drawn by the Step metrics panel.  The shuffled cosine
scores each prediction against *another* image's targets at the same positions: the
gap between the two curves is what the predictor knows about this image beyond where
the block is.
"""

from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ssl_studio.engine.events import Visuals
from ssl_studio.gui.panels.base import GrowArray, VisualPanel, legend_brush, name_control, watch_theme
from ssl_studio.gui.panels.reconstruction_panel import (
    _fmt,
    array_to_pixmap,
    dim_outside,
    montage,
    outline,
    picture_label,
    scroll,
    upscale,
    to_hwc_uint8,
)

TARGET_COLOURS = ((230, 60, 50), (250, 200, 30), (60, 200, 230), (230, 90, 220), (120, 230, 80), (255, 140, 20),
                  (150, 120, 255), (255, 255, 255))
CONTEXT_COLOUR = (40, 110, 255)


class IJEPAPanel(VisualPanel):
    title = "I-JEPA"
    visual_kind = "ijepa"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ijepaPanel")
        self.setAccessibleName("I-JEPA context and target blocks panel")
        self.last: Visuals | None = None
        self.picture: np.ndarray | None = None
        self.steps = GrowArray(64)
        self.cosine = GrowArray(64)
        self.shuffled = GrowArray(64)
        self._build()

    def _build(self) -> None:
        self.count = self._image_count("ijepaImageCount", 8)
        self.cosine_label = name_control(QLabel("cosine –"), "ijepaCosine", "Predicted-vs-actual cosine")
        self.status = name_control(QLabel("Waiting for I-JEPA blocks…"), "ijepaStatus", "I-JEPA status")
        controls = self._headline_row(self.cosine_label, self.status, self.count)

        self.image = picture_label("ijepaImages", "Context block and target blocks on probe images")
        self._history_plot("ijepaCosinePlot", "Predicted-vs-actual cosine over steps",
                           "cosine between predicted and actual target embeddings", 190)
        self.legend = self.plot.addLegend(offset=(-6, 6), labelTextSize="8pt", brush=legend_brush())
        watch_theme([self.legend])
        self.curve = pg.PlotDataItem([], [], pen=pg.mkPen("#1F77B4", width=2), symbol="o", symbolSize=5, symbolBrush="#1F77B4",
                                     symbolPen=None, name="probe images")
        self.shuffled_curve = pg.PlotDataItem([], [], pen=pg.mkPen("#D62728", width=1.5, style=Qt.PenStyle.DashLine),
                                              name="other image's targets")
        for item in (self.curve, self.shuffled_curve):
            self.plot.addItem(item)

        root = QVBoxLayout(self)
        root.setContentsMargins(2, 2, 2, 2)
        root.addLayout(controls)
        root.addWidget(self.status)
        root.addWidget(scroll(self.image), 1)
        root.addWidget(self.plot_widget)

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        self.last = None
        self.picture = None
        for arr in (self.steps, self.cosine, self.shuffled):
            arr.clear()
        for c in (self.curve, self.shuffled_curve):
            c.setData([], [])
        self.image.clear()
        self.cosine_label.setText("cosine –")
        self.status.setText("Waiting for I-JEPA blocks…")

    def has_content(self) -> bool:
        return bool(len(self.steps)) or self.last is not None

    def on_visuals(self, ev: Visuals) -> bool:
        info = ev.info or {}
        if info.get("mean_cosine") is None:
            return False
        self.steps.append(ev.step)
        self.cosine.append(float(info["mean_cosine"]))
        self.shuffled.append(float(info.get("shuffled_cosine", np.nan)))
        return True

    def redraw_curves(self) -> None:
        self._draw_curve()

    def show_visuals(self, ev: Visuals) -> None:
        self._draw(ev)

    def _draw_curve(self) -> None:
        self.curve.setData(self.steps.view, self.cosine.view)
        sh = self.shuffled.view
        ok = np.isfinite(sh)
        self.shuffled_curve.setData(self.steps.view[ok], sh[ok])
        if len(self.cosine):
            text = f"cosine {_fmt(float(self.cosine.view[-1]))}"
            if ok.any():
                text += f"  (other image's targets {_fmt(float(sh[ok][-1]))})"
            self.cosine_label.setText(text)

    def _draw(self, ev: Visuals) -> None:
        a = ev.arrays
        if not all(k in a for k in ("image", "context_mask", "target_masks")):
            return
        self.last = ev
        ctx = np.asarray(a["context_mask"], dtype=bool)
        tgt = np.asarray(a["target_masks"], dtype=bool)
        g = int(round(ctx.shape[-1] ** 0.5))
        n = min(self.count.value(), len(ctx))
        cos = np.asarray(a["cosine"], dtype=np.float32) if "cosine" in a else None
        tiles = []
        for i in range(n):
            img = upscale(to_hwc_uint8(a["image"][i]))
            context = outline(dim_outside(img, ctx[i].reshape(g, g)), ctx[i].reshape(g, g), CONTEXT_COLOUR, width=2)
            targets = dim_outside(img, tgt[i].any(0).reshape(g, g), factor=0.5)
            for t in range(tgt.shape[1]):
                targets = outline(targets, tgt[i, t].reshape(g, g), TARGET_COLOURS[t % len(TARGET_COLOURS)], width=2)
            tiles.append((context, targets))
        per_row = 4
        rows = []
        for start in range(0, n, per_row):
            row: list[np.ndarray] = []
            for context, targets in tiles[start:start + per_row]:
                row += [context, targets]
            rows.append(row)
        self.picture = montage(rows)
        headers = []
        if rows:
            w = rows[0][0].shape[1] + 4
            headers = [(k * w + 2, "context" if k % 2 == 0 else "targets") for k in range(len(rows[0]))]
        self.image.setPixmap(array_to_pixmap(self.picture, headers))
        info = ev.info or {}
        cb, tb = info.get("context_block"), info.get("target_block")
        shape = f" Context block {cb[0]}x{cb[1]}, target blocks {tb[0]}x{tb[1]} patches." if cb and tb else ""
        per_block = f" Mean cosine per target block: {', '.join(_fmt(float(v)) for v in cos[:n].mean(0))}." if cos is not None else ""
        self.status.setText(f"Step {ev.step}: outlined in blue, the {int(ctx[0].sum())} context patches the encoder sees (the rest dimmed); coloured outlines, "
                            f"the {tgt.shape[1]} target blocks it must predict (removed from the context).{shape}{per_block}")

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.plot

    def table(self):
        header = ["step", "source", "cosine", "shuffled_cosine"]
        rows = [[int(s), "probe", float(c), float(sh)] for s, c, sh in zip(self.steps.view, self.cosine.view, self.shuffled.view)]
        rows.sort(key=lambda r: (r[0], r[1]))
        return header, rows


__all__ = ["IJEPAPanel"]
