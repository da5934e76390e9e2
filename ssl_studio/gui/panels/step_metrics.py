"""An objective's own step metrics (VICReg's terms, DINO's entropies, ...), one plot per group, live.

Built from the objective class's ``metric_specs`` (key -> ``MetricSpec(title, unit, group)``), never
from a key looked up by name: a new objective that declares its metrics gets its plots for free.  Fed
by the ``Step`` events the window already dispatches (``Step.metrics``), so a run folder opened
from disk (replayed events) draws the same curves as a live run.  An objective that declares none
leaves the panel with one line saying so.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ssl_studio.engine.events import Started, Step
from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.gui.panels.base import (GrowArray, Panel, cache_axes, class_colour, label_step_axis, legend_brush,
                                        name_control, watch_theme)
from ssl_studio.objectives.base import MetricSpec

SpecsFor = Callable[[str], dict[str, MetricSpec]]


def objective_metric_specs(name: str) -> dict[str, MetricSpec]:
    """The declared step metrics of the objective called ``name``; {} for an unknown name (an old run folder)."""
    from ssl_studio.objectives import all_objectives

    cls = all_objectives().get(name)
    return dict(cls.metric_specs) if cls is not None else {}


def group_specs(specs: dict[str, MetricSpec]) -> dict[str, list[tuple[str, MetricSpec]]]:
    """Metrics by plot group, groups and metrics in declaration order."""
    groups: dict[str, list[tuple[str, MetricSpec]]] = {}
    for key, spec in specs.items():
        groups.setdefault(spec.group, []).append((key, spec))
    return groups


class StepMetricsPanel(Panel):
    """One plot per ``MetricSpec.group``, one curve per declared metric; cleared by a new run."""

    title = "Step metrics"

    def __init__(self, parent: QWidget | None = None, specs_for: SpecsFor = objective_metric_specs):
        super().__init__(parent)
        self.setObjectName("stepMetricsPanel")
        self.setAccessibleName("Step metrics panel")
        self.specs_for = specs_for
        self.objective: str | None = None
        self.specs: dict[str, MetricSpec] = {}
        self.steps: dict[str, GrowArray] = {}
        self.values: dict[str, GrowArray] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.legends: list = []
        self.message = name_control(WrappingLabel(), "stepMetricsMessage", "Why the step metrics are empty")
        self.message.setContentsMargins(8, 6, 8, 6)
        self.graphics = name_control(pg.GraphicsLayoutWidget(), "stepMetricsPlots", "Step metric plots")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message)
        layout.addWidget(self.graphics, 1)
        self.clear()

    # -- the window's interface ------------------------------------------------------------
    def clear(self) -> None:
        self.objective = None
        self.set_specs({})
        self.message.setText("Step metrics appear when a run starts, for objectives that report any beside their loss.")

    def set_specs(self, specs: dict[str, MetricSpec], objective: str | None = None) -> None:
        """Rebuild the plots for these declarations (empty curves); no specs: one line says why."""
        self.graphics.clear()
        self.specs = dict(specs)
        self.steps = {k: GrowArray(256) for k in self.specs}
        self.values = {k: GrowArray(256) for k in self.specs}
        self.curves, self.plots, self.legends = {}, {}, []
        for row, (group, members) in enumerate(group_specs(self.specs).items()):
            plot = self.graphics.addPlot(row=row, col=0)
            units = {spec.unit for _, spec in members if spec.unit}
            plot.setTitle(group)
            if len(units) == 1:  # the group's name is the plot's title; the axis says the unit, when they share one
                plot.setLabel("left", units.pop())
            plot.getAxis("left").enableAutoSIPrefix(False)
            label_step_axis(plot)
            cache_axes(plot)
            plot.showGrid(x=True, y=True, alpha=0.2)
            legend = plot.addLegend(offset=(-4, 4), brush=legend_brush()) if len(members) > 1 else None
            if legend is not None:
                self.legends.append(legend)
            for i, (key, spec) in enumerate(members):
                pen = pg.mkPen(class_colour(i, max(len(members), 2)), width=2)
                self.curves[key] = plot.plot([], [], pen=pen, name=spec.title + (f" ({spec.unit})" if spec.unit else ""))
            self.plots[group] = plot
        if self.legends:
            watch_theme(self.legends)
        self.graphics.setVisible(bool(self.specs))
        self.message.setVisible(not self.specs)
        if objective is not None and not self.specs:
            self.message.setText(f"{objective} reports no step metrics beyond its loss (see the Loss panel).")

    def handle_events(self, events: Sequence[Any]) -> None:
        touched = False
        for ev in events:
            if isinstance(ev, Started):
                self.objective = ev.objective
                try:
                    specs = self.specs_for(ev.objective)
                except Exception:  # noqa: BLE001 - an objective this version does not know: nothing to plot
                    specs = {}
                self.set_specs(specs, ev.objective)
            elif isinstance(ev, Step) and self.specs and isinstance(ev.metrics, dict):
                for key, value in ev.metrics.items():
                    if key in self.specs and isinstance(value, (int, float)) and not isinstance(value, bool):
                        self.steps[key].append(ev.step)
                        self.values[key].append(value)
                        touched = True
        if touched:
            for key, curve in self.curves.items():
                curve.setData(self.steps[key].view, self.values[key].view)

    # -- export ----------------------------------------------------------------------------
    def plot_scene_item(self):
        return self.graphics.ci if self.specs else None

    def table(self) -> tuple[list[str], list[Sequence[Any]]]:
        rows = [[key, float(s), float(v)] for key in self.specs for s, v in zip(self.steps[key].view, self.values[key].view)]
        return ["metric", "step", "value"], rows
