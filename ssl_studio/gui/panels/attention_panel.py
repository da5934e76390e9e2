"""Where a ViT looks: the last layer's [CLS] attention per head over the probe images, the mean
over heads, the smallest set of patches holding 60 % of it, and how well that set covers the
object (IoU) over the run.

Fed by ``Visuals(kind="attention")`` (see ``ssl_studio.engine.attention.attention_visuals``:
``image``, ``heads``, ``mean``, ``mask``, optional ``object``; info ``iou``) and by the
``attention_iou`` of every ``Probe`` (64 probe images), which makes the curve.  The dashed
line is the IoU of the same ViT at initialisation (the step-0 probe): DINO-like attention
should climb above it; a method whose attention ignores the object stays on it.  Beside it, each
probe's ``attention_auc`` (``attention.object_background_auc``): whether the map ranks the object's
patches above the background's (1), the reverse (0) or neither (0.5).  A low IoU alone cannot say
which: on shapes DINO's map outlines the object from the background's side (AUC near 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ssl_studio.engine.events import Probe, Visuals
from ssl_studio.gui.panels.base import GrowArray, VisualPanel, legend_brush, name_control, watch_theme
from ssl_studio.gui.panels.reconstruction_panel import (
    _fmt,
    array_to_pixmap,
    dim_outside,
    heat_overlay,
    montage,
    outline,
    picture_label,
    scroll,
    tile_positions,
    to_hwc_uint8,
    upscale,
)

OBJECT_COLOUR = (40, 220, 90)
IOU_COLOUR = "#2CA02C"
AUC_COLOUR = "#FF7F0E"
VISUALS_COLOUR = "#1F77B4"


class AttentionPanel(VisualPanel):
    title = "Attention"
    visual_kind = "attention"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("attentionPanel")
        self.setAccessibleName("Attention maps panel")
        self.last: Visuals | None = None
        self.picture: np.ndarray | None = None
        self.probe_steps = GrowArray(64)
        self.probe_iou = GrowArray(64)
        self.probe_auc = GrowArray(64)  # NaN where a probe had no AUC, so it stays aligned with probe_steps
        self.visual_steps = GrowArray(64)
        self.visual_iou = GrowArray(64)
        self.initial_iou: float | None = None
        self._build()

    def _build(self) -> None:
        self.count = self._image_count("attentionImageCount", 6)
        self.iou_label = name_control(QLabel("IoU –"), "attentionIoU", "Attention-mask IoU with the objects and object-vs-background AUC")
        self.status = name_control(QLabel("Waiting for attention maps…"), "attentionStatus", "Attention status")
        controls = self._headline_row(self.iou_label, self.status, self.count)

        self.image = picture_label("attentionImages", "Per-head and mean [CLS] attention and the 60 % mask on probe images")
        self._history_plot("attentionIoUPlot", "Attention-mask IoU over steps", "Attention on the object over steps", 210)
        self.plot.setYRange(0, 1.45, padding=0.02)  # both scores live in [0, 1]; the band above holds the legend
        self.plot.getAxis("left").setTicks([[(v / 5, f"{v / 5:g}") for v in range(6)]])
        # one row across the band above 1 (no curve goes there), so it covers no data
        self.legend = self.plot.addLegend(offset=(-6, 2), labelTextSize="8pt", brush=legend_brush(), colCount=3)
        watch_theme([self.legend])
        self.probe_curve = pg.PlotDataItem([], [], pen=pg.mkPen(IOU_COLOUR, width=2), symbol="o", symbolSize=4,
                                           symbolBrush=IOU_COLOUR, symbolPen=None, name="IoU (probe)")
        self.auc_curve = pg.PlotDataItem([], [], pen=pg.mkPen(AUC_COLOUR, width=2, style=Qt.PenStyle.DashLine), symbol="t",
                                         symbolSize=5, symbolBrush=AUC_COLOUR, symbolPen=None, connect="finite",
                                         name="AUC (probe)")
        self.visual_curve = pg.PlotDataItem([], [], pen=None, symbol="x", symbolSize=7, symbolPen=VISUALS_COLOUR,
                                            name="IoU (shown images)")
        self.init_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#888", width=1, style=Qt.PenStyle.DashLine))
        self.init_line.hide()
        for item in (self.probe_curve, self.auc_curve, self.visual_curve, self.init_line):
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
        for arr in (self.probe_steps, self.probe_iou, self.probe_auc, self.visual_steps, self.visual_iou):
            arr.clear()
        self.initial_iou = None
        self.probe_curve.setData([], [])
        self.auc_curve.setData([], [])
        self.visual_curve.setData([], [])
        self.init_line.hide()
        self.image.clear()
        self.iou_label.setText("IoU –")
        self.status.setText("Waiting for attention maps…")

    def has_content(self) -> bool:
        return bool(len(self.probe_steps)) or self.last is not None

    def on_event(self, ev: Any) -> bool:
        iou = getattr(ev, "attention_iou", None) if isinstance(ev, Probe) else None
        if iou is None:
            return False
        if ev.step == 0 and self.initial_iou is None:
            self.initial_iou = float(iou)
        self.probe_steps.append(ev.step)
        self.probe_iou.append(float(iou))
        auc = getattr(ev, "attention_auc", None)
        self.probe_auc.append(float("nan") if auc is None else float(auc))
        return True

    def on_visuals(self, ev: Visuals) -> bool:
        iou = (ev.info or {}).get("iou")
        if iou is None:
            return False
        self.visual_steps.append(ev.step)
        self.visual_iou.append(float(iou))
        return True

    def redraw_curves(self) -> None:
        self._draw_curve()

    def show_visuals(self, ev: Visuals) -> None:
        self._draw(ev)

    def _draw_curve(self) -> None:
        self.probe_curve.setData(self.probe_steps.view, self.probe_iou.view)
        self.auc_curve.setData(self.probe_steps.view, self.probe_auc.view)
        self.visual_curve.setData(self.visual_steps.view, self.visual_iou.view)
        if self.initial_iou is not None:
            self.init_line.setValue(self.initial_iou)
            self.init_line.show()
        latest = self.probe_iou.view[-1] if len(self.probe_iou) else (self.visual_iou.view[-1] if len(self.visual_iou) else None)
        text = f"IoU {_fmt(None if latest is None else float(latest))}"
        if self.initial_iou is not None:
            text += f" (at init {_fmt(self.initial_iou)})"
        auc = self.probe_auc.view[-1] if len(self.probe_auc) else float("nan")
        if np.isfinite(auc):
            text += f" · AUC {_fmt(float(auc))}"
        self.iou_label.setText(text)

    def _draw(self, ev: Visuals) -> None:
        a = ev.arrays
        if "heads" not in a or "image" not in a:
            return
        self.last = ev
        heads = np.asarray(a["heads"], dtype=np.float32)
        mean = np.asarray(a["mean"], dtype=np.float32) if "mean" in a else heads.mean(1)
        mask = np.asarray(a["mask"], dtype=bool) if "mask" in a else None
        obj = np.asarray(a["object"], dtype=bool) if "object" in a else None
        n = min(self.count.value(), len(heads))
        rows = []
        for i in range(n):
            img = upscale(to_hwc_uint8(a["image"][i]))
            row = [img] + [heat_overlay(img, heads[i, h]) for h in range(heads.shape[1])] + [heat_overlay(img, mean[i])]
            if mask is not None:
                tile = dim_outside(img, mask[i])
                if obj is not None:
                    tile = outline(tile, obj[i], OBJECT_COLOUR, width=2)
                row.append(tile)
            rows.append(row)
        names = ["image"] + [f"head {h + 1}" for h in range(heads.shape[1])] + ["mean"] + (["60 % mask"] if mask is not None else [])
        self.picture = montage(rows)
        headers = [(x + 2, t) for x, t in zip(tile_positions(rows[0]), names)] if rows else []
        self.image.setPixmap(array_to_pixmap(self.picture, headers))
        info = ev.info or {}
        keep = float(info.get("keep_mass", 0.6))
        sizes = f", the mask keeps {mask[:n].reshape(n, -1).sum(1).mean():.1f} of {mask[0].size} patches on average" if mask is not None else ""
        obj_text = " Green: object patches (>= half the patch is object)." if obj is not None else ""
        self.status.setText(f"Step {ev.step}: [CLS] attention of layer {int(info.get('layer', -1)) + 1}, "
                            f"{heads.shape[1]} heads; the mask holds {keep:.0%} of the mean attention{sizes}; "
                            f"IoU on these images {_fmt(info.get('iou'))}.{obj_text}")

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.plot

    def table(self):
        header = ["step", "source", "iou", "object_background_auc"]
        rows = [[int(s), "probe", float(v), float(a) if np.isfinite(a) else ""]
                for s, v, a in zip(self.probe_steps.view, self.probe_iou.view, self.probe_auc.view)]
        rows += [[int(s), "visuals", float(v), ""] for s, v in zip(self.visual_steps.view, self.visual_iou.view)]
        rows.sort(key=lambda r: (r[0], r[1]))
        return header, rows


__all__ = ["AttentionPanel"]
