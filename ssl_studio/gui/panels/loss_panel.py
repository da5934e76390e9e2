"""Loss, learning rate and online accuracy against step, live.

A person reads two things here: is the loss still going down (smoothed, because
SSL losses are noisy), and is the representation getting better (k-NN accuracy
from the probes, which a falling loss does not guarantee: a collapsing run can
have a beautiful loss curve).  Data lives in growable numpy arrays and the EMA
is an IIR filter run only over new points, so a million-step run redraws in
milliseconds; pyqtgraph's peak downsampling and clip-to-view keep paint cost
proportional to the pixels, not the points.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.engine.events import Evaluated, Finished, Probe, Started, Step
from ssl_studio.gui.panels.base import GrowArray, Panel, cache_axes, ema_filter, label_step_axis, name_control, symbol_style

LOSS_COLOUR = "#1F77B4"
KNN_COLOUR = "#2CA02C"
LINEAR_COLOUR = "#9467BD"
LR_COLOUR = "#FF7F0E"
DEFAULT_SMOOTHING = 33  # EMA weight ~0.9


def smoothing_weight(slider_value: int) -> float:
    """Slider 0..100 to an EMA weight 0..0.999, log-spaced so the useful 0.9-0.99 range
    gets most of the travel."""
    return 0.0 if slider_value <= 0 else 1.0 - 10.0 ** (-3.0 * slider_value / 100.0)


class EMA:
    """Debiased exponential moving average (as TensorBoard draws it), extended incrementally.

    The state is the undebiased filter output, so appending m points costs one
    vectorised filter over those m points, whatever the length of the run.
    """

    def __init__(self, weight: float):
        self.weight = weight
        self.values = GrowArray()
        self._z = 0.0

    def extend(self, x: np.ndarray) -> None:
        w = self.weight
        if len(x) == 0:
            return
        if w <= 0.0:
            self.values.extend(x)
            return
        z = ema_filter(x, w, self._z)
        self._z = float(z[-1])
        t = np.arange(self.values.n + 1, self.values.n + len(x) + 1, dtype=np.float64)
        with np.errstate(under="ignore"):
            self.values.extend(z / (1.0 - np.power(w, t)))

    def reset(self, weight: float | None = None) -> None:
        if weight is not None:
            self.weight = weight
        self.values.clear()
        self._z = 0.0


class LossPanel(Panel):
    title = "Loss"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("lossPanel")
        self.setAccessibleName("Loss panel")
        self.steps = GrowArray()
        self.loss = GrowArray()
        self.lr = GrowArray()
        self.probe_steps = GrowArray(64)
        self.knn = GrowArray(64)
        self.linear_steps = GrowArray(64)
        self.linear = GrowArray(64)
        self.ema = EMA(smoothing_weight(DEFAULT_SMOOTHING))
        self.best_loss_index: int | None = None
        self.best_knn_index: int | None = None
        self._drawn_best_loss: tuple[float, float] | None = None
        self.eval_text = ""
        self._build()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.log_checkbox = name_control(QCheckBox("Log y"), "lossLogY", "Logarithmic loss axis",
                                         "Show the loss on a logarithmic axis (needs positive losses).")
        self.smoothing_slider = name_control(QSlider(Qt.Orientation.Horizontal), "lossSmoothing", "Loss smoothing",
                                             "Exponential moving average of the loss: raw values stay faint behind the bold smoothed curve.")
        self.smoothing_slider.setRange(0, 100)
        self.smoothing_slider.setValue(DEFAULT_SMOOTHING)
        self.smoothing_slider.setMinimumWidth(90)
        self.smoothing_slider.setMaximumWidth(180)
        self.smoothing_label = name_control(QLabel(), "lossSmoothingValue", "Smoothing weight")
        self.best_label = name_control(WrappingLabel(), "lossBest", "Best values")
        self.best_label.setTextFormat(Qt.TextFormat.PlainText)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addWidget(self.log_checkbox)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing_slider)
        bar.addWidget(self.smoothing_label)
        bar.addStretch(1)
        self.best_label.setContentsMargins(6, 0, 6, 0)

        self.graphics = name_control(pg.GraphicsLayoutWidget(), "lossPlots", "Loss, accuracy and learning-rate plots")
        self.loss_plot = self.graphics.addPlot(row=0, col=0)
        self.acc_plot = self.graphics.addPlot(row=1, col=0)
        self.lr_plot = self.graphics.addPlot(row=2, col=0)
        layout = self.graphics.ci.layout
        layout.setRowStretchFactor(0, 5)
        layout.setRowStretchFactor(1, 3)
        layout.setRowStretchFactor(2, 2)
        for plot in (self.acc_plot, self.lr_plot):
            plot.setXLink(self.loss_plot)
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            # on the PlotItem: it imposes its own downsampling/clip settings on every item it holds
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            plot.showGrid(x=True, y=True, alpha=0.15)
            plot.getAxis("left").setWidth(56)  # aligned left edges, so linked x axes line up
            cache_axes(plot)
        for plot in (self.loss_plot, self.acc_plot):  # x is linked: step numbers once, at the bottom
            plot.getAxis("bottom").setStyle(showValues=False)
        # short names and no SI prefix: "lr (x0.001)" or "accuracy" rotated along a short plot ran into
        # the next plot's label, and an empty plot's -0.5..0.5 range read as "loss (x0.001)"
        for plot, name in ((self.loss_plot, "loss"), (self.acc_plot, "acc"), (self.lr_plot, "lr")):
            plot.setLabel("left", name)
            plot.getAxis("left").enableAutoSIPrefix(False)
        label_step_axis(self.lr_plot)
        self.acc_plot.setYRange(0.0, 1.0, padding=0.02)
        self.acc_plot.enableAutoRange(axis="y", enable=False)

        faint = pg.mkColor(LOSS_COLOUR)
        faint.setAlpha(70)
        self.loss_curve = self._curve(self.loss_plot, pg.mkPen(faint, width=1), "loss (raw)")
        self.smooth_curve = self._curve(self.loss_plot, pg.mkPen(LOSS_COLOUR, width=2), "loss (smoothed)")
        self.lr_curve = self._curve(self.lr_plot, pg.mkPen(LR_COLOUR, width=1.5), "lr")
        marker = symbol_style("#D62728", pg.mkPen("w", width=0.5))
        self.best_loss_marker = pg.PlotDataItem([], [], pen=None, symbol="star", symbolSize=14, **marker)
        self.best_loss_marker.setZValue(10)
        self.loss_plot.addItem(self.best_loss_marker)
        self.best_loss_text = pg.TextItem(color="#D62728", anchor=(0, 1))
        self.loss_plot.addItem(self.best_loss_text)

        # the key is the plot's title, outside the data: a legend inside a short accuracy plot covered its points
        # and the "best" label of an early probe
        self.acc_plot.setTitle(f'<span style="color:{KNN_COLOUR}">● online k-NN</span>&nbsp;&nbsp;&nbsp;'
                               f'<span style="color:{LINEAR_COLOUR}">■ linear probe</span>', size="8pt")
        self.acc_plot.titleLabel.setMaximumHeight(16)
        self.knn_curve = pg.PlotDataItem([], [], pen=pg.mkPen(KNN_COLOUR, width=2), symbol="o", symbolSize=5,
                                         name="online k-NN", **symbol_style(KNN_COLOUR))
        self.linear_curve = pg.PlotDataItem([], [], pen=pg.mkPen(LINEAR_COLOUR, width=2), symbol="s", symbolSize=5,
                                            name="linear probe", **symbol_style(LINEAR_COLOUR))
        self.acc_plot.addItem(self.knn_curve)
        self.acc_plot.addItem(self.linear_curve)
        self.best_knn_marker = pg.PlotDataItem([], [], pen=None, symbol="star", symbolSize=14, **marker)
        self.best_knn_marker.setZValue(10)
        self.acc_plot.addItem(self.best_knn_marker)
        self.best_knn_text = pg.TextItem(color="#D62728", anchor=(1, 1))
        self.acc_plot.addItem(self.best_knn_text)

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(2)
        root.addLayout(bar)
        root.addWidget(self.best_label)
        root.addWidget(self.graphics, 1)

        # The step axis grows ahead of the data in 20% jumps instead of auto-ranging on every
        # batch: re-laying out three axes' tick text on every redraw was most of the panel's
        # paint time.  A manual zoom or pan stops following; the auto-range button resumes it.
        self.follow_x = True
        self._x_range: tuple[float, float] | None = None
        for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
            plot.enableAutoRange(axis="x", enable=False)
            plot.getViewBox().sigRangeChangedManually.connect(self._user_moved)

        self.log_checkbox.toggled.connect(self.set_log_y)
        self.smoothing_slider.valueChanged.connect(self._smoothing_changed)
        self._update_smoothing_label()
        self._update_best_label()

    @staticmethod
    def _curve(plot, pen, name: str) -> pg.PlotDataItem:
        curve = pg.PlotDataItem([], [], pen=pen, name=name, skipFiniteCheck=True)
        curve.setDownsampling(auto=True, method="peak")
        curve.setClipToView(True)
        plot.addItem(curve)
        return curve

    # -- the interface -----------------------------------------------------------------
    def clear(self) -> None:
        for arr in (self.steps, self.loss, self.lr, self.probe_steps, self.knn, self.linear_steps, self.linear):
            arr.clear()
        self.ema.reset()
        self.best_loss_index = self.best_knn_index = None
        self._drawn_best_loss = None
        self.best_loss_marker.setData([], [])  # _redraw moves the marker only when the best changed: take it off here
        self.best_knn_marker.setData([], [])
        self.eval_text = ""
        self.follow_x = True
        self._x_range = None
        self._redraw()

    def handle_events(self, events: Sequence[Any]) -> None:
        new_steps: list[tuple[float, float, float]] = []
        probes_changed = False
        for ev in events:  # one pass, no per-event drawing: a replayed run arrives as one huge batch
            if isinstance(ev, Step):
                new_steps.append((ev.step, ev.loss, ev.lr))
            elif isinstance(ev, Probe):
                if ev.knn_acc is not None and math.isfinite(ev.knn_acc):
                    self.probe_steps.append(ev.step)
                    self.knn.append(ev.knn_acc)
                    probes_changed = True
                if ev.linear_acc is not None and math.isfinite(ev.linear_acc):
                    self.linear_steps.append(ev.step)
                    self.linear.append(ev.linear_acc)
                    probes_changed = True
            elif isinstance(ev, Evaluated):
                self.eval_text = _eval_summary(ev.results)
                probes_changed = True
            elif isinstance(ev, Started):
                if ev.resumed_from_step == 0 and (len(self.steps) or new_steps):
                    self.clear()  # a new run in the same batch: what came before belongs to the old one
                    new_steps = []
            elif isinstance(ev, Finished):
                probes_changed = True
        if new_steps:
            self._append_steps(np.asarray(new_steps, dtype=np.float64))
        if new_steps or probes_changed:
            self._redraw(steps=bool(new_steps), probes=probes_changed)

    def add_arrays(self, steps: np.ndarray, loss: np.ndarray, lr: np.ndarray | None = None) -> None:
        """Append many steps at once (a run read from disk, benchmarks): no event objects needed."""
        steps = np.asarray(steps, dtype=np.float64)
        lr = np.zeros_like(steps) if lr is None else np.asarray(lr, dtype=np.float64)
        self._append_steps(np.column_stack([steps, np.asarray(loss, dtype=np.float64), lr]))
        self._redraw(probes=False)

    def _append_steps(self, block: np.ndarray) -> None:
        start = self.loss.n
        self.steps.extend(block[:, 0])
        self.loss.extend(block[:, 1])
        self.lr.extend(block[:, 2])
        self.ema.extend(block[:, 1])
        i = int(np.argmin(block[:, 1]))
        if self.best_loss_index is None or block[i, 1] < self.loss.view[self.best_loss_index]:
            self.best_loss_index = start + i

    # -- controls ----------------------------------------------------------------------
    def set_log_y(self, on: bool) -> None:
        if self.log_checkbox.isChecked() != on:
            self.log_checkbox.setChecked(on)  # re-enters through toggled
            return
        self.loss_plot.setLogMode(x=False, y=on)
        self._place_best_texts()

    def set_smoothing(self, slider_value: int) -> None:
        self.smoothing_slider.setValue(slider_value)

    def _smoothing_changed(self, value: int) -> None:
        self.ema.reset(smoothing_weight(value))
        self.ema.extend(self.loss.view)
        self._update_smoothing_label()
        self._redraw(probes=False)

    def _update_smoothing_label(self) -> None:
        self.smoothing_label.setText(f"{self.ema.weight:.3f}".rstrip("0").rstrip(".") if self.ema.weight else "off")

    # -- drawing -----------------------------------------------------------------------
    def _user_moved(self, *_args) -> None:
        self.follow_x = False

    def _follow(self) -> None:
        vb = self.loss_plot.getViewBox()
        if any(p.getViewBox().autoRangeEnabled()[0] for p in (self.loss_plot, self.acc_plot, self.lr_plot)):
            self.follow_x, self._x_range = True, None  # the "A" button: back to following the run
            for plot in (self.loss_plot, self.acc_plot, self.lr_plot):
                plot.enableAutoRange(axis="x", enable=False)
        if not self.follow_x:
            return
        xs = [a.view[i] for a in (self.steps, self.probe_steps, self.linear_steps) if a.n for i in (0, -1)]
        if not xs:
            return
        lo, hi = min(xs), max(xs)
        if self._x_range is None or lo < self._x_range[0] or hi > self._x_range[1]:
            self._x_range = (lo, lo + _round_up(max(hi - lo, 1.0) * 1.2))
            vb.setXRange(*self._x_range, padding=0.02)

    def _redraw(self, steps: bool = True, probes: bool = True) -> None:
        """Only what changed: a batch of steps leaves the accuracy plot alone, and a marker is
        moved only when the best value moved."""
        x = self.steps.view
        if steps:
            smoothing = self.ema.weight > 0
            self.loss_curve.setData(x, self.loss.view)
            self.smooth_curve.setData(x, self.ema.values.view if smoothing else np.empty(0))
            self.smooth_curve.setVisible(smoothing)
            self.lr_curve.setData(x, self.lr.view)
            best = (float(x[self.best_loss_index]), float(self.loss.view[self.best_loss_index])) \
                if self.best_loss_index is not None and self.loss.n else None
            if best != self._drawn_best_loss:
                self.best_loss_marker.setData(*(([best[0]], [best[1]]) if best else ([], [])))
                self._drawn_best_loss = best
        if probes:
            self.knn_curve.setData(self.probe_steps.view, self.knn.view)
            self.linear_curve.setData(self.linear_steps.view, self.linear.view)
            if self.knn.n:
                self.best_knn_index = int(np.argmax(self.knn.view))  # few probes: a full scan is free
                j = self.best_knn_index
                self.best_knn_marker.setData([self.probe_steps.view[j]], [self.knn.view[j]])
            else:
                self.best_knn_index = None
                self.best_knn_marker.setData([], [])
        self._place_best_texts()
        self._update_best_label()
        self._follow()

    def _place_best_texts(self) -> None:
        if self.best_loss_index is not None and self.loss.n:
            i = self.best_loss_index
            y = self.loss.view[i]
            if self.log_checkbox.isChecked():
                y = math.log10(y) if y > 0 else 0.0
            _set_text(self.best_loss_text, f"min {self.loss.view[i]:.4g}")
            self.best_loss_text.setAnchor(self._anchor(self.steps.view[i]))
            self.best_loss_text.setPos(self.steps.view[i], y)
            self.best_loss_text.setVisible(True)
        else:
            self.best_loss_text.setVisible(False)
        if self.best_knn_index is not None:
            j = self.best_knn_index
            _set_text(self.best_knn_text, f"best {self.knn.view[j]:.1%}")
            side, _ = self._anchor(self.probe_steps.view[j])
            # below a high marker, above a low one: the label stays inside the plot
            self.best_knn_text.setAnchor((side, 0.0 if self.knn.view[j] > 0.5 else 1.0))
            self.best_knn_text.setPos(self.probe_steps.view[j], self.knn.view[j])
            self.best_knn_text.setVisible(True)
        else:
            self.best_knn_text.setVisible(False)

    def _anchor(self, x: float) -> tuple[float, float]:
        """Labels sit right of a marker in the left half of the run and left of it in the right half,
        so they are never cut off by the plot's edge."""
        if self.steps.n < 2:
            return (0.0, 1.0)
        lo, hi = self.steps.view[0], self.steps.view[-1]
        return (0.0, 1.0) if x <= (lo + hi) / 2 else (1.0, 1.0)

    def _update_best_label(self) -> None:
        parts = []
        if self.loss.n:
            parts.append(f"loss {self.loss.view[-1]:.4g} (smoothed {self.ema.values.view[-1]:.4g})")
        if self.best_loss_index is not None and self.loss.n:
            i = self.best_loss_index
            parts.append(f"lowest {self.loss.view[i]:.4g} at step {int(self.steps.view[i])}")
        if self.best_knn_index is not None:
            j = self.best_knn_index
            parts.append(f"best k-NN {self.knn.view[j]:.1%} at step {int(self.probe_steps.view[j])}")
        if self.eval_text:
            parts.append(self.eval_text)
        self.best_label.setText("   ·   ".join(parts) if parts else "Waiting for the first step…")

    # -- export ------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.graphics.ci

    def export_png(self, path) -> None:
        """The plots alone, without the Log y box and the smoothing slider above them."""
        from ssl_studio.gui.panels import export

        export.export_widget_png(self.graphics, path)

    def table(self):
        header = ["step", "loss", "loss_smoothed", "lr", "knn_acc", "linear_acc"]
        knn = dict(zip(self.probe_steps.view.astype(int).tolist(), self.knn.view.tolist()))
        lin = dict(zip(self.linear_steps.view.astype(int).tolist(), self.linear.view.tolist()))
        steps = self.steps.view.astype(int).tolist()
        rows: list[list[Any]] = [[s, l, e, r, knn.get(s), lin.get(s)] for s, l, e, r in
                                 zip(steps, self.loss.view.tolist(), self.ema.values.view.tolist(), self.lr.view.tolist())]
        probe_only = (set(knn) | set(lin)) - set(steps)  # e.g. the probe before the first step
        if probe_only:
            rows += [[s, None, None, None, knn.get(s), lin.get(s)] for s in probe_only]
            rows.sort(key=lambda row: row[0])
        return header, rows


def _round_up(value: float) -> float:
    """Up to two significant digits: 123 -> 130, 0.0123 -> 0.013."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / scale - 1e-9) * scale


def _set_text(item: pg.TextItem, text: str) -> None:
    """TextItem.setText re-lays out HTML every call; most redraws leave the text as it was."""
    if item.toPlainText() != text:
        item.setText(text)


def _eval_summary(results: dict[str, Any]) -> str:
    """One phrase for the evaluation results the trainer reports at the end (k-NN, linear...)."""
    parts = []
    for name, value in results.items():
        if isinstance(value, dict):
            for key in ("k20", "top1", "acc", "accuracy", "k5"):
                if isinstance(value.get(key), (int, float)):
                    parts.append(f"{name} {key} {value[key]:.1%}")
                    break
        elif isinstance(value, (int, float)):
            parts.append(f"{name} {value:.1%}")
    return ("eval: " + ", ".join(parts)) if parts else ""
