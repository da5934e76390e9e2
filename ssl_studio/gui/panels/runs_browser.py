"""Every run folder under the runs directory, live or finished: the runs table and its actions.

Run folders are the contract between the GUI and everything else (``ssl-studio
train`` in a terminal, ``torchrun`` on another machine), so the browser reads
only the folder: metrics.jsonl, report.json, config.toml.  It watches the root
with a QFileSystemWatcher (new and removed folders show at once) and polls every
two seconds as a fallback (network drives and some platforms send no events).
Polling is cheap: a folder is re-read only when its metrics.jsonl changed size or
mtime, and then only from the byte offset it had reached, so a live run with a
million steps costs what it appended since the last poll, not a re-parse of the
whole file.  The rules that read a folder are the engine's (``engine.run_model.RunModel``, also
behind ``summarize_run`` and the CLI), and this browser is a view of them: a damaged
run is listed with one sentence in the Problem column, and a run whose
process is gone shows as interrupted; Resume asks the window to go on training it.

This file is the table and its actions (open, re-run, resume, delete, the context menu);
the comparison tabs under it are ``runs_compare`` and Evaluate… is ``runs_evaluation``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QFileSystemWatcher, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHeaderView, QLabel, QMenu, QMessageBox,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ssl_studio.engine.compare import Comparison
from ssl_studio.engine.run_model import RunModel
from ssl_studio.gui.evaluation import protocol_title
from ssl_studio.gui.fitting import ElidedLabel, FlowLayout
from ssl_studio.gui.naming import name_control
from ssl_studio.gui.panels.runs_compare import ComparisonViews
from ssl_studio.gui.panels.runs_evaluation import ERROR_COLOUR, EvaluateDialog, RunEvaluation, _absolute

POLL_MS = 2000
VISIBLE_ROWS = 8  # the runs table never shrinks below this many rows: a list of runs is what the tab is for
COLUMNS = ("Run", "Objective", "Data", "Status", "Step", "k-NN", "Eff. rank", "Evaluated", "Started", "Problem")
STATUS_COLOURS = {"completed": "#2E7D32", "running": "#1565C0", "stopped": "#757575", "unknown": "#757575",
                  "interrupted": "#E65100"}
INTERRUPTED_TIP = "No process is training this run any more (it was killed, or its machine went down): Resume goes on from its last checkpoint."
# report.json sections -> the runs table's Evaluated column
EVALUATED_SHORT = {"knn": "k-NN", "linear": "linear", "finetune": "fine-tune", "fractions": "fractions", "zeroshot": "zero-shot",
                   "baselines": "baselines", "scratch": "scratch", "perplexity": "perplexity"}


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


class RunsBrowser(RunEvaluation, ComparisonViews, QWidget):
    """The runs table (a view of ``engine.run_model.RunModel`` per folder) and its actions; the comparison views
    (``runs_compare``) and evaluation (``runs_evaluation``) are its other two jobs, in files of their own."""

    openRun = Signal(str)
    rerunRequested = Signal(str)
    resumeRequested = Signal(str)  # a run folder to go on training from its last checkpoint

    use_trash = True  # Delete moves to the desktop trash when it can; tests turn this off

    def __init__(self, runs_dir: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runsBrowser")
        self.setAccessibleName("Runs browser")
        self.runs_dir = _absolute(runs_dir)
        self.tracks: dict[Path, RunModel] = {}
        self.extra: set[Path] = set()
        self.comparison_header: list[str] = []
        self.comparison_rows: list[list[Any]] = []
        self.diff_header: list[str] = []
        self.diff_rows: list[list[Any]] = []
        self._shown_selection: tuple | None = None
        self._watched_window: QWidget | None = None
        self._close_after_evaluation: QWidget | None = None
        self.comparison_result: Comparison | None = None
        self.protocol_header: list[str] = []
        self.protocol_rows: list[list[Any]] = []
        self.agreement_rows: list[list[Any]] = []
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
        """The list of runs (buttons, evaluation bar, table) over the comparison views, then the wiring."""
        bar = self._build_buttons()
        self._build_evaluation_bar()
        self._build_table()
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(bar)
        tl.addWidget(self.evaluation_bar)
        tl.addWidget(self.table, 1)
        tl.addWidget(self.empty_label)

        self.tabs = self._build_comparison()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.tabs)
        # the comparison below takes what the list leaves: its plots and tables read at 110 px, a list of runs does not
        self.splitter.setCollapsible(0, False)
        self.tabs.setMinimumHeight(110)
        self.splitter.setStretchFactor(0, 3)  # the list of runs first; the comparison below it
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        self._connect()

    def _build_buttons(self) -> QVBoxLayout:
        """The action buttons (flowing onto a second row when narrow) over the runs folder's name."""
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
        return bar

    def _build_table(self) -> None:
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
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)  # compact rows
        self.table.setMinimumHeight(self.table_height(VISIBLE_ROWS))
        self.empty_label = name_control(QLabel(), "runsEmpty", "No runs")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color:#777;")

    def _connect(self) -> None:
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

    def table_height(self, rows: int) -> int:
        """The runs table's height showing ``rows`` rows under its header, with room for a horizontal scroll bar."""
        header = self.table.horizontalHeader().sizeHint().height()
        scroll = self.table.horizontalScrollBar().sizeHint().height()
        return header + rows * self.table.verticalHeader().defaultSectionSize() + scroll + 2 * self.table.frameWidth()

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
                track = self.tracks[path] = RunModel(path)
            if track.update():
                changed = True
        if changed or self.table.rowCount() != len(self.runs()):
            self._fill_table()
            self._selection_changed()  # redraws only if a selected run changed

    def runs(self) -> list[RunModel]:
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
            evaluated_text = "evaluating…" if t.path == self._job_path else ", ".join(EVALUATED_SHORT.get(p, p) for p in evaluated)
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

    def selected_tracks(self) -> list[RunModel]:
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
            track = self.tracks.get(p) or RunModel(p)
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

    def confirm_delete(self, tracks: list[RunModel]) -> bool:
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


    # -- export ------------------------------------------------------------------------


def _has_text_tower(objective_name: str) -> bool:
    """Whether an objective has a text tower (zero-shot needs one), from its class, without building it."""
    try:
        from ssl_studio.objectives import get_objective

        cls = get_objective(objective_name)
    except Exception:  # noqa: BLE001 - an unknown objective: let evaluate_run say what is wrong
        return False
    return cls.has_text_tower


