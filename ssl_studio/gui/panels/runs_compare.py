"""The runs browser's comparison views: overlaid curves, results and protocols side by side, configuration differences.

The selected runs (``engine.run_model.RunModel``s) drawn three ways: their loss, effective rank
and k-NN curves overlaid; a results table with the protocols of ``engine.compare.compare_runs``
(scores or ranks, with Kendall's tau between every pair of protocols, because protocols can
rank the same runs differently); and the settings in which their configurations differ.
A mixin of ``RunsBrowser``: it reads the browser's selection and fills the browser's widgets.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QMessageBox,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from ssl_studio.engine.compare import compare_runs
from ssl_studio.engine.run_model import RunModel, differing_keys, is_number
from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.gui.naming import name_control
from ssl_studio.gui.panels import export
from ssl_studio.gui.panels.base import RUN_COLOURS, cache_axes, ema_filter, label_step_axis, legend_brush, symbol_style, watch_theme

OVERLAY_EMA = 0.9
# compare_runs' protocol names -> column titles
PROTOCOL_COLUMNS = {"knn": "k-NN@20", "linear": "linear", "finetune": "fine-tune", "linear@1%": "linear @1 %",
                    "linear@10%": "linear @10 %", "finetune@1%": "fine-tune @1 %", "finetune@10%": "fine-tune @10 %",
                    "zero-shot": "zero-shot"}
_ACCURACY_LEAF = re.compile(r"^(knn_)?(k\d+|top\d|acc|accuracy|knn_acc|linear_acc|zero_shot|finetune)$")


def protocol_column(name: str) -> str:
    return PROTOCOL_COLUMNS.get(name, name)


def _is_accuracy(metric: str) -> bool:
    """Rows where higher is better and the best deserves bold: accuracies, not counts or seconds."""
    return metric == "probe k-NN" or bool(_ACCURACY_LEAF.match(metric.split(" ")[-1].split(".")[-1]))


def _fill(table: QTableWidget, header: list[str], rows: list[list[Any]], highlight_best: bool = False) -> None:
    """Rows as given (first column as the row header); bold the best number of a row of accuracies."""
    table.clear()
    table.setColumnCount(max(len(header) - 1, 0))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(header[1:])
    table.setVerticalHeaderLabels([str(r[0]) for r in rows])
    for r, row in enumerate(rows):
        values = row[1:]
        best = None
        if highlight_best and len(values) > 1 and _is_accuracy(str(row[0])):
            nums = [v for v in values if is_number(v) and math.isfinite(v)]
            best = max(nums) if nums else None
        for c, v in enumerate(values):
            item = QTableWidgetItem(export.format_cell(v))
            if is_number(v):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if best is not None and v == best:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            table.setItem(r, c, item)
    table.resizeColumnsToContents()


class ComparisonViews:
    """Builds and fills the Curves, Results and Config tabs of the runs browser."""

    def _build_comparison(self) -> QTabWidget:
        """The three comparison tabs; the browser puts them under its table."""
        self._pools: dict[int, list[pg.PlotDataItem]] = {}
        self._styles: dict[str, tuple] = {}
        self._build_curves()
        results = self._build_results()
        config = self._build_config()
        tabs = name_control(QTabWidget(), "runsTabs", "Comparison views")
        tabs.addTab(self.curves, "Curves")
        tabs.addTab(results, "Results")
        tabs.addTab(config, "Config")
        return tabs

    def _build_curves(self) -> None:
        # curves
        self.curves = name_control(pg.GraphicsLayoutWidget(), "runsCurves", "Overlaid curves of the selected runs")
        self.loss_plot = self.curves.addPlot(row=0, col=0, title=f"loss (EMA {OVERLAY_EMA:g})")
        self.rank_plot = self.curves.addPlot(row=0, col=1, title="effective rank")
        self.knn_plot = self.curves.addPlot(row=0, col=2, title="online k-NN")
        for p in (self.loss_plot, self.rank_plot, self.knn_plot):
            p.setDownsampling(auto=True, mode="peak")
            p.setClipToView(True)
            p.showGrid(x=True, y=True, alpha=0.15)
            label_step_axis(p)
            cache_axes(p)
        self.legend = pg.LegendItem(offset=(-6, 6), labelTextSize="8pt", brush=legend_brush())
        watch_theme([self.legend])
        self.legend.setParentItem(self.loss_plot.getViewBox())

    def _build_results(self) -> QWidget:
        # results
        self.comparison = name_control(QTableWidget(), "runsComparison", "Comparison of results")
        self.comparison.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.export_csv_button = name_control(QPushButton("Export CSV…"), "runsExportCsv", "Export comparison as CSV")
        self.export_md_button = name_control(QPushButton("Export Markdown…"), "runsExportMarkdown", "Export comparison as Markdown")
        # protocols side by side: a column per protocol, scores or ranks, and how far the protocols agree
        self.rank_view = name_control(QCheckBox("Ranks"), "rankViewCheck", "Show ranks instead of scores",
                                      "Show each run's rank under each protocol (1 = best) instead of its score.")
        self.protocol_table = name_control(QTableWidget(), "protocolComparison", "Protocol comparison",
                                           "The headline accuracy of every protocol the selected runs were evaluated by.")
        self.protocol_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.protocol_note = name_control(WrappingLabel(), "protocolNote", "Protocol comparison note")
        self.agreement_table = name_control(QTableWidget(0, 3), "agreementTable", "Agreement between protocols",
                                            "Kendall's tau between the rankings two protocols give the selected runs: "
                                            "+1 the same order, -1 the reverse; – when fewer than two runs have both "
                                            "(or one protocol scores them all the same).")
        self.agreement_table.setHorizontalHeaderLabels(["protocols", "Kendall's τ", "runs"])
        self.agreement_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.agreement_table.verticalHeader().hide()
        self.agreement_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        protocols = QWidget()
        pl = QVBoxLayout(protocols)
        pl.setContentsMargins(0, 0, 0, 0)
        ph = QHBoxLayout()
        ph.addWidget(QLabel("Protocols"))
        ph.addStretch(1)
        ph.addWidget(self.rank_view)
        pl.addLayout(ph)
        psplit = QSplitter(Qt.Orientation.Horizontal)
        psplit.addWidget(self.protocol_table)
        psplit.addWidget(self.agreement_table)
        psplit.setStretchFactor(0, 3)
        psplit.setStretchFactor(1, 2)
        pl.addWidget(psplit, 1)
        pl.addWidget(self.protocol_note)

        results = QWidget()
        rl = QVBoxLayout(results)
        rl.setContentsMargins(2, 2, 2, 2)
        rb = QHBoxLayout()
        rb.addStretch(1)
        rb.addWidget(self.export_csv_button)
        rb.addWidget(self.export_md_button)
        self.results_splitter = QSplitter(Qt.Orientation.Vertical)
        self.results_splitter.addWidget(protocols)
        self.results_splitter.addWidget(self.comparison)
        self.results_splitter.setStretchFactor(0, 2)
        self.results_splitter.setStretchFactor(1, 3)
        rl.addWidget(self.results_splitter, 1)
        rl.addLayout(rb)
        return results

    def _build_config(self) -> QWidget:
        # config differences
        self.diff_only = name_control(QCheckBox("Differences only"), "runsDiffOnly", "Show only configuration differences",
                                      "Show only the settings whose values differ between the selected runs.")
        self.diff_only.setChecked(True)
        self.diff_table = name_control(QTableWidget(), "runsConfigDiff", "Configuration comparison")
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.diff_note = name_control(WrappingLabel(), "runsDiffNote", "Configuration comparison note")
        config = QWidget()
        cl = QVBoxLayout(config)
        cl.setContentsMargins(2, 2, 2, 2)
        cl.addWidget(self.diff_only)
        cl.addWidget(self.diff_table, 1)
        cl.addWidget(self.diff_note)
        return config

    def _curve(self, plot, k: int) -> pg.PlotDataItem:
        """The k-th curve of a plot, created empty once and reused (removing clip-to-view items
        from a plot trips pyqtgraph, and reuse allocates nothing per refresh)."""
        pool = self._pools.setdefault(id(plot), [])
        while len(pool) <= k:
            curve = pg.PlotDataItem([], [], skipFiniteCheck=False)
            plot.addItem(curve)
            pool.append(curve)
        return pool[k]

    def _style(self, colour: str):
        """One pen and one symbol style per run colour, reused (see base.symbol_style)."""
        if colour not in self._styles:
            self._styles[colour] = (pg.mkPen(colour, width=2), symbol_style(colour))
        return self._styles[colour]

    def _update_curves(self, tracks: list[RunModel]) -> None:
        self.legend.clear()
        used = {id(p): 0 for p in (self.loss_plot, self.rank_plot, self.knn_plot)}

        def draw(plot, x, y, colour, name=None, symbols=False):
            curve = self._curve(plot, used[id(plot)])
            used[id(plot)] += 1
            sym = dict(symbol="o", symbolSize=4, **self._style(colour)[1]) if symbols else dict(symbol=None)
            curve.setData(x, y, pen=self._style(colour)[0], name=name, **sym)
            curve.show()
            if name:
                self.legend.addItem(curve, name)

        for i, t in enumerate(tracks):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            if t.loss.n:
                y = t.loss.view
                z = ema_filter(y, OVERLAY_EMA, float(y[0]))
                draw(self.loss_plot, t.steps.view, z, colour, t.name)
            if t.probe_steps.n:
                ok = np.isfinite(t.ranks.view)
                if ok.any():
                    draw(self.rank_plot, t.probe_steps.view[ok], t.ranks.view[ok], colour, symbols=True)
                ok = np.isfinite(t.knns.view)
                if ok.any():
                    draw(self.knn_plot, t.probe_steps.view[ok], t.knns.view[ok], colour, symbols=True)
        for plot in (self.loss_plot, self.rank_plot, self.knn_plot):
            for curve in self._pools.get(id(plot), [])[used[id(plot)]:]:
                curve.setData([], [])
                curve.hide()
        self._curves_used = used

    def curve_counts(self) -> dict[str, int]:
        """How many runs each overlay plot draws (tests, accessibility)."""
        return {name: sum(c.isVisible() for c in self._pools.get(id(p), []))
                for name, p in (("loss", self.loss_plot), ("rank", self.rank_plot), ("knn", self.knn_plot))}

    def _update_comparison(self, tracks: list[RunModel]) -> None:
        rows_by_run = [t.results() for t in tracks]
        keys: list[str] = []
        for row in rows_by_run:
            keys += [k for k in row if k not in keys]
        self.comparison_header = ["metric"] + [t.name for t in tracks]
        self.comparison_rows = [[k] + [row.get(k) for row in rows_by_run] for k in keys]
        _fill(self.comparison, self.comparison_header, self.comparison_rows, highlight_best=True)
        self._update_protocols(tracks)

    def _update_protocols(self, tracks: list[RunModel]) -> None:
        """compare_runs on the selected runs: a column per protocol, ranks, and Kendall's tau per pair."""
        self.comparison_result = None
        if tracks:
            try:
                self.comparison_result = compare_runs([t.path for t in tracks], labels=[t.name for t in tracks])
            except Exception:  # noqa: BLE001 - an unreadable report.json is a run without results, not a crash
                self.comparison_result = None
        self._fill_protocols()

    def _fill_protocols(self) -> None:
        cmp = self.comparison_result
        protocols = cmp.protocols if cmp is not None else []
        ranked = self.rank_view.isChecked()
        self.protocol_header = ["run"] + [protocol_column(p) for p in protocols]
        self.protocol_rows = []
        if cmp is not None:
            for i, run in enumerate(cmp.runs):
                self.protocol_rows.append([run] + [(cmp.ranks[p][i] if ranked else cmp.scores[p][i]) for p in protocols])
        table = self.protocol_table
        table.clear()
        table.setColumnCount(len(protocols))
        table.setRowCount(len(self.protocol_rows))
        table.setHorizontalHeaderLabels(self.protocol_header[1:])
        table.setVerticalHeaderLabels([str(r[0]) for r in self.protocol_rows])
        for c, p in enumerate(protocols):
            scores = cmp.scores[p]
            present = [v for v in scores if v is not None]
            best = max(present) if len(set(present)) > 1 else None  # bold marks a winner, not a tie of all
            for r, row in enumerate(self.protocol_rows):
                score, rank = scores[r], cmp.ranks[p][r]
                if score is None:
                    text = "–"
                elif ranked:
                    text = str(rank)
                else:
                    text = f"{score:.3f}"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if score is not None:
                    item.setToolTip(f"{row[0]}, {protocol_column(p)}: {score:.4f} (rank {rank} of "
                                    f"{sum(v is not None for v in scores)})")
                    if score == best:
                        font = item.font()
                        font.setBold(True)
                        item.setFont(font)
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

        # agreement: every pair of the protocols shown, "–" where tau is undefined
        self.agreement_rows = []
        for a, b in itertools.combinations(protocols, 2):
            both = sum(x is not None and y is not None for x, y in zip(cmp.scores[a], cmp.scores[b]))
            tau = cmp.agreement.get((a, b))
            self.agreement_rows.append([f"{protocol_column(a)} vs {protocol_column(b)}",
                                        None if tau is None or not math.isfinite(tau) else tau, both])
        at = self.agreement_table
        at.setRowCount(len(self.agreement_rows))
        for r, (pair, tau, both) in enumerate(self.agreement_rows):
            cells = [QTableWidgetItem(pair), QTableWidgetItem("–" if tau is None else f"{tau:+.2f}"), QTableWidgetItem(str(both))]
            for item in cells[1:]:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if tau is None:
                cells[1].setToolTip("Fewer than two runs were scored by both protocols." if both < 2 else
                                    "Undefined: one of the protocols scores every one of these runs the same.")
            for c, item in enumerate(cells):
                at.setItem(r, c, item)
        at.resizeColumnToContents(1)
        at.resizeColumnToContents(2)

        n_runs = len(cmp.runs) if cmp is not None else 0
        if not protocols:
            note = ("Select runs to compare them by protocol." if not n_runs else
                    "No evaluation results for the selected runs yet: use Evaluate… (k-NN, linear probe, fine-tuning, …).")
        elif n_runs < 2:
            note = "Select two or more evaluated runs to see whether the protocols rank them alike."
        else:
            note = ("Kendall's τ: +1 when two protocols rank the selected runs in the same order, −1 when in the reverse order."
                    + ("  Cells show ranks (1 = best)." if ranked else ""))
        self.protocol_note.setText(note)

    def _update_diff(self) -> None:
        tracks = self.selected_tracks()
        configs = [t.config_flat or {} for t in tracks]
        if self.diff_only.isChecked():
            keys = differing_keys(configs) if len(configs) > 1 else []
        else:
            keys = []
            for c in configs:
                keys += [k for k in c if k not in keys]
        missing = "(not set)"
        self.diff_header = ["setting"] + [t.name for t in tracks]
        self.diff_rows = [[k] + [c.get(k, missing) for c in configs] for k in keys]
        _fill(self.diff_table, self.diff_header, self.diff_rows)
        if not tracks:
            note = "Select runs to compare their configurations."
        elif self.diff_only.isChecked() and len(tracks) < 2:
            note = "Select two or more runs to see how their configurations differ (or untick Differences only)."
        elif self.diff_only.isChecked() and not keys:
            note = "The selected runs have identical configurations."
        else:
            note = f"{len(keys)} setting{'s' if len(keys) != 1 else ''}" + (" differ." if self.diff_only.isChecked() else ".")
        unreadable = [t.name for t in tracks if t.config_flat is None]
        if unreadable:
            note += f"  No readable config.toml in: {', '.join(unreadable)}."
        self.diff_note.setText(note)

    def _protocol_export_rows(self) -> list[list[Any]]:
        """Score and rank rows per protocol, in the comparison's layout (a column per run)."""
        cmp = self.comparison_result
        rows: list[list[Any]] = []
        if cmp is not None:
            for p in cmp.protocols:
                rows.append([protocol_column(p)] + list(cmp.scores[p]))
                rows.append([f"{protocol_column(p)} rank"] + list(cmp.ranks[p]))
        return rows

    def export_comparison_csv(self, path: str | Path) -> None:
        export.write_csv(path, self.comparison_header, self._protocol_export_rows() + self.comparison_rows)

    def export_comparison_markdown(self, path: str | Path) -> None:
        text = ""
        cmp = self.comparison_result
        if cmp is not None and cmp.protocols:
            header = ["run"] + [protocol_column(p) for p in cmp.protocols]
            rows = [[run] + ["–" if cmp.scores[p][i] is None else f"{cmp.scores[p][i]:.3f} (#{cmp.ranks[p][i]})" for p in cmp.protocols]
                    for i, run in enumerate(cmp.runs)]
            text += "## Protocols\n\n" + export.table_to_markdown(header, rows)
            if self.agreement_rows:
                agreement = [[pair, "–" if tau is None else f"{tau:+.2f}", both] for pair, tau, both in self.agreement_rows]
                text += "\n## Agreement between protocols (Kendall's tau)\n\n" + export.table_to_markdown(["protocols", "tau", "runs"], agreement)
            text += "\n"
        text += "## Results\n\n" + export.table_to_markdown(self.comparison_header, self.comparison_rows)
        if self.diff_rows:
            title = "Configuration differences" if self.diff_only.isChecked() else "Configuration"
            text += f"\n## {title}\n\n" + export.table_to_markdown(self.diff_header, self.diff_rows)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")

    def export_curves_png(self, path: str | Path) -> None:
        export.export_widget_png(self.curves, path)

    def _export_dialog(self, kind: str) -> None:
        filters = {"csv": "CSV (*.csv)", "md": "Markdown (*.md)"}
        folder = self.runs_dir if self.runs_dir.is_dir() else Path.cwd()  # beside the runs, as panel exports go in the run folder
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison", str(folder / f"comparison.{kind}"), filters[kind])
        if not path:
            return
        try:
            (self.export_comparison_csv if kind == "csv" else self.export_comparison_markdown)(path)
        except OSError as exc:
            QMessageBox.warning(self, "Export failed", f"Could not write {path}: {exc.strerror or exc}.")
