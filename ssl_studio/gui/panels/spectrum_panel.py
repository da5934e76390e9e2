"""The eigenvalue spectrum of the probe features: where collapse becomes visible.

A healthy representation spreads variance over many directions: a spectrum that
decays slowly and an effective rank that is a sizeable share of the width.
Dimensional collapse shows as the tail of the spectrum falling away (the dark
band creeping down the heat map, the rank curve sinking; the heat map is
normalised per probe, so it shows the spectrum's shape, and the numbers and
banner carry its scale); representational
collapse as every image mapping to one point (mean cosine near 1, per-dimension
std near 0).  The banner names the failure in the words ``collapse_verdict``
uses, so the panel, the CLI summary and the studies agree.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from ssl_studio.engine.diagnostics import Baseline, collapse_verdict
from ssl_studio.engine.events import Probe, Started
from ssl_studio.gui.fitting import ElidedLabel, WrappingLabel
from ssl_studio.gui.panels.base import (GrowArray, GrowRows, Panel, cache_axes, label_step_axis, legend_brush, name_control,
                                        symbol_style, watch_theme)

FLOOR_DECADES = 6.0  # the heat map's dynamic range: eigenvalues below 1e-6 of the largest read as dead
BANNER_STYLES = {
    "representational collapse": "background:#C62828; color:white;",
    "dimensional collapse": "background:#EF6C00; color:white;",
}
def explain(verdict: str, mean_cos: float) -> str:
    """What the verdict means for these numbers (rank < 2 with low mean cosine is a line, not a point)."""
    if verdict == "representational collapse":
        if math.isfinite(mean_cos) and mean_cos > 0.95:
            return "every image maps to (nearly) the same point"
        return "the features have collapsed onto a single direction"
    if verdict == "dimensional collapse":
        return "the features span only a few directions; the spectrum's tail has fallen away"
    return ""


def normalised_log_spectrum(spectrum: np.ndarray) -> np.ndarray:
    """log10(λ / λ_max) mapped from [-FLOOR_DECADES, 0] to [0, 1]: one heat-map column per probe."""
    s = np.asarray(spectrum, dtype=np.float64)
    top = float(s.max()) if len(s) else 0.0
    if not math.isfinite(top) or top <= 0:
        return np.zeros(len(s), np.float32)
    with np.errstate(divide="ignore"):
        r = np.log10(np.maximum(s, 0.0) / top)
    return np.clip(1.0 + r / FLOOR_DECADES, 0.0, 1.0).astype(np.float32)


class SpectrumPanel(Panel):
    title = "Spectrum"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("spectrumPanel")
        self.setAccessibleName("Spectrum panel")
        self.feature_dim: int | None = None
        self.steps = GrowArray(64)
        self.ranks = GrowArray(64)
        self.projector_ranks = GrowArray(64)
        self.mean_cosines = GrowArray(64)
        self.dim_stds = GrowArray(64)
        self.verdicts: list[str | None] = []
        self.initial: Baseline | None = None  # this run's step-0 probe: collapse is judged against it
        self.spectra: GrowRows | None = None
        self.heat: GrowRows | None = None
        self.verdict: str | None = None
        self._build()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.banner = name_control(WrappingLabel(), "spectrumBanner", "Collapse warning")
        self.banner.setStyleSheet("padding:6px; font-weight:bold; border-radius:3px;")
        self.banner.hide()

        self.rank_label = name_control(QLabel("–"), "spectrumRank", "Effective rank")
        self.rank_label.setStyleSheet("font-size:28px; font-weight:bold;")
        self.rank_caption = QLabel("effective rank")
        self.rank_caption.setEnabled(False)  # the theme's muted text colour
        self.cosine_label = name_control(QLabel("–"), "spectrumMeanCosine", "Mean cosine similarity")
        self.std_label = name_control(ElidedLabel("–", min_width=50), "spectrumDimStd", "Per-dimension standard deviation")
        self.projector_label = name_control(ElidedLabel("", min_width=30), "spectrumProjectorRank", "Projector effective rank")
        for lab in (self.cosine_label, self.std_label, self.projector_label):
            lab.setStyleSheet("font-size:14px;")
        numbers = QGridLayout()
        numbers.setContentsMargins(6, 0, 6, 0)
        numbers.addWidget(self.rank_label, 0, 0, 2, 1)
        numbers.addWidget(self.rank_caption, 2, 0)
        numbers.addWidget(QLabel("mean cosine"), 0, 1)
        numbers.addWidget(self.cosine_label, 1, 1)
        numbers.addWidget(QLabel("per-dim std"), 0, 2)
        numbers.addWidget(self.std_label, 1, 2)
        numbers.addWidget(self.projector_label, 2, 1, 1, 2)  # under the two numbers: the row stays narrow
        numbers.setColumnStretch(4, 1)
        for c in (1, 2, 3):
            numbers.setColumnMinimumWidth(c, 110)

        self.graphics = name_control(pg.GraphicsLayoutWidget(), "spectrumPlots", "Spectrum, rank and heat-map plots")
        self.spectrum_plot = self.graphics.addPlot(row=0, col=0, title="eigenvalues (latest probe)")
        self.rank_plot = self.graphics.addPlot(row=0, col=1, title="effective rank")
        self.heat_plot = self.graphics.addPlot(row=1, col=0, colspan=2, title="log spectrum over time (per-probe normalised)")
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self.spectrum_plot.setLogMode(x=False, y=True)
        self.spectrum_plot.setLabel("bottom", "index")
        self.spectrum_plot.showGrid(x=True, y=True, alpha=0.15)
        self.spectrum_curve = pg.PlotDataItem([], [], pen=pg.mkPen("#1F77B4", width=2))
        self.spectrum_plot.addItem(self.spectrum_curve)
        self.rank_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#D62728", width=1, style=Qt.PenStyle.DashLine))
        self.rank_line.hide()
        self.spectrum_plot.addItem(self.rank_line)

        label_step_axis(self.rank_plot)
        self.rank_plot.showGrid(x=True, y=True, alpha=0.15)
        self.rank_legend = self.rank_plot.addLegend(offset=(-6, 6), labelTextSize="8pt", brush=legend_brush())
        self.rank_legend.setColumnCount(2)  # one row: it stays inside a short plot
        watch_theme([self.rank_legend])
        self.rank_curve = pg.PlotDataItem([], [], pen=pg.mkPen("#2CA02C", width=2), symbol="o", symbolSize=4,
                                          name="backbone", **symbol_style("#2CA02C"))
        self.projector_curve = pg.PlotDataItem([], [], pen=pg.mkPen("#9467BD", width=1.5, style=Qt.PenStyle.DashLine))
        self._projector_in_legend = False  # listed once it has data (objectives without a projector never show it)
        self.rank_plot.addItem(self.rank_curve)
        self.rank_plot.addItem(self.projector_curve)
        self.width_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#999", width=1, style=Qt.PenStyle.DotLine))
        self.width_line.hide()
        self.rank_plot.addItem(self.width_line)

        for plot in (self.spectrum_plot, self.rank_plot, self.heat_plot):
            cache_axes(plot)
            # ranks, indices and log eigenvalues read as they are: an automatic "(x0.001)" on a
            # left axis would also be drawn outside the axis and left behind when it goes
            plot.getAxis("left").enableAutoSIPrefix(False)
        label_step_axis(self.heat_plot)
        self.heat_plot.setLabel("left", "eigenvalue index")
        self.heat_image = pg.ImageItem(axisOrder="col-major")
        self.heat_image.setColorMap(pg.colormap.get("viridis"))
        self.heat_plot.addItem(self.heat_image)
        self.heat_plot.invertY(True)  # largest eigenvalue on top, the tail falls away downwards

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(2)
        root.addWidget(self.banner)
        root.addLayout(numbers)
        root.addWidget(self.graphics, 1)

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        for arr in (self.steps, self.ranks, self.projector_ranks, self.mean_cosines, self.dim_stds):
            arr.clear()
        self.verdicts.clear()
        self.initial = None
        self.spectra = self.heat = None
        self.feature_dim = None
        self.verdict = None
        self.spectrum_curve.setData([], [])
        self.rank_curve.setData([], [])
        self.projector_curve.setData([], [])
        if self._projector_in_legend:
            self.rank_legend.removeItem(self.projector_curve)
            self._projector_in_legend = False
        self.heat_image.clear()
        self.rank_line.hide()
        self.width_line.hide()
        self._set_banner(None, None)
        for lab in (self.rank_label, self.cosine_label, self.std_label):
            lab.setText("–")
        self.projector_label.setText("")

    def handle_events(self, events: Sequence[Any]) -> None:
        latest = None
        for ev in events:
            if isinstance(ev, Started):
                if ev.resumed_from_step == 0 and len(self.steps):
                    self.clear()
                self.feature_dim = ev.feature_dim
            elif isinstance(ev, Probe):
                self._add_probe(ev)  # every probe joins the history (heat map, rank curve)
                latest = ev
        if latest is not None:
            self._redraw(latest)

    def _add_probe(self, p: Probe) -> None:
        dim = int(p.feature_dim or (len(p.spectrum) if p.spectrum is not None else 0))
        self.feature_dim = dim or self.feature_dim
        self.steps.append(p.step)
        self.ranks.append(p.effective_rank)
        self.projector_ranks.append(np.nan if p.projector_rank is None else p.projector_rank)
        self.mean_cosines.append(p.mean_cosine)
        self.dim_stds.append(p.dim_std)
        if p.step == 0 and self.initial is None:
            self.initial = Baseline(p.mean_cosine, p.effective_rank, p.projector_rank)
        self.verdicts.append(self._verdict(p, dim))
        if p.spectrum is not None and len(p.spectrum):
            spec = np.asarray(p.spectrum, dtype=np.float32)
            if self.spectra is None or self.spectra.width != len(spec):
                self.spectra, self.heat = GrowRows(len(spec)), GrowRows(len(spec))
            self.spectra.append(spec)
            self.heat.append(normalised_log_spectrum(spec))

    # -- drawing -----------------------------------------------------------------------
    def _redraw(self, p: Probe) -> None:
        dim = self.feature_dim or 0
        if p.spectrum is not None and len(p.spectrum):
            s = np.asarray(p.spectrum, dtype=np.float64)
            top = float(np.nanmax(s)) if len(s) else 0.0
            floor = max(top * 10.0 ** -(FLOOR_DECADES + 4), 1e-30)  # zeros drawn at a floor, not dropped
            self.spectrum_curve.setData(np.arange(len(s)), np.maximum(s, floor))
        self.rank_line.setValue(p.effective_rank)
        self.rank_line.show()
        self.rank_curve.setData(self.steps.view, self.ranks.view)
        pr = self.projector_ranks.view
        finite = np.isfinite(pr)
        self.projector_curve.setData(self.steps.view[finite], pr[finite])
        self.projector_curve.setVisible(bool(finite.any()))
        if finite.any() and not self._projector_in_legend:
            self.rank_legend.addItem(self.projector_curve, "projector")
            self._projector_in_legend = True
        if dim:
            self.width_line.setValue(dim)
            self.width_line.show()
            top = max(dim, float(np.nanmax(pr)) if finite.any() else 0.0)
            self.rank_plot.setYRange(0, top * 1.05, padding=0)
        self._draw_heat()

        self.rank_label.setText(f"{p.effective_rank:.1f}")
        self.rank_caption.setText(f"effective rank of {dim} dims" if dim else "effective rank")
        self.cosine_label.setText(_fmt(p.mean_cosine, 3))
        ref = f" (healthy ≈ {1 / math.sqrt(dim):.3f})" if dim else ""
        self.std_label.setText(_fmt(p.dim_std, 4) + ref)
        self.projector_label.setText(f"projector rank {p.projector_rank:.1f}" if p.projector_rank is not None else "")
        self._set_banner(self._verdict(p, dim), p)

    def _verdict(self, p: Probe, dim: int) -> str | None:
        """None for the initial network (a random network's features are alike); later probes are
        judged against it when this run's step-0 probe was seen."""
        if p.step == 0:
            return None
        return collapse_verdict(p.mean_cosine, p.effective_rank, dim, p.projector_rank, initial=self.initial)

    def _draw_heat(self) -> None:
        if self.heat is None or self.heat.n == 0:
            return
        img = self.heat.view
        steps = self.steps.view[-len(img):]
        x0 = float(steps[0])
        spacing = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
        spacing = spacing if spacing > 0 else 1.0
        width = max(float(steps[-1] - steps[0]) + spacing, spacing)
        self.heat_image.setImage(img, levels=(0.0, 1.0), autoLevels=False)
        # each probe's column spans [its step, the next probe's): the step axis starts at the first probe, not below 0
        self.heat_image.setRect(QRectF(x0, 0.0, width, float(img.shape[1])))

    def _set_banner(self, verdict: str | None, p: Probe | None) -> None:
        self.verdict = verdict
        if verdict is None or p is None:
            self.banner.setText("")
            self.banner.hide()
            return
        dim = self.feature_dim or 0
        what = explain(verdict, p.mean_cosine)
        self.banner.setText(f"{verdict.capitalize()} at step {p.step}: {what} (mean cosine {_fmt(p.mean_cosine, 3)}, "
                            f"effective rank {p.effective_rank:.1f} of {dim}, per-dim std {_fmt(p.dim_std, 4)}).")
        self.banner.setStyleSheet("padding:6px; font-weight:bold; border-radius:3px;" + BANNER_STYLES.get(verdict, "background:#C62828; color:white;"))
        self.banner.show()

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.graphics.ci

    def table(self):
        width = self.spectra.width if self.spectra is not None else 0
        header = ["step", "effective_rank", "projector_rank", "mean_cosine", "dim_std", "verdict"] + [f"eig_{i}" for i in range(width)]
        rows = []
        spectra = self.spectra.view if self.spectra is not None else None
        offset = self.steps.n - (len(spectra) if spectra is not None else 0)
        for k in range(self.steps.n):
            row = [int(self.steps.view[k]), self.ranks.view[k], self.projector_ranks.view[k], self.mean_cosines.view[k],
                   self.dim_stds.view[k], self.verdicts[k] or ""]
            if spectra is not None and k >= offset:
                row += spectra[k - offset].tolist()
            rows.append(row)
        return header, rows


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"
