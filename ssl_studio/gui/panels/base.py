"""What every live panel shares: the interface the main window codes against, growable
arrays, the class palette and image-to-pixmap conversion.

The window never knows which panel it is talking to: it calls ``clear`` when a
run starts, ``handle_events`` with the worker's throttled batches, and the
``export_*`` methods from its menu.  Panels keep their data in numpy (never a
Python list that is rebuilt per redraw), so a million-step run costs one
``setData`` per batch, not a million Python objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QWidget

from ssl_studio.engine.events import Started, Visuals
from ssl_studio.engine.grow_array import GrowArray  # noqa: F401 - re-exported: the panels import their helpers from base
from ssl_studio.gui.naming import name_control  # noqa: F401 - the panels' one naming helper, re-exported
from ssl_studio.gui.panels import export

# Okabe-Ito then Tableau: distinguishable for colour-blind readers first, then enough hues
# for the shapes/digits sets; classes beyond these get evenly spaced hues.
_BASE_COLOURS = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#C9A800", "#999999",
    "#8C564B", "#17BECF", "#BCBD22", "#7F7F7F", "#9467BD", "#2CA02C", "#D62728", "#1F77B4",
)

# Colours used by the runs browser and the overlays, one per run.
RUN_COLOURS = ("#1F77B4", "#D62728", "#2CA02C", "#FF7F0E", "#9467BD", "#8C564B", "#E377C2", "#17BECF")


def class_colour(i: int, n: int) -> QColor:
    if n <= len(_BASE_COLOURS):
        return QColor(_BASE_COLOURS[i % len(_BASE_COLOURS)])
    return pg.intColor(i, hues=max(n, 1), values=1, maxValue=230, minValue=150, sat=200)


def _plot_background() -> QColor:
    try:
        from ssl_studio.gui import theme

        return QColor(theme.palette()["plot_background"])
    except Exception:  # noqa: BLE001 - panels work without the window's theme module
        return QColor("#ffffff")


def legend_brush() -> QColor:
    """The plot background, mostly opaque: legends stay readable over a cloud of points."""
    colour = _plot_background()
    colour.setAlpha(200)
    return colour


def watch_theme(legends: list) -> None:
    """Re-brush these legends when the window switches between light and dark."""
    try:
        from ssl_studio.gui import theme
    except Exception:  # noqa: BLE001
        return

    def update(_name: str) -> None:
        for legend in legends:
            try:
                legend.setBrush(legend_brush())
            except RuntimeError:  # the panel is gone
                pass

    theme.notifier().changed.connect(update)


def symbol_style(colour, outline=None) -> dict:
    """symbolBrush/symbolPen as QBrush/QPen objects made once: PlotDataItem hands them to its
    scatter on every setData, and a colour *string* becomes a new QBrush each time, which
    pyqtgraph takes for a new style and re-renders the symbol (most of a small update)."""
    return {"symbolBrush": pg.mkBrush(colour), "symbolPen": pg.mkPen(outline) if outline is not None else pg.mkPen(None)}


def label_step_axis(plot) -> None:
    """Label the bottom axis "step", in whole steps: pyqtgraph's automatic SI prefix would write
    "step (x0.001)" while a run has a single probe at step 0 (its range is then +-0.5)."""
    plot.setLabel("bottom", "step")
    plot.getAxis("bottom").enableAutoSIPrefix(False)


def cache_axes(plot) -> None:
    """Keep each axis as a cached pixmap: a curve's repaint then blits the axes instead of
    replaying their tick text, which is most of a plot's paint time.  The cache is redrawn
    only when the axis itself changes (new range, resize)."""
    from PySide6.QtWidgets import QGraphicsItem

    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        if axis is not None:
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def ema_filter(x: np.ndarray, weight: float, z0: float = 0.0) -> np.ndarray:
    """z_t = w z_{t-1} + (1 - w) x_t from z_0 = z0, vectorised (scipy.signal.lfilter would do,
    but importing scipy.signal costs seconds at start-up).

    Within a block of B points, z_t = w^t (z0 + (1 - w) sum_{k<=t} w^-k x_k); blocks are
    short enough that w^-B stays below e^30, so nothing overflows, and the rounding error
    stays near B x machine epsilon of the data's scale.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    w = float(weight)
    if w <= 0.0:
        out[:] = x
        return out
    block = max(1, int(30.0 / -np.log(w)))
    powers = w ** np.arange(1, min(block, len(x)) + 1, dtype=np.float64)
    z = float(z0)
    for start in range(0, len(x), block):
        chunk = x[start:start + block]
        p = powers[: len(chunk)]
        acc = np.cumsum(chunk / p) * (1.0 - w)
        out[start:start + len(chunk)] = p * (z + acc)
        z = float(out[start + len(chunk) - 1])
    return out


class GrowRows:
    """A 2-D array (rows × fixed width) that appends rows by doubling, for heat maps over time."""

    def __init__(self, width: int, capacity: int = 64, dtype=np.float32):
        self.width = width
        self._buf = np.zeros((capacity, width), dtype=dtype)
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        if self.n == len(self._buf):
            buf = np.zeros((2 * len(self._buf), self.width), dtype=self._buf.dtype)
            buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n] = row
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]


def image_to_pixmap(image: Any, size: int = 72) -> QPixmap:
    """A C×H×W uint8 tensor or array (C = 1 or 3) as a pixmap, scaled without smoothing so
    that small 32-px images stay crisp."""
    arr = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = np.ascontiguousarray(arr[:, :, :3])
    h, w, _ = arr.shape
    qimage = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: arr is freed after return
    from PySide6.QtCore import Qt

    return QPixmap.fromImage(qimage).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)


class Panel(QWidget):
    """One dockable view of a run.  Subclasses fill ``handle_events`` and ``table``.

    ``plot_scene_item`` names the pyqtgraph item SVG export draws (a GraphicsLayout
    or PlotItem); Qt labels around it are only in the PNG.
    """

    title: str = "Panel"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.imageset = None
        self.class_names: list[str] | None = None

    # -- the interface the window uses -------------------------------------------------
    def clear(self) -> None:
        raise NotImplementedError

    def handle_events(self, events: Sequence[Any]) -> None:
        raise NotImplementedError

    def set_imageset(self, imageset) -> None:
        self.imageset = imageset
        if imageset is not None and self.class_names is None and getattr(imageset, "class_names", None):
            self.class_names = list(imageset.class_names)

    def shutdown(self) -> None:
        """The window is closing: stop background work (the window calls this if it exists)."""

    def export_png(self, path: str | Path) -> None:
        export.export_widget_png(self, path)

    def export_svg(self, path: str | Path) -> None:
        item = self.plot_scene_item()
        if item is None:
            raise ValueError(f"{self.title} has no plot to write as SVG; export it as PNG instead.")
        export.export_item_svg(item, path)

    def export_csv(self, path: str | Path) -> None:
        header, rows = self.table()
        export.write_csv(path, header, rows)

    # -- for subclasses ----------------------------------------------------------------
    def plot_scene_item(self):
        return None

    def table(self) -> tuple[list[str], list[Sequence[Any]]]:
        """The panel's data as a header and rows, for CSV."""
        return [], []


class VisualPanel(Panel):
    """A panel of an objective's pictures, the kind of ``Visuals`` it declares in ``visual_kind``.

    One dispatch for all of them: a fresh run (not a resume) clears what the last run left,
    ``on_visuals`` takes each picture of this kind, ``on_event`` any other event the panel
    reads (probes, steps, evaluations); the curves are redrawn once per batch when a hook
    says they changed, and the newest picture is shown once.
    """

    visual_kind: str = ""

    def has_content(self) -> bool:
        """Whether anything of an earlier run is shown (a new run then clears it)."""
        raise NotImplementedError

    def on_started(self, ev: Started) -> None:
        """A run started (after the panel was cleared when it needed to be)."""

    def on_visuals(self, ev: Visuals) -> bool:
        """One picture of this panel's kind; True when the curves changed."""
        return False

    def on_event(self, ev: Any) -> bool:
        """Any other event; True when the curves changed."""
        return False

    def redraw_curves(self) -> None:
        """Draw the curves from the panel's arrays."""

    def show_visuals(self, ev: Visuals) -> None:
        """Show the newest picture of the batch."""

    # -- the pieces every picture panel builds alike -------------------------------------
    def _image_count(self, object_name: str, default: int) -> QSpinBox:
        """How many probe images to show (1-16); a change redraws the newest picture (``self.last``, ``self._draw``)."""
        count = name_control(QSpinBox(), object_name, "Images shown", "How many probe images to show.")
        count.setRange(1, 16)
        count.setValue(default)
        count.valueChanged.connect(lambda _v: self._draw(self.last) if self.last is not None else None)
        return count

    @staticmethod
    def _headline_row(headline: QLabel, status: QLabel, count: QSpinBox) -> QHBoxLayout:
        """The panel's big number, then the image count at the right; the status line wraps."""
        headline.setStyleSheet("font-size:16px; font-weight:bold;")
        status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(headline)
        row.addStretch(1)
        row.addWidget(QLabel("images"))
        row.addWidget(count)
        return row

    def _history_plot(self, object_name: str, description: str, title: str, max_height: int) -> None:
        """``self.plot_widget`` / ``self.plot``: a score over training steps, gridded, its axes cached."""
        self.plot_widget = name_control(pg.PlotWidget(), object_name, description)
        self.plot_widget.setMaximumHeight(max_height)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setTitle(title)
        label_step_axis(self.plot)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        cache_axes(self.plot)

    def handle_events(self, events: Sequence[Any]) -> None:
        latest, changed = None, False
        for ev in events:
            if isinstance(ev, Started):
                if ev.resumed_from_step == 0 and self.has_content():
                    self.clear()
                self.on_started(ev)
            elif isinstance(ev, Visuals):
                if ev.kind == self.visual_kind:
                    changed = self.on_visuals(ev) or changed
                    latest = ev
            else:
                changed = self.on_event(ev) or changed
        if changed:
            self.redraw_curves()
        if latest is not None:
            self.show_visuals(latest)
