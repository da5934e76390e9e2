"""Every run folder under the runs directory, live or finished, and side-by-side comparison.

Run folders are the contract between the GUI and everything else (``ssl-studio
train`` in a terminal, ``torchrun`` on another machine), so the browser reads
only the folder: metrics.jsonl, report.json, config.toml.  It watches the root
with a QFileSystemWatcher (new and removed folders show at once) and polls every
two seconds as a fallback (network drives and some platforms send no events).
Polling is cheap: a folder is re-read only when its metrics.jsonl changed size or
mtime, and then only from the byte offset it had reached, so a live run with a
million steps costs what it appended since the last poll, not a re-parse of the
whole file (``run_track.RunTrack``).  The summary rules are the ones ``engine.runs.summarize_run``
uses: a damaged run is listed with one sentence in the Problem column, and a run whose
process is gone shows as interrupted; Resume asks the window to go on training it.

Evaluate… runs ``engine.evaluate.evaluate_run`` on the selected runs, one after
another, in a background thread (``gui.evaluation.EvaluationJob``) with a progress
bar and Cancel; the Results tab puts the protocols side by side (one column per
protocol from ``engine.compare.compare_runs``, scores or ranks) with Kendall's tau
between every pair of protocols, because protocols can rank the same runs
differently.
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QFileSystemWatcher, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QMenu, QMessageBox,
                               QProgressBar, QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QVBoxLayout, QWidget)

from ssl_studio.engine.compare import Comparison, compare_runs
from ssl_studio.engine.evaluate import PROTOCOLS
from ssl_studio.gui.fitting import ElidedLabel, FlowLayout, WrappingLabel
from ssl_studio.gui.evaluation import DEFAULT_PROTOCOLS, EvaluationJob, protocol_title
from ssl_studio.gui.panels import export
from ssl_studio.gui.panels.base import (RUN_COLOURS, cache_axes, ema_filter, label_step_axis, legend_brush, name_control,
                                        symbol_style, watch_theme)
from ssl_studio.gui.panels.run_track import RESUMABLE, RunTrack, _is_number, differing_keys, flatten  # noqa: F401 - re-exported

POLL_MS = 2000
OVERLAY_EMA = 0.9
COLUMNS = ("Run", "Objective", "Data", "Status", "Step", "k-NN", "Eff. rank", "Evaluated", "Started", "Problem")
STATUS_COLOURS = {"completed": "#2E7D32", "running": "#1565C0", "stopped": "#757575", "unknown": "#757575",
                  "interrupted": "#E65100"}
INTERRUPTED_TIP = "No process is training this run any more (it was killed, or its machine went down): Resume goes on from its last checkpoint."
# compare_runs' protocol names -> column titles
PROTOCOL_COLUMNS = {"knn": "k-NN@20", "linear": "linear", "finetune": "fine-tune", "linear@1%": "linear @1 %",
                    "linear@10%": "linear @10 %", "finetune@1%": "fine-tune @1 %", "finetune@10%": "fine-tune @10 %",
                    "zero-shot": "zero-shot"}
# report.json sections -> the runs table's Evaluated column
EVALUATED_SHORT = {"knn": "k-NN", "linear": "linear", "finetune": "fine-tune", "fractions": "fractions", "zeroshot": "zero-shot"}
ERROR_COLOUR = "#C62828"


def protocol_column(name: str) -> str:
    return PROTOCOL_COLUMNS.get(name, name)


def _absolute(path: str | Path) -> Path:
    """One spelling per folder (the root's listing and Open folder… must name a run the same way)."""
    return Path(path).expanduser().resolve()


class _SortItem(QTableWidgetItem):
    """Sorts by a key (numbers as numbers, missing last) rather than by the displayed text."""

    def __init__(self, text: str, key: Any = None):
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.key, getattr(other, "key", None)
        if a is None or b is None:
            return (a is None) < (b is None) if (a is None) != (b is None) else self.text() < other.text()
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class RunsBrowser(QWidget):
    openRun = Signal(str)
    rerunRequested = Signal(str)
    resumeRequested = Signal(str)  # a run folder to go on training from its last checkpoint

    use_trash = True  # Delete moves to the desktop trash when it can; tests turn this off

    def __init__(self, runs_dir: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsBrowser")
        self.setAccessibleName("Runs browser")
        self.runs_dir = _absolute(runs_dir)
        self.tracks: dict[Path, RunTrack] = {}
        self.extra: set[Path] = set()
        self.comparison_header: list[str] = []
        self.comparison_rows: list[list[Any]] = []
        self.diff_header: list[str] = []
        self.diff_rows: list[list[Any]] = []
        self._shown_selection: tuple | None = None
        self._job: EvaluationJob | None = None
        self._finished_job: EvaluationJob | None = None
        self._job_path: Path | None = None
        self._pending: list[tuple[Path, tuple[str, ...], str, float]] = []
        self._job_index = 0  # position of the running job in the current batch (for "run 2 of 3")
        self._job_total = 0
        self._batch_notes: list[str] = []
        self._batch_errors: list[str] = []
        self._watched_window: QWidget | None = None
        self._close_after_evaluation: QWidget | None = None
        self.comparison_result: Comparison | None = None
        self.protocol_header: list[str] = []
        self.protocol_rows: list[list[Any]] = []
        self.agreement_rows: list[list[Any]] = []
        self._pools: dict[int, list[pg.PlotDataItem]] = {}
        self._styles: dict[str, tuple] = {}
        self._build()
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(lambda _p: self._debounce.start())
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)  # one refresh for a burst of file events (a run creating its folder)
        self._debounce.timeout.connect(self.refresh)
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self.refresh)
        self.poll_timer.start()
        self.refresh()

    # -- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.root_label = name_control(ElidedLabel(), "runsRoot", "Runs folder")
        self.root_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = name_control(QPushButton("Open"), "runsOpen", "Open run", "Show the selected run in the live panels.")
        self.open_folder_button = name_control(QPushButton("Open folder…"), "runsOpenFolder", "Open run folder",
                                               "Add any run folder (or a folder of runs) from anywhere to this list.")
        self.rerun_button = name_control(QPushButton("Re-run"), "runsRerun", "Re-run",
                                         "Start a new run with the selected run's exact configuration.")
        self.resume_button = name_control(QPushButton("Resume"), "runsResume", "Resume run",
                                          "Go on training the selected interrupted, stopped or failed run from its last checkpoint.")
        self.evaluate_button = name_control(QPushButton("Evaluate…"), "evaluateButton", "Evaluate runs",
                                            "Evaluate the selected runs by k-NN, linear probe, fine-tuning and more; "
                                            "the results go into each run's report.json.")
        self.delete_button = name_control(QPushButton("Delete"), "runsDelete", "Delete runs",
                                          "Move the selected run folders to the trash (asks first).")
        self.refresh_button = name_control(QPushButton("Refresh"), "runsRefresh", "Refresh run list")
        buttons = QWidget()
        flow = FlowLayout(buttons)  # onto a second row when the dock is narrow, instead of widening the window
        for b in (self.open_button, self.open_folder_button, self.rerun_button, self.resume_button, self.evaluate_button,
                  self.delete_button, self.refresh_button):
            flow.addWidget(b)
        policy = buttons.sizePolicy()
        policy.setHeightForWidth(True)
        buttons.setSizePolicy(policy)
        bar = QVBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(0)
        bar.addWidget(buttons)
        self.root_label.setContentsMargins(6, 0, 6, 0)
        bar.addWidget(self.root_label)

        # evaluation: progress while one runs, then a one-line outcome
        self.evaluation_progress = name_control(QProgressBar(), "evaluationProgress", "Evaluation progress")
        self.evaluation_progress.setRange(0, 1000)
        self.evaluation_progress.setTextVisible(True)
        self.cancel_evaluation_button = name_control(QPushButton("Cancel"), "cancelEvaluationButton", "Cancel evaluation",
                                                     "Stop the evaluation; protocols already finished stay in report.json.")
        self.evaluation_message = name_control(WrappingLabel(), "evaluationMessage", "Evaluation message")
        self.evaluation_message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dismiss_evaluation_button = name_control(QPushButton("Dismiss"), "dismissEvaluationMessage",
                                                      "Dismiss evaluation message")
        self.evaluation_bar = name_control(QWidget(), "evaluationBar", "Evaluation")
        eb = QHBoxLayout(self.evaluation_bar)
        eb.setContentsMargins(4, 0, 4, 2)
        eb.addWidget(self.evaluation_progress, 2)
        eb.addWidget(self.cancel_evaluation_button)
        eb.addWidget(self.evaluation_message, 3)
        eb.addWidget(self.dismiss_evaluation_button)
        self.evaluation_bar.hide()

        self.table = name_control(QTableWidget(0, len(COLUMNS)), "runsTable", "Runs")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setSortingEnabled(True)
        self.table.sortItems(COLUMNS.index("Started"), Qt.SortOrder.DescendingOrder)
        self.empty_label = name_control(QLabel(), "runsEmpty", "No runs")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color:#777;")
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(bar)
        tl.addWidget(self.evaluation_bar)
        tl.addWidget(self.table, 1)
        tl.addWidget(self.empty_label)

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

        self.tabs = name_control(QTabWidget(), "runsTabs", "Comparison views")
        self.tabs.addTab(self.curves, "Curves")
        self.tabs.addTab(results, "Results")
        self.tabs.addTab(config, "Config")

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.tabs)
        # a floor of its own, below what its tables and plots would ask: docked under the loss plots on a
        # laptop screen, the browser must not take the height the loss dock needs (the splitter lends more)
        top.setMinimumHeight(170)  # two rows of buttons, the folder and three runs
        self.tabs.setMinimumHeight(110)
        self.splitter.setStretchFactor(0, 3)  # the list of runs first; the comparison below it
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        for key, slot, name in ((QKeySequence(Qt.Key.Key_Return), self.open_selected, "runsOpenShortcut"),
                                (QKeySequence(QKeySequence.StandardKey.Delete), self.delete_selected, "runsDeleteShortcut")):
            shortcut = QShortcut(key, self.table, context=Qt.ShortcutContext.WidgetShortcut)
            shortcut.setObjectName(name)
            shortcut.activated.connect(slot)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.action_open = self._action("Open", "runsActionOpen", self.open_selected)
        self.action_evaluate = self._action("Evaluate…", "runsActionEvaluate", self.evaluate_selected)
        self.action_rerun = self._action("Re-run", "runsActionRerun", self.rerun_selected)
        self.action_resume = self._action("Resume", "runsActionResume", self.resume_selected)
        self.action_delete = self._action("Delete…", "runsActionDelete", self.delete_selected)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellDoubleClicked.connect(lambda *_: self.open_selected())
        self.open_button.clicked.connect(self.open_selected)
        self.open_folder_button.clicked.connect(self.choose_folder)
        self.rerun_button.clicked.connect(self.rerun_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.evaluate_button.clicked.connect(self.evaluate_selected)
        self.cancel_evaluation_button.clicked.connect(self.cancel_evaluation)
        self.dismiss_evaluation_button.clicked.connect(self._dismiss_message)
        self.rank_view.toggled.connect(lambda _on: self._fill_protocols())
        self.refresh_button.clicked.connect(self.refresh)
        self.diff_only.toggled.connect(lambda _on: self._update_diff())
        self.export_csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_md_button.clicked.connect(lambda: self._export_dialog("md"))
        self._update_buttons()

    def _action(self, text: str, name: str, slot) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _context_menu(self, pos) -> None:
        menu = self.context_menu()
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def context_menu(self) -> QMenu:
        """The table's right-click menu (built per click so its entries match the selection)."""
        menu = QMenu(self)
        name_control(menu, "runsContextMenu", "Run actions")
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._update_buttons()
        for action in (self.action_open, self.action_evaluate, self.action_rerun, self.action_resume):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.action_delete)
        return menu

    def shutdown(self) -> None:
        """Stop polling; cancel a running evaluation and wait for its thread (the window calls this on close)."""
        self.poll_timer.stop()
        self._debounce.stop()
        self._pending.clear()
        if self._job is not None:
            self._job.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override (the browser as a window of its own)
        self.shutdown()
        super().closeEvent(event)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._watch_window()

    def _watch_window(self) -> None:
        """Closing the main window while an evaluation runs: cancel it first, then close (see eventFilter).

        The top-most ancestor, not window(): a floating dock is a window of its own but its parent is the main one."""
        top = self
        while top.parentWidget() is not None:
            top = top.parentWidget()
        if top is not self and top is not self._watched_window:
            if self._watched_window is not None:
                self._watched_window.removeEventFilter(self)
            top.installEventFilter(self)
            self._watched_window = top

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if obj is self._watched_window and event.type() == QEvent.Type.Close and self.evaluating:
            # the thread must end before the window (and this browser) goes: cancel, close when it has
            self._close_after_evaluation = obj
            self._pending.clear()
            self._job.cancel()
            self.evaluation_progress.setFormat("Cancelling the evaluation; the window closes by itself…")
            event.ignore()
            return True
        return super().eventFilter(obj, event)

    # -- scanning ----------------------------------------------------------------------
    def set_runs_dir(self, runs_dir: str | Path) -> None:
        self.runs_dir = _absolute(runs_dir)
        self.tracks = {p: t for p, t in self.tracks.items() if p in self.extra}
        self.refresh()

    def _folders(self) -> set[Path]:
        found: set[Path] = set()
        if self.runs_dir.is_dir():
            try:
                found = {p for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
            except OSError:
                pass
        return found | {p for p in self.extra if p.is_dir()}

    def refresh(self) -> None:
        """Rescan the root and re-read folders whose files changed; cheap when nothing did."""
        root = str(self.runs_dir)
        if self.runs_dir.is_dir() and root not in self.watcher.directories():
            self.watcher.addPath(root)
        self.root_label.setText(f"Runs in {self.runs_dir}")
        folders = self._folders()
        changed = False
        for gone in set(self.tracks) - folders:
            del self.tracks[gone]
            changed = True
        for path in folders:
            track = self.tracks.get(path)
            if track is None:
                track = self.tracks[path] = RunTrack(path)
            if track.update():
                changed = True
        if changed or self.table.rowCount() != len(self.runs()):
            self._fill_table()
            self._selection_changed()  # redraws only if a selected run changed

    def runs(self) -> list[RunTrack]:
        """Listed runs, newest first."""
        return sorted((t for t in self.tracks.values() if t.valid), key=lambda t: (t.started or t.mtime or 0.0), reverse=True)

    # -- the table ---------------------------------------------------------------------
    def _fill_table(self) -> None:
        selected = set(self.selected_paths())
        runs = self.runs()
        table = self.table
        table.blockSignals(True)
        sort_col = table.horizontalHeader().sortIndicatorSection()
        sort_order = table.horizontalHeader().sortIndicatorOrder()
        table.setSortingEnabled(False)
        table.setRowCount(len(runs))
        for r, t in enumerate(runs):
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(t.started)) if t.started else ""
            evaluated = t.evaluated_protocols()
            evaluated_text = "evaluating…" if t.path == self._job_path else ", ".join(EVALUATED_SHORT[p] for p in evaluated)
            cells = [
                (t.name, t.name), (t.objective, t.objective), (t.data, t.data), (t.status, t.status),
                (str(t.step), t.step),
                (f"{t.knn:.1%}" if t.knn is not None else "", t.knn),
                (f"{t.rank:.1f}" if t.rank is not None else "", t.rank),
                (evaluated_text, len(evaluated)),
                (started, t.started or t.mtime),
                (t.problem or "", t.problem or ""),
            ]
            for c, (text, key) in enumerate(cells):
                item = _SortItem(text, key)
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, str(t.path))
                    item.setToolTip(str(t.path))
                if c == 3:
                    colour = STATUS_COLOURS.get(t.status, "#C62828")  # failed, diverged at step N
                    item.setForeground(QColor(colour))
                    if t.status == "interrupted":
                        item.setToolTip(INTERRUPTED_TIP)
                if c == 9 and t.problem:
                    item.setForeground(QColor(ERROR_COLOUR))
                    item.setToolTip(t.problem)
                if c == 7 and evaluated:
                    item.setToolTip("report.json has: " + ", ".join(protocol_title(p) for p in evaluated))
                if 4 <= c <= 6:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(r, c, item)
        table.setSortingEnabled(True)
        table.sortItems(sort_col, sort_order)
        table.clearSelection()
        mode = table.selectionMode()
        table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(table.rowCount()):
            if Path(table.item(r, 0).data(Qt.ItemDataRole.UserRole)) in selected:
                table.selectRow(r)
        table.setSelectionMode(mode)
        table.blockSignals(False)
        self.empty_label.setText("" if runs else f"No runs in {self.runs_dir} yet: start one, or use Open folder… to add one from elsewhere.")
        self.empty_label.setVisible(not runs)

    def selected_paths(self) -> list[Path]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        out = []
        for r in rows:
            item = self.table.item(r, 0)
            if item is not None:
                out.append(Path(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def selected_tracks(self) -> list[RunTrack]:
        return [self.tracks[p] for p in self.selected_paths() if p in self.tracks]

    def select_paths(self, paths) -> None:
        wanted = {Path(p) for p in paths}
        table = self.table
        table.blockSignals(True)
        table.clearSelection()
        mode = table.selectionMode()
        table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for r in range(table.rowCount()):
            if Path(table.item(r, 0).data(Qt.ItemDataRole.UserRole)) in wanted:
                table.selectRow(r)
        table.setSelectionMode(mode)
        table.blockSignals(False)
        self._selection_changed(force=True)

    def _update_buttons(self) -> None:
        tracks = self.selected_tracks()
        self.open_button.setEnabled(len(tracks) >= 1)
        self.rerun_button.setEnabled(len(tracks) == 1 and (tracks[0].path / "config.toml").is_file())
        self.resume_button.setEnabled(len(tracks) == 1 and tracks[0].resumable and not self._job_path == tracks[0].path)
        self.delete_button.setEnabled(len(tracks) >= 1)
        can_evaluate = bool(tracks) and not self.evaluating and all((t.path / "config.toml").is_file() for t in tracks)
        self.evaluate_button.setEnabled(can_evaluate)
        self.evaluate_button.setToolTip(
            "An evaluation is running; wait for it or cancel it." if self.evaluating else
            "Evaluate the selected runs by k-NN, linear probe, fine-tuning and more; the results go into each run's report.json.")
        self.action_open.setEnabled(self.open_button.isEnabled())
        self.action_evaluate.setEnabled(can_evaluate)
        self.action_rerun.setEnabled(self.rerun_button.isEnabled())
        self.action_resume.setEnabled(self.resume_button.isEnabled())
        self.action_delete.setEnabled(self.delete_button.isEnabled())
        self.export_csv_button.setEnabled(bool(tracks))
        self.export_md_button.setEnabled(bool(tracks))

    def _selection_changed(self, force: bool = False) -> None:
        tracks = self.selected_tracks()
        key = tuple((t.path, t.offset, t._config_key, t.report_key) for t in tracks)
        self._update_buttons()
        if not force and key == self._shown_selection:
            return
        self._shown_selection = key
        self._update_curves(tracks)
        self._update_comparison(tracks)
        self._update_diff()

    # -- comparison views --------------------------------------------------------------
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

    def _update_curves(self, tracks: list[RunTrack]) -> None:
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

    def _update_comparison(self, tracks: list[RunTrack]) -> None:
        rows_by_run = [t.results() for t in tracks]
        keys: list[str] = []
        for row in rows_by_run:
            keys += [k for k in row if k not in keys]
        self.comparison_header = ["metric"] + [t.name for t in tracks]
        self.comparison_rows = [[k] + [row.get(k) for row in rows_by_run] for k in keys]
        _fill(self.comparison, self.comparison_header, self.comparison_rows, highlight_best=True)
        self._update_protocols(tracks)

    def _update_protocols(self, tracks: list[RunTrack]) -> None:
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

    # -- actions -----------------------------------------------------------------------
    def open_selected(self) -> None:
        paths = self.selected_paths()
        if paths:
            self.openRun.emit(str(paths[0]))

    def rerun_selected(self) -> None:
        paths = self.selected_paths()
        if len(paths) == 1 and (paths[0] / "config.toml").is_file():
            self.rerunRequested.emit(str(paths[0] / "config.toml"))

    def resume_selected(self) -> bool:
        """Ask the window to go on training the selected run (interrupted, stopped or failed) from its checkpoint."""
        tracks = self.selected_tracks()
        if len(tracks) != 1:
            return False
        track = tracks[0]
        track.update()  # it may have come back to life, or been resumed elsewhere, since the last poll
        if not track.resumable:
            self._fill_table()
            return False
        self.resumeRequested.emit(str(track.path))
        return True

    def choose_folder(self) -> None:
        start = str(self.runs_dir if self.runs_dir.is_dir() else Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a run folder", start)
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> bool:
        """Add a run folder from anywhere (or every run inside a folder of runs) and select it."""
        folder = _absolute(folder)
        candidates = [folder]
        if not (folder / "metrics.jsonl").exists() and not (folder / "config.toml").exists() and folder.is_dir():
            candidates = [p for p in sorted(folder.iterdir()) if p.is_dir()]
        added = []
        for p in candidates:
            track = self.tracks.get(p) or RunTrack(p)
            track.update()
            if track.valid:
                self.tracks[p] = track
                if p.parent != self.runs_dir:
                    self.extra.add(p)
                added.append(p)
        if not added:
            QMessageBox.warning(self, "Not a run folder",
                                f"{folder} is not a run folder: it has no readable metrics.jsonl or config.toml, and no run folders inside.")
            return False
        self._fill_table()
        self.select_paths(added)
        return True

    def confirm_delete(self, tracks: list[RunTrack]) -> bool:
        names = "\n".join(f"  {t.name}" for t in tracks[:10]) + ("\n  …" if len(tracks) > 10 else "")
        live = [t.name for t in tracks if t.status == "running" and time.time() - t.mtime < 60]
        warning = f"\n\n{', '.join(live)} still seems to be running." if live else ""
        where = "to the trash" if self.use_trash else "permanently"
        answer = QMessageBox.question(self, "Delete runs", f"Delete {len(tracks)} run folder{'s' if len(tracks) != 1 else ''} {where}?\n\n{names}{warning}",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> list[Path]:
        tracks = self.selected_tracks()
        if self._job_path is not None and any(t.path == self._job_path for t in tracks):
            QMessageBox.warning(self, "Run is being evaluated",
                                f"{self._job_path.name} is being evaluated; cancel the evaluation before deleting it.")
            return []
        if not tracks or not self.confirm_delete(tracks):
            return []
        deleted, errors = [], []
        for t in tracks:
            try:
                moved = False
                if self.use_trash:
                    from PySide6.QtCore import QFile

                    result = QFile.moveToTrash(str(t.path))
                    moved = result[0] if isinstance(result, tuple) else bool(result)
                if not moved:
                    shutil.rmtree(t.path)
                deleted.append(t.path)
            except OSError as exc:
                errors.append(f"{t.name}: {exc.strerror or exc}")
            self.tracks.pop(t.path, None)
            self.extra.discard(t.path)
        if errors:
            QMessageBox.warning(self, "Could not delete", "Some run folders could not be deleted:\n" + "\n".join(errors))
        self.table.clearSelection()
        self.refresh()
        self._fill_table()
        self._selection_changed(force=True)
        return deleted

    # -- evaluation --------------------------------------------------------------------
    @property
    def evaluating(self) -> bool:
        return self._job is not None and not self._job.done

    @property
    def evaluation_job(self) -> EvaluationJob | None:
        return self._job

    def evaluate_selected(self) -> bool:
        """Ask which protocols (a small dialog), then evaluate the selected runs one after another."""
        tracks = [t for t in self.selected_tracks() if (t.path / "config.toml").is_file()]
        if not tracks or self.evaluating:
            return False
        dialog = EvaluateDialog(self, [t.name for t in tracks], text_capable=any(_has_text_tower(t.objective) for t in tracks))
        try:
            if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.protocols():
                return False
            return self.start_evaluation([t.path for t in tracks], dialog.protocols(), dialog.device(), dialog.finetune_epochs())
        finally:
            dialog.deleteLater()

    def start_evaluation(self, paths, protocols=DEFAULT_PROTOCOLS, device: str = "auto", finetune_epochs: float = 3.0) -> bool:
        """Evaluate ``paths`` in turn in a background thread; False when one is already running."""
        if self.evaluating:
            return False
        protocols = tuple(p for p in PROTOCOLS if p in protocols)  # the engine's order: zero-shot, which may refuse, last
        self._pending = [(_absolute(p), protocols, device, float(finetune_epochs)) for p in paths]
        if not self._pending or not protocols:
            self._pending = []
            return False
        self._job_index, self._job_total = 0, len(self._pending)
        self._batch_notes, self._batch_errors = [], []
        self._close_after_evaluation = None
        self._start_next()
        return True

    def cancel_evaluation(self) -> None:
        """Cancel the running evaluation (and those queued after it); finished protocols stay in report.json."""
        self._pending.clear()
        if self.evaluating:
            self._job.cancel()
            self.cancel_evaluation_button.setEnabled(False)
            self.evaluation_progress.setFormat(f"Cancelling the evaluation of {self._job_path.name}…")

    def _start_next(self) -> None:
        if not self._pending:
            self._evaluation_done()
            return
        path, protocols, device, epochs = self._pending.pop(0)
        self._job_index += 1
        job = EvaluationJob(path, protocols, device=device, finetune_epochs=epochs)
        job.progress.connect(self._on_job_progress)
        job.finished.connect(self._on_job_finished)
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(self._on_job_cancelled)
        self._job, self._job_path = job, path
        self.evaluation_bar.show()
        self.evaluation_progress.show()
        self.cancel_evaluation_button.show()
        self.cancel_evaluation_button.setEnabled(True)
        self.evaluation_message.hide()
        self.dismiss_evaluation_button.hide()
        self.evaluation_progress.setValue(0)
        self.evaluation_progress.setFormat(f"{self._run_heading()}: loading the checkpoint…")
        self._update_buttons()
        self._fill_table()
        job.start()

    def _run_heading(self) -> str:
        name = self._job_path.name if self._job_path is not None else ""
        return name + (f" ({self._job_index} of {self._job_total})" if self._job_total > 1 else "")

    def _on_job_progress(self, protocol: str, fraction: float) -> None:
        job = self._job
        if job is None or job.cancel_requested:
            return
        which = f", protocol {job.protocols.index(protocol) + 1} of {len(job.protocols)}" if protocol in job.protocols and len(job.protocols) > 1 else ""
        self.evaluation_progress.setValue(int(round(fraction * 1000)))
        self.evaluation_progress.setFormat(f"{self._run_heading()}: {protocol_title(protocol)}{which} – %p%")

    def _on_job_finished(self, results: dict) -> None:
        headline = []
        for name, (key, title) in (("knn", ("k20", "k-NN@20")), ("linear", ("top1", "linear")), ("finetune", ("top1", "fine-tune")),
                                   ("zeroshot", ("top1", "zero-shot"))):
            value = results.get(name, {}).get(key) if isinstance(results.get(name), dict) else None
            if _is_number(value):
                headline.append(f"{title} {value:.3f}")
        if "fractions" in results:
            headline.append("label fractions done")
        self._batch_notes.append(f"Evaluated {self._job_path.name}: {', '.join(headline) or 'done'}.")
        self._job_ended()

    def _on_job_failed(self, message: str) -> None:
        self._batch_errors.append(f"Could not evaluate {self._job_path.name}: {message}")
        self._job_ended()

    def _on_job_cancelled(self) -> None:
        self._pending.clear()
        self._batch_notes.append(f"Cancelled the evaluation of {self._job_path.name}; protocols finished before the cancel are kept.")
        self._job_ended()

    def _job_ended(self) -> None:
        path = self._job_path
        self._finished_job = self._job  # dropped at the next start, not inside its own signal
        self._job, self._job_path = None, None
        track = self.tracks.get(path) if path is not None else None
        if track is not None:
            track.update()  # report.json changed: the row, the comparison and the protocols follow
        self._fill_table()
        self._selection_changed(force=True)
        self._start_next()

    def _evaluation_done(self) -> None:
        self.evaluation_progress.hide()
        self.cancel_evaluation_button.hide()
        lines = self._batch_errors + self._batch_notes
        if lines:
            self.evaluation_message.setText("\n".join(lines))
            self.evaluation_message.setStyleSheet(f"color:{ERROR_COLOUR};" if self._batch_errors else "")
            self.evaluation_message.show()
            self.dismiss_evaluation_button.show()
            self.evaluation_bar.show()
        else:
            self.evaluation_bar.hide()
        self._update_buttons()
        window, self._close_after_evaluation = self._close_after_evaluation, None
        if window is not None:
            QTimer.singleShot(0, window.close)

    def _dismiss_message(self) -> None:
        self.evaluation_message.clear()
        if not self.evaluating:
            self.evaluation_bar.hide()

    # -- export ------------------------------------------------------------------------
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


def _has_text_tower(objective_name: str) -> bool:
    """Whether an objective has a text tower (zero-shot needs one), from its class, without building it."""
    try:
        from ssl_studio.objectives import get_objective

        cls = get_objective(objective_name)
    except Exception:  # noqa: BLE001 - an unknown objective: let evaluate_run say what is wrong
        return False
    return cls.has_text_tower


PROTOCOL_TIPS = {
    "knn": "Weighted k-NN (k = 5 and 20, cosine) on frozen features; takes seconds.",
    "linear": "Logistic regression on frozen, standardised features; weight decay chosen on 10 % of the training images.",
    "finetune": "Trains a copy of the backbone with a new head (the run's own weights stay as they are); the slowest.",
    "fractions": "Linear probe and fine-tuning with 1 %, 10 % and 100 % of the labels.",
    "zeroshot": "Classifies by text prompts with the run's text tower; needs an image-text objective such as clip.",
}


class EvaluateDialog(QDialog):
    """Which protocols, how long to fine-tune, on which device."""

    def __init__(self, parent: QWidget | None, run_names: list[str], text_capable: bool = False,
                 defaults=DEFAULT_PROTOCOLS, finetune_epochs: float = 3.0):
        super().__init__(parent)
        name_control(self, "evaluateDialog", "Evaluate runs")
        self.setWindowTitle("Evaluate runs")
        shown = ", ".join(run_names[:3]) + (f" and {len(run_names) - 3} more" if len(run_names) > 3 else "")
        intro = name_control(QLabel(f"Evaluate {shown} from {'its' if len(run_names) == 1 else 'their'} last checkpoint. "
                                    "Results are added to report.json; the run itself is not changed."),
                             "evaluateIntro", "What will be evaluated")
        intro.setWordWrap(True)
        self.checks: dict[str, QCheckBox] = {}
        box = QVBoxLayout()
        for p in PROTOCOLS:
            check = name_control(QCheckBox(protocol_title(p)), f"evaluateProtocol_{p}", f"Evaluate by {protocol_title(p)}",
                                 PROTOCOL_TIPS.get(p))
            check.setChecked(p in defaults and (p != "zeroshot" or text_capable))
            if p == "zeroshot" and not text_capable:
                check.setEnabled(False)
                check.setToolTip(PROTOCOL_TIPS["zeroshot"] + " None of the selected runs has one.")
            check.toggled.connect(lambda _on: self._update())
            self.checks[p] = check
            box.addWidget(check)
        self.epochs = name_control(QDoubleSpinBox(), "evaluateFinetuneEpochs", "Fine-tuning epochs",
                                   "Passes over the training images when fine-tuning (at least 40 steps are taken).")
        self.epochs.setRange(0.1, 1000.0)
        self.epochs.setDecimals(1)
        self.epochs.setSingleStep(0.5)
        self.epochs.setValue(finetune_epochs)
        self.device_box = name_control(QComboBox(), "evaluateDevice", "Evaluation device",
                                       "auto: the device the run was configured for.")
        self.device_box.addItems(["auto", "cpu", "cuda", "mps"])
        form = QFormLayout()
        form.addRow("Fine-tuning epochs", self.epochs)
        form.addRow("Device", self.device_box)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Evaluate")
        name_control(ok, "evaluateStart", "Start evaluation")
        name_control(self.buttons.button(QDialogButtonBox.StandardButton.Cancel), "evaluateCancelDialog", "Cancel")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(box)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update()

    def _update(self) -> None:
        chosen = self.protocols()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(chosen))
        self.epochs.setEnabled("finetune" in chosen or "fractions" in chosen)

    def protocols(self) -> tuple[str, ...]:
        return tuple(p for p, c in self.checks.items() if c.isChecked() and c.isEnabled())

    def finetune_epochs(self) -> float:
        return float(self.epochs.value())

    def device(self) -> str:
        return self.device_box.currentText()


_ACCURACY_LEAF = re.compile(r"^(knn_)?(k\d+|top\d|acc|accuracy|knn_acc|linear_acc|zero_shot|finetune)$")


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
            nums = [v for v in values if _is_number(v) and math.isfinite(v)]
            best = max(nums) if nums else None
        for c, v in enumerate(values):
            item = QTableWidgetItem(export.format_cell(v))
            if _is_number(v):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if best is not None and v == best:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            table.setItem(r, c, item)
    table.resizeColumnsToContents()
