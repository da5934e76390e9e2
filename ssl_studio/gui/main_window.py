"""The lab window: the experiment panel, the live panels as docks, menus, toolbar and status bar.

The window is a dispatcher.  It turns the experiment panel's form into a
RunConfig, hands it to a ``TrainingSession`` (a QThread running the engine's
Trainer), and passes every throttled batch of engine events to each panel's
``handle_events``.  A run folder read from disk goes through the very same
path (``replay_events``), so a finished, a headless or a still-running run looks
exactly like a live one.  No training and no heavy maths happen here.

This file is the window's frame: its docks (live panels from ``panels.registry``, picture
panels as their first pictures arrive), the dispatch of events to them, and closing.  Its
chrome (menus, toolbar, status bar, settings) is ``window_chrome``, training control
``run_control``, and run folders, presets and exports ``run_folders``.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from ssl_studio.engine.events import Failed, Finished, Started, Step, Visuals
from ssl_studio.gui import theme
from ssl_studio.gui.experiment_panel import ExperimentPanel
from ssl_studio.gui.naming import name_control
from ssl_studio.gui.panels import RunsBrowser
from ssl_studio.gui.panels.registry import LIVE_PANELS, visual_panel_classes
from ssl_studio.gui.run_control import RunControl
from ssl_studio.gui.run_folders import TAIL_INTERVAL_MS, RunFolders
from ssl_studio.gui.torchrun_session import TorchrunSession
from ssl_studio.gui.window_chrome import APPLICATION, DEFAULT_SIZE, ORGANIZATION, SETTINGS_VERSION, WindowChrome
from ssl_studio.gui.worker import TrainingSession


SHUTDOWN_WAIT_MS = 2000


def _camel(key: str) -> str:
    """"step_metrics" -> "stepMetrics": a registry key as a Qt object name."""
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 60:02d}:{s % 60:02d}" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}"


class MainWindow(WindowChrome, RunControl, RunFolders, QMainWindow):
    """SSL Studio's one window; ``runs_dir`` is where new runs go and what the browser lists."""

    themeChanged = Signal(str)
    confirm_quit = True  # closing during a live run asks first; tests that close mid-run set it False

    def __init__(self, runs_dir: str | Path = "runs", settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setAccessibleName("SSL Studio")
        self.setWindowTitle("SSL Studio")
        self.setWindowIcon(theme.app_icon())
        self.setDockOptions(QMainWindow.AnimatedDocks | QMainWindow.AllowTabbedDocks | QMainWindow.AllowNestedDocks)
        self.runs_dir = Path(runs_dir)
        self.settings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
        self.session: TrainingSession | TorchrunSession | None = None
        self.current_imageset: Any = None
        self.visual_panels: dict[str, Any] = {}
        self.state = "idle"
        self.total_steps: int | None = None
        self.current_run: str | None = None
        self.last_step: Step | None = None
        self.rate_unit = "img/s"  # windows/s for a text run (Started.rate_unit)
        self.panel_errors: dict[str, str] = {}
        self._fed_kinds: set[str] = set()  # visual kinds the current run has sent: their docks are shown
        self._closing = False
        self._tail_path: Path | None = None
        self._tail_offset = 0
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(TAIL_INTERVAL_MS)
        self._tail_timer.timeout.connect(self._poll_tail)

        self._build_panels()
        self._build_actions()
        self._build_menus()
        self._build_toolbars()
        self._build_status_bar()
        self._default_state = self.saveState(SETTINGS_VERSION)
        self._restore_settings()
        self._fit_to_screen()
        self._set_state("idle")

    # ------------------------------------------------------------------ building
    def _build_panels(self) -> None:
        # Docks fill the window; the central widget only exists because QMainWindow needs one.
        central = QWidget()
        central.setObjectName("centralPlaceholder")
        central.setMaximumSize(0, 0)
        self.setCentralWidget(central)
        central.hide()

        self.experiment = ExperimentPanel()
        self.experiment.runs_dir = self.runs_dir
        self.experiment.setMinimumWidth(390)
        self.experiment.startRequested.connect(self.start_run)
        self.experiment.pauseRequested.connect(self.toggle_pause)
        self.experiment.stopRequested.connect(self.stop_run)
        self.experiment.validityChanged.connect(self._on_validity)

        self.panels = []
        self.docks: dict[str, QDockWidget] = {}
        self.experiment_dock = self._dock("experimentDock", "Experiment", self.experiment)
        self.addDockWidget(Qt.LeftDockWidgetArea, self.experiment_dock)
        for entry in LIVE_PANELS:  # the registry: a new live panel is a line there, not here
            panel = entry.cls()
            dock = self._dock(_camel(entry.key) + "Dock", getattr(panel, "title", entry.key), panel)
            setattr(self, f"{entry.key}_panel", panel)
            setattr(self, f"{entry.key}_dock", dock)
            self.panels.append(panel)
            where, _, other = entry.place.partition(":")
            anchor = getattr(self, f"{other}_dock", None)
            if where == "beside" and anchor is not None:
                self.splitDockWidget(anchor, dock, Qt.Horizontal)
            elif where == "below" and anchor is not None:
                self.splitDockWidget(anchor, dock, Qt.Vertical)
            elif where == "tab" and anchor is not None:
                self.tabifyDockWidget(anchor, dock)
            else:
                self.addDockWidget(Qt.RightDockWidgetArea, dock)
        self.runs_browser = RunsBrowser(self.runs_dir)
        self.runs_browser.openRun.connect(self.open_run)
        self.runs_browser.rerunRequested.connect(self.rerun)
        self.runs_browser.resumeRequested.connect(self.resume_folder)
        self.runs_dock = self._dock("runsDock", getattr(self.runs_browser, "title", "Runs"), self.runs_browser)
        self.tabifyDockWidget(self.embedding_dock, self.runs_dock)  # the full-height column: the runs table shows its rows
        self.embedding_dock.raise_()
        self.spectrum_dock.raise_()
        self.resize(*DEFAULT_SIZE)
        self.resizeDocks([self.experiment_dock, self.loss_dock, self.embedding_dock], [420, 600, 520], Qt.Horizontal)
        self.resizeDocks([self.loss_dock, self.spectrum_dock], [520, 380], Qt.Vertical)

    def _dock(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        name_control(dock, name, f"{title} panel")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable | QDockWidget.DockWidgetClosable)
        self.docks[name] = dock
        return dock

    def _visual_panel(self, kind: str):
        """The panel for an objective's visuals (reconstructions, attention, ...), docked the first time
        such visuals arrive: a panel appears only for objectives that produce its pictures."""
        if kind in self.visual_panels:
            return self.visual_panels[kind]
        cls = visual_panel_classes().get(kind)
        if cls is None:
            self.visual_panels[kind] = None
            return None
        panel = cls()
        if hasattr(panel, "requestVisuals"):
            panel.requestVisuals.connect(self._on_visuals_requested)
        if self.current_imageset is not None:
            self._call_panel(panel, "set_imageset", self.current_imageset)
        if hasattr(panel, "set_live_model_source"):  # the Text panel's Ask box
            panel.set_live_model_source(self._live_text_model)
        if self.current_run and hasattr(panel, "set_run"):  # it missed the run's Started event: it did not exist yet
            self._call_panel(panel, "set_run", self.current_run)
        dock = self._dock(f"{kind}Dock", getattr(panel, "title", kind.capitalize()), panel)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        self.tabifyDockWidget(self.embedding_dock, dock)
        QTimer.singleShot(0, dock.raise_)  # to the front once the layout has made its tab (raised at once, it is not)
        self.view_menu.insertAction(self.view_menu.actions()[0] if self.view_menu.actions() else None, dock.toggleViewAction())
        self.visual_panels[kind] = panel
        self.panels.append(panel)
        self._add_export_entries(panel)
        return panel

    def _attach_text_scorer(self, panel) -> None:
        """Give the zero-shot panel the running model's text tower, so edited prompts re-score at once.

        The scorer reads the objective's ``text_snapshot``, a CPU copy the training thread
        swaps in at each visuals step; the GUI thread never touches the training model.
        """
        trainer = getattr(getattr(self.session, "worker", None), "trainer", None)
        objective = getattr(trainer, "objective", None)
        if objective is None or not objective.has_text_tower:
            return
        if getattr(panel.scorer, "objective", None) is objective:
            return
        from ssl_studio.engine.zeroshot import TextScorer

        panel.set_scorer(TextScorer(objective))

    def _live_text_model(self, run_dir: str):
        """A queue that receives a frozen copy of the text network training in this window, between two steps (the
        Text panel's Ask box); None when ``run_dir`` is not that run, so the box loads the run's checkpoint instead."""
        if not (self.running and getattr(self.session, "in_process", True) and self.current_run == run_dir) or self.state == "paused":
            return None  # a paused run takes no step to hand its network over at: its checkpoint answers
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.session.control.request_visuals({"kind": "text_model", "reply": reply})
        return reply

    def _on_visuals_requested(self, request: dict) -> None:
        """A panel asks for new pictures from the current model (a new mask, another ratio)."""
        if self.running and not getattr(self.session, "in_process", True):
            self.statusBar().showMessage("A torchrun job draws its pictures on its own schedule; new ones on request need "
                                         "a run started with 1 process.", 5000)
        elif self.running:
            self.session.control.request_visuals(request)
        else:
            self.statusBar().showMessage("New pictures need a running model: start or resume a run first.", 5000)

    # ------------------------------------------------------------------ events -> panels and status
    def _call_panel(self, panel, method: str, *args) -> None:
        """A panel's bug must not take the window (or the run) down: report it once, keep going."""
        try:
            getattr(panel, method)(*args)
        except Exception as exc:  # noqa: BLE001
            key = f"{type(panel).__name__}.{method}"
            if key not in self.panel_errors:
                self.panel_errors[key] = f"{type(exc).__name__}: {exc}"
                self.statusBar().showMessage(f"The {getattr(panel, 'title', type(panel).__name__)} panel could not show "
                                             f"this run ({type(exc).__name__}: {exc}); the other panels carry on.", 10000)

    def _clear_panels(self) -> None:
        """A new run (or a run folder opened) starts from empty panels; the docks of visuals the last
        objective drew (zero-shot, reconstructions, ...) are hidden until this run sends that kind again."""
        self.panel_errors.clear()
        for panel in self.panels:
            self._call_panel(panel, "clear")
        self._fed_kinds: set[str] = set()
        for kind, panel in self.visual_panels.items():
            dock = self.docks.get(f"{kind}Dock")
            if panel is not None and dock is not None:
                dock.hide()

    def _dispatch(self, events: list, live: bool = True) -> None:
        if not events:
            return
        for ev in events:
            if isinstance(ev, Visuals):
                panel = self._visual_panel(ev.kind)
                if panel is not None and ev.kind not in self._fed_kinds:
                    self._fed_kinds.add(ev.kind)
                    dock = self.docks.get(f"{ev.kind}Dock")
                    if dock is not None and dock.isHidden():
                        dock.show()
                        QTimer.singleShot(0, dock.raise_)
                if live and panel is not None and hasattr(panel, "set_scorer"):
                    self._attach_text_scorer(panel)
        for panel in self.panels:
            self._call_panel(panel, "handle_events", events)
        for ev in events:
            if isinstance(ev, Started):
                self._on_started(ev, live)
            elif isinstance(ev, Step):
                self.last_step = ev
        if self.last_step is not None:
            self._show_step(self.last_step)
        for ev in events:  # after the last step: "done" or "stopped" must not be overwritten by an ETA
            if isinstance(ev, Finished):
                self._on_finished_event(ev, live)
            elif isinstance(ev, Failed):
                self._on_failed_event(ev, live)

    def _on_started(self, ev: Started, live: bool) -> None:
        self.current_run = ev.run_dir
        self.total_steps = ev.total_steps
        self.rate_unit = ev.rate_unit
        where = f"{ev.device} · {ev.precision}" + (" · channels-last" if ev.channels_last else "")
        if ev.world_size > 1:
            where += f" · {ev.world_size} processes ({ev.backend})"
        self.status_device.setText(where if live else f"replay · {where}")
        self.status_device.setToolTip(f"{ev.objective} on {ev.data} ({ev.num_train:,} training {ev.samples}), {ev.backbone} "
                                      f"({ev.parameters:,} parameters), batch {ev.batch_size}")
        self.setWindowTitle(Path(ev.run_dir).name)  # Qt adds " — SSL Studio", the application's display name
        if live:
            self.runs_browser.refresh()  # the new run shows up as running
        if live and self.state == "loading":
            self._set_state("running")
            note = f"; resumed from step {ev.resumed_from_step:,}" if ev.resumed_from_step else ""
            data_notes = " ".join(ev.data_notes) or (f"{ev.skipped_files} unreadable files were skipped." if ev.skipped_files else "")
            self.statusBar().showMessage(f"Training {ev.objective} on {ev.data} ({ev.num_train:,} {ev.samples}){note}. "
                                         + (f"{data_notes} " if data_notes else "") + f"Run folder: {ev.run_dir}", 12000)

    def _show_step(self, ev: Step) -> None:
        total = f" / {self.total_steps:,}" if self.total_steps else ""
        self.status_step.setText(f"step {ev.step:,}{total}")
        self.status_epoch.setText(f"epoch {ev.epoch:.2f}")
        self.status_rate.setText(f"{ev.images_per_s:,.0f} {self.rate_unit}")
        if self.running and getattr(self.session, "cfg", None) is not None:  # the budget advice's rate for this set-up
            self.experiment.budget_advisor.record(self.session.cfg, ev.images_per_s)
        self.status_eta.setText(f"ETA {_fmt_duration(ev.eta_s)}")
        self.progress.setValue(int(round(1000 * min(max(ev.progress, 0.0), 1.0))))

    def _reset_status(self, text: str = "ready") -> None:
        self.status_step.setText(text)
        for w in (self.status_epoch, self.status_rate, self.status_eta):
            w.setText("")
        self.progress.setValue(0)
        self.progress.setFormat("%p%")

    def _on_finished_event(self, ev: Finished, live: bool) -> None:
        s = ev.summary or {}
        parts = [f"Run {ev.status} after {ev.step:,} steps"]
        if "knn_k20" in s and s["knn_k20"] is not None:
            parts.append(f"k-NN@20 {s['knn_k20']:.3f}")
        if s.get("effective_rank") is not None:
            parts.append(f"effective rank {s['effective_rank']:.1f}")
        text = ", ".join(parts) + "."
        self.statusBar().showMessage(text + (f" Run folder: {ev.run_dir}" if ev.run_dir else ""), 15000)
        self.status_eta.setText("done" if ev.status == "completed" else ev.status)
        if ev.status == "completed":
            self.progress.setValue(1000)
        else:
            self.progress.setFormat(f"{ev.status} at %p%")
        if s.get("collapse"):
            self.show_banner(f"{text} Warning: {s['collapse']} (mean cosine {s.get('mean_cosine', float('nan')):.2f}, "
                             f"effective rank {s.get('effective_rank', float('nan')):.1f}): the features no longer tell images apart; "
                             "see the spectrum panel.", "warning")
        if live:
            self._set_state("idle")

    def _on_failed_event(self, ev: Failed, live: bool) -> None:
        status = ev.status or "failed"
        head = "The run failed" if status == "failed" else f"The run {status}"
        self.show_banner(f"{head}: {ev.message}", "error")
        self.status_eta.setText(status)
        self.progress.setFormat(f"{status} at %p%")
        field = ev.field or ""
        if field and self.experiment.widget_for_field(field) is not None:
            self.experiment.mark_external(field, ev.message)
        if live:
            self._set_state("idle")

    # ------------------------------------------------------------------ closing
    def ask_to_quit(self) -> bool:
        """Ask once before quitting a live run; True for Quit (the run stops and saves its checkpoint)."""
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Question, "Quit SSL Studio",
                          "A run is training; stop it (its checkpoint is saved) and quit?", parent=self)
        box.setObjectName("quitQuestion")
        quit_button = box.addButton("Quit", QMessageBox.AcceptRole)
        box.setDefaultButton(box.addButton(QMessageBox.Cancel))
        box.exec()
        return box.clickedButton() is quit_button

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Stop the run (the trainer saves a checkpoint), wait for its thread, then close.

        If the final probe and evaluation take longer than SHUTDOWN_WAIT_MS the
        window stays open with a note and closes itself once the thread ends,
        so a thread is never destroyed while it runs.
        """
        if self.confirm_quit and self.running and self.state != "stopping" and not self.ask_to_quit():
            event.ignore()
            return
        self._closing = True
        self.save_settings()
        self._stop_tail()
        if self.session is not None and not self.session.done:
            if not self.session.shutdown(SHUTDOWN_WAIT_MS):
                self._closing = False
                self._set_state("stopping")
                self.statusBar().showMessage("Saving the checkpoint and the final evaluation; the window closes by itself...")
                self.session.finished.connect(lambda *_: self.close())
                event.ignore()
                return
        self.experiment.shutdown()
        for panel in self.panels:  # a panel may offer its own clean-up
            if callable(getattr(panel, "shutdown", None)):
                self._call_panel(panel, "shutdown")
        for pool in self.findChildren(QThreadPool):  # previews, projections: nothing outlives the window
            pool.clear()
            pool.waitForDone(3000)
        super().closeEvent(event)
