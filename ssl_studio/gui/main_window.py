"""The lab window: the experiment panel, the live panels as docks, menus, toolbar and status bar.

The window is a dispatcher.  It turns the experiment panel's form into a
RunConfig, hands it to a ``TrainingSession`` (a QThread running the engine's
Trainer), and passes every throttled batch of engine events to each panel's
``handle_events``.  A run folder read from disk goes through the very same
path (``replay_events``), so a finished, a headless or a still-running run looks
exactly like a live one.  No training and no heavy maths happen here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QMainWindow,
    QProgressBar,
    QSizePolicy,
    QPushButton,
    QStyle,
    QToolBar,
    QWidget,
)

from ssl_studio.config import load_config, save_config
from ssl_studio.engine.events import Failed, Finished, Started, Step, Visuals
from ssl_studio.engine.launch import check_processes
from ssl_studio.engine.runs import replay_events
from ssl_studio.gui import theme
from ssl_studio.gui.experiment_panel import ExperimentPanel
from ssl_studio.gui.fitting import ElidedLabel, WrappingLabel
from ssl_studio.gui.panels import EmbeddingPanel, LossPanel, RunsBrowser, SpectrumPanel
from ssl_studio.gui.torchrun_session import TorchrunSession
from ssl_studio.gui.worker import TrainingSession
from ssl_studio.params import ConfigError
from ssl_studio.presets import list_presets, presets_dir

ORGANIZATION = "SSL Studio"
APPLICATION = "SSL Studio"
SETTINGS_VERSION = 1  # bump when the dock layout changes shape, so an old saved state is ignored
TAIL_INTERVAL_MS = 1000
SHUTDOWN_WAIT_MS = 2000
DEFAULT_SIZE = (1500, 920)  # shrunk to the screen when it is smaller


def visual_panel_classes() -> dict[str, type]:
    """Every panel class in ``ssl_studio.gui.panels`` that declares the ``visual_kind`` it draws."""
    import importlib
    import pkgutil

    import ssl_studio.gui.panels as package

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            kind = getattr(value, "visual_kind", None)
            if isinstance(value, type) and isinstance(kind, str) and value.__module__ == module.__name__:
                found[kind] = value
    return found


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 60:02d}:{s % 60:02d}" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}"


def _named(widget, name: str, accessible: str, tip: str = ""):
    widget.setObjectName(name)
    widget.setAccessibleName(accessible)
    if tip:
        widget.setToolTip(tip)
    return widget


class Banner(QFrame):
    """A one-sentence message across the top of the window: failures, collapse warnings, preset notes.

    It stays until dismissed or until the next run starts, so a failure cannot
    flash by unnoticed, and it never blocks the window the way a modal dialog would.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        _named(self, "failureBanner", "Message")
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Minimum)
        self.setProperty("level", "error")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.message = _named(WrappingLabel("", preferred_width=2000, max_lines=3), "failureMessage", "Message text")  # wraps; never widens the window
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.message, 1)
        self.action_button = _named(QPushButton(""), "bannerAction", "The message's action")
        self.action_button.hide()
        self.action_button.clicked.connect(lambda: self._action() if self._action else None)
        self._action = None
        lay.addWidget(self.action_button, 0, Qt.AlignTop)
        self.close_button = _named(QPushButton("Dismiss"), "bannerClose", "Dismiss the message")
        lay.addWidget(self.close_button, 0, Qt.AlignTop)

    def set_action(self, text: str = "", slot=None) -> None:
        """Offer one button beside the message (none when ``slot`` is None); a new message drops it."""
        self._action = slot
        self.action_button.setText(text)
        self.action_button.setVisible(slot is not None)

    def show_message(self, text: str, level: str = "error") -> None:
        self.set_action()
        self.message.setText(text)
        self.setProperty("level", level)
        for w in (self, self.message):
            w.style().unpolish(w)
            w.style().polish(w)


class MainWindow(QMainWindow):
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

        self.loss_panel = LossPanel()
        self.embedding_panel = EmbeddingPanel()
        self.spectrum_panel = SpectrumPanel()
        self.panels = [self.loss_panel, self.embedding_panel, self.spectrum_panel]
        self.runs_browser = RunsBrowser(self.runs_dir)
        self.runs_browser.openRun.connect(self.open_run)
        self.runs_browser.rerunRequested.connect(self.rerun)
        self.runs_browser.resumeRequested.connect(self.resume_folder)

        self.docks: dict[str, QDockWidget] = {}
        self.experiment_dock = self._dock("experimentDock", "Experiment", self.experiment)
        self.loss_dock = self._dock("lossDock", getattr(self.loss_panel, "title", "Loss"), self.loss_panel)
        self.embedding_dock = self._dock("embeddingDock", getattr(self.embedding_panel, "title", "Embedding"), self.embedding_panel)
        self.spectrum_dock = self._dock("spectrumDock", getattr(self.spectrum_panel, "title", "Spectrum"), self.spectrum_panel)
        self.runs_dock = self._dock("runsDock", getattr(self.runs_browser, "title", "Runs"), self.runs_browser)

        self.addDockWidget(Qt.LeftDockWidgetArea, self.experiment_dock)
        self.addDockWidget(Qt.RightDockWidgetArea, self.loss_dock)
        self.splitDockWidget(self.loss_dock, self.embedding_dock, Qt.Horizontal)
        self.splitDockWidget(self.loss_dock, self.spectrum_dock, Qt.Vertical)
        self.tabifyDockWidget(self.spectrum_dock, self.runs_dock)
        self.spectrum_dock.raise_()
        self.resize(*DEFAULT_SIZE)
        self.resizeDocks([self.experiment_dock, self.loss_dock, self.embedding_dock], [420, 600, 520], Qt.Horizontal)
        self.resizeDocks([self.loss_dock, self.spectrum_dock], [520, 380], Qt.Vertical)

    def _dock(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        _named(dock, name, f"{title} panel")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable | QDockWidget.DockWidgetClosable)
        self.docks[name] = dock
        return dock

    def _action(self, name: str, text: str, slot, shortcuts=(), tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setShortcutContext(Qt.WindowShortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda *_: slot())
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.action_open_run = a("actionOpenRun", "Open run folder...", self.choose_run_folder, ("Ctrl+O",),
                                 "Show a run folder's curves, live or finished, written by the window or the command line.")
        self.action_open_images = a("actionOpenImageFolder", "Open image folder...", lambda: self.experiment.choose_folder("folder"),
                                    ("Ctrl+Shift+O",), "Train on a folder of images (one sub-folder per class gives labels).")
        self.action_open_cifar = a("actionOpenCifar", "Open CIFAR folder...", lambda: self.experiment.choose_folder("cifar"), (),
                                   "Train on CIFAR-10/100 from its python-version folder.")
        self.action_quit = a("actionQuit", "Quit", self.close, (QKeySequence.Quit,), "Stop any run (saving a checkpoint) and quit.")
        self.action_start = a("actionStart", "Start", self.start_run, ("Ctrl+Return", "Ctrl+Enter"), "Start training (Ctrl+Return)")
        self.action_pause = a("actionPause", "Pause", self.toggle_pause, ("Ctrl+P", "Space"),
                              "Pause or resume training (Space or Ctrl+P); pausing saves a checkpoint")
        self.action_stop = a("actionStop", "Stop", self.stop_run, ("Ctrl+.",), "Stop after this step and save a checkpoint (Ctrl+.)")
        self.action_save_preset = a("actionSavePreset", "Save as preset...", self.choose_save_preset, (),
                                    "Save the experiment panel's configuration as a preset file.")
        self.action_reset_layout = a("actionResetLayout", "Reset layout", self.reset_layout, (),
                                     "Put every panel back where it was at first start.")
        self.action_refresh_runs = a("actionRefreshRuns", "Refresh runs", lambda: self.runs_browser.refresh(), ("F5",),
                                     "Read the runs folder again.")
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for name in theme.THEMES:
            act = QAction(name.capitalize(), self, checkable=True)
            act.setObjectName(f"actionTheme{name.capitalize()}")
            act.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            self.theme_group.addAction(act)
            self.theme_actions[name] = act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        bar.setObjectName("menuBar")
        file_menu = bar.addMenu("&File")
        file_menu.setObjectName("menuFile")
        file_menu.addAction(self.action_open_run)
        file_menu.addAction(self.action_open_images)
        file_menu.addAction(self.action_open_cifar)
        file_menu.addSeparator()
        self.export_menu = file_menu.addMenu("Export panel")
        self.export_menu.setObjectName("menuExport")
        self.export_actions: dict[tuple[str, str], QAction] = {}
        for panel in self.panels:
            self._add_export_entries(panel)
        file_menu.addSeparator()
        file_menu.addAction(self.action_quit)

        run_menu = bar.addMenu("&Run")
        run_menu.setObjectName("menuRun")
        for act in (self.action_start, self.action_pause, self.action_stop):
            run_menu.addAction(act)

        self.presets_menu = bar.addMenu("&Presets")
        self.presets_menu.setObjectName("menuPresets")
        self.presets_menu.setToolTipsVisible(True)
        self._fill_presets_menu()

        view_menu = bar.addMenu("&View")
        view_menu.setObjectName("menuView")
        self.view_menu = view_menu
        theme_menu = view_menu.addMenu("Theme")
        for act in self.theme_actions.values():
            theme_menu.addAction(act)
        view_menu.addSeparator()
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        view_menu.addAction(self.action_refresh_runs)
        view_menu.addAction(self.action_reset_layout)

        help_menu = bar.addMenu("&Help")
        help_menu.setObjectName("menuHelp")
        about = QAction("About SSL Studio", self)
        about.setObjectName("actionAbout")
        about.triggered.connect(lambda *_: self.show_about())
        help_menu.addAction(about)

    def _add_export_entries(self, panel) -> None:
        sub = self.export_menu.addMenu(panel.title)
        for fmt in ("png", "svg", "csv"):
            act = QAction(f"as {fmt.upper()}...", self)
            act.setObjectName(f"actionExport{type(panel).__name__}{fmt.upper()}")
            act.triggered.connect(lambda _=False, p=panel, f=fmt: self.choose_export(p, f))
            sub.addAction(act)
            self.export_actions[(panel.title, fmt)] = act

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

    def _on_visuals_requested(self, request: dict) -> None:
        """A panel asks for new pictures from the current model (a new mask, another ratio)."""
        if self.running and not getattr(self.session, "in_process", True):
            self.statusBar().showMessage("A torchrun job draws its pictures on its own schedule; new ones on request need "
                                         "a run started with 1 process.", 5000)
        elif self.running:
            self.session.control.request_visuals(request)
        else:
            self.statusBar().showMessage("New pictures need a running model: start or resume a run first.", 5000)

    def _fill_presets_menu(self) -> None:
        menu = self.presets_menu
        menu.clear()
        self.preset_actions: dict[str, QAction] = {}
        presets = list_presets()
        for group, title in (("healthy", "Healthy"), ("broken", "Broken on purpose")):
            members = [p for p in presets if p.group == group]
            if not members:
                continue
            menu.addSection(title)
            for info in members:
                act = QAction(info.title, self)
                act.setObjectName(f"preset_{info.name}")
                act.setToolTip(info.description)
                act.setStatusTip(info.description)
                act.triggered.connect(lambda _=False, p=info.path: self.load_preset(p))
                menu.addAction(act)
                self.preset_actions[info.name] = act
        others = [p for p in presets if p.group not in ("healthy", "broken")]
        if others:
            menu.addSection("Other")
            for info in others:
                act = QAction(info.title, self)
                act.setObjectName(f"preset_{info.name}")
                act.setToolTip(info.description)
                act.triggered.connect(lambda _=False, p=info.path: self.load_preset(p))
                menu.addAction(act)
                self.preset_actions[info.name] = act
        menu.addSeparator()
        menu.addAction(self.action_save_preset)

    def _build_toolbars(self) -> None:
        tools = QToolBar("Run controls", self)
        _named(tools, "runToolBar", "Run controls")
        tools.setMovable(False)
        tools.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self._tint_icons()
        self.action_open_run.setIcon(self.style().standardIcon(QStyle.SP_DirOpenIcon))
        for act, name in ((self.action_start, "toolStart"), (self.action_pause, "toolPause"), (self.action_stop, "toolStop")):
            tools.addAction(act)
            button = tools.widgetForAction(act)
            button.setObjectName(name)
            button.setAccessibleName(act.text())
        tools.addSeparator()
        tools.addAction(self.action_open_run)
        tools.widgetForAction(self.action_open_run).setObjectName("toolOpenRun")
        self.addToolBar(Qt.TopToolBarArea, tools)
        self.run_toolbar = tools

        self.addToolBarBreak(Qt.TopToolBarArea)
        self.banner_bar = QToolBar("Messages", self)
        _named(self.banner_bar, "bannerBar", "Messages")
        self.banner_bar.setMovable(False)
        self.banner_bar.setFloatable(False)
        self.banner_bar.toggleViewAction().setVisible(False)
        self.banner = Banner()
        self.banner.close_button.clicked.connect(self.hide_banner)
        self.banner_bar.addWidget(self.banner)
        self.addToolBar(Qt.TopToolBarArea, self.banner_bar)
        self.banner_bar.hide()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setObjectName("statusBar")
        self.status_step = _named(ElidedLabel("ready", min_width=70), "statusStep", "Step")
        self.status_epoch = _named(ElidedLabel("", min_width=40), "statusEpoch", "Epoch")
        self.status_rate = _named(ElidedLabel("", min_width=40), "statusRate", "Images per second")
        self.status_eta = _named(ElidedLabel("", min_width=40), "statusEta", "Time left")
        self.status_device = _named(ElidedLabel("", min_width=40), "statusDevice", "Device")
        self.progress = _named(QProgressBar(), "progressBar", "Budget used")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.setFixedWidth(120)
        for w in (self.status_step, self.status_epoch, self.status_rate, self.status_eta, self.status_device):
            bar.addPermanentWidget(w)
        bar.addPermanentWidget(self.progress)

    def about_text(self) -> str:
        from ssl_studio import __version__

        readme = Path(__file__).resolve().parents[2] / "README.md"
        docs = f'<a href="{readme.as_uri()}">README.md</a>' if readme.is_file() else "README.md in the project folder"
        return (f"<b>SSL Studio {__version__}</b><br>A desktop lab for self-supervised learning: train, watch collapse "
                f"happen, compare and evaluate runs.<br>Documentation: {docs}; <code>ssl-studio --help</code> for the "
                "command line.")

    def show_about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.about(self, "About SSL Studio", self.about_text())

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        s = self.settings
        name = s.value("theme", theme.current())
        self.theme_actions.get(name if name in theme.THEMES else theme.DEFAULT_THEME).setChecked(True)
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, SETTINGS_VERSION)
        else:
            self._share_pending = True  # the default layout: share the height once shown
        self.banner_bar.hide()  # a message from last session is not news

    def _fit_to_screen(self) -> None:
        """Open inside the screen the window is on: a restored geometry that does not fit is replaced
        by the default size shrunk to the screen's free area, centred."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        free = screen.availableGeometry()
        if free.contains(self.frameGeometry()) and self.width() <= free.width():
            return
        width = min(DEFAULT_SIZE[0], free.width() - 16)
        height = min(DEFAULT_SIZE[1], free.height() - 48)  # room for the title bar
        self.resize(max(width, 640), max(height, 480))
        self.move(free.x() + (free.width() - self.width()) // 2, free.y() + max((free.height() - height - 40) // 2, 0))
        self._share_pending = True  # once shown and laid out at the new size (showEvent)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if getattr(self, "_share_pending", False):
            self._share_pending = False
            QTimer.singleShot(0, self._share_height)

    def _share_height(self) -> None:
        """Loss over spectrum at 9:11 (the spectrum has three plots): shrinking the window took the height from the loss plots."""
        chrome = sum(w.sizeHint().height() for w in (self.menuBar(), self.run_toolbar, self.statusBar())) + 40  # tabs, titles
        both = max(self.height() - chrome, 2)
        self.resizeDocks([self.loss_dock, self.spectrum_dock], [both * 9 // 20, both * 11 // 20], Qt.Vertical)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(SETTINGS_VERSION))
        s.setValue("theme", theme.current())
        s.sync()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, SETTINGS_VERSION)
        for dock in self.docks.values():
            dock.show()
        self.resizeDocks([self.experiment_dock, self.loss_dock, self.embedding_dock], [420, 600, 520], Qt.Horizontal)

    def _tint_icons(self) -> None:
        """Start, Pause (Resume shows play) and Stop in the theme's text colour: legible on light and dark."""
        style = self.style()
        pause = QStyle.SP_MediaPlay if self.state == "paused" else QStyle.SP_MediaPause
        for act, icon in ((self.action_start, QStyle.SP_MediaPlay), (self.action_pause, pause), (self.action_stop, QStyle.SP_MediaStop)):
            act.setIcon(theme.tinted(style.standardIcon(icon)))

    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        name = theme.apply(app, name)
        self.theme_actions[name].setChecked(True)
        theme.recolor_plots(self)
        self._tint_icons()
        self.settings.setValue("theme", name)
        self.themeChanged.emit(name)

    # ------------------------------------------------------------------ banner
    def show_banner(self, text: str, level: str = "error") -> None:
        self.banner.show_message(text, level)
        self.banner_bar.show()

    def hide_banner(self) -> None:
        self.banner.set_action()
        self.banner_bar.hide()

    @property
    def banner_text(self) -> str:
        return self.banner.message.text() if self.banner_bar.isVisible() else ""

    # ------------------------------------------------------------------ run state
    def _set_state(self, state: str) -> None:
        """idle | loading | running | paused | stopping: drives buttons, actions and the form."""
        self.state = state
        self.experiment.set_run_state(state)
        active = state in ("loading", "running", "paused")
        self.action_start.setEnabled(state == "idle" and self.experiment.valid)
        can_pause = active and getattr(self.session, "can_pause", True)
        self.action_pause.setEnabled(can_pause)
        self.experiment.pause_button.setEnabled(can_pause or state == "paused")
        self.action_pause.setText("Resume" if state == "paused" else "Pause")
        self._tint_icons()
        self.action_stop.setEnabled(active)
        self.action_open_images.setEnabled(state == "idle")
        self.action_open_cifar.setEnabled(state == "idle")
        self.action_save_preset.setEnabled(self.experiment.valid)
        self.presets_menu.setEnabled(state == "idle")

    def _on_validity(self, valid: bool, _message: str) -> None:
        self.action_start.setEnabled(self.state == "idle" and valid)
        self.action_save_preset.setEnabled(valid)

    @property
    def running(self) -> bool:
        return self.session is not None and not self.session.done

    # ------------------------------------------------------------------ training
    def start_run(self) -> bool:
        """Start the experiment panel's configuration; False (with the reason shown) if it cannot."""
        if self.running:
            return False
        try:
            cfg = self.experiment.to_config()
        except ConfigError as exc:
            self.experiment.validate()
            self.show_banner(f"Cannot start: {exc}.", "error")
            return False
        cfg.out = str(self.runs_dir)
        processes = self.experiment.processes()
        try:
            check_processes(cfg, processes)
        except ConfigError as exc:
            self.experiment.mark_external(exc.field, str(exc))
            self.show_banner(f"Cannot start: {exc}.", "error")
            return False
        self._start_session(cfg, processes=processes)
        if processes > 1:
            self.statusBar().showMessage(f"Launching torchrun with {processes} processes for {cfg.objective.name} on "
                                         f"{cfg.data.source}; the panels follow its run folder...", 30000)
        else:
            self.statusBar().showMessage(f"Loading {cfg.data.source} and building {cfg.objective.name}...", 5000)
        return True

    def resume_folder(self, path: str | Path) -> bool:
        """Go on training a run folder (interrupted, stopped or failed) from its last checkpoint."""
        if self.running:
            self.show_banner("A run is training; stop it before resuming another one.", "warning")
            return False
        try:
            cfg = load_config(Path(path) / "config.toml")
        except Exception as exc:  # noqa: BLE001 - ConfigError, or a damaged file: one sentence either way
            self.show_banner(f"Cannot resume {Path(path).name}: {exc}", "error")
            return False
        self._start_session(cfg, run_dir=str(path), resume=True)
        self.statusBar().showMessage(f"Resuming {Path(path).name} from its last checkpoint...", 5000)
        return True

    def _start_session(self, cfg, run_dir: str | None = None, resume: bool = False, processes: int = 1) -> None:
        self._stop_tail()
        self.hide_banner()
        self.experiment.clear_external_mark()
        self._clear_panels()
        self.total_steps = cfg.budget.steps
        self.last_step = None
        self.current_run = None
        self._reset_status("starting")
        if self.session is not None:  # the previous run's thread has ended: let Qt free it
            self.session.deleteLater()
        if processes > 1:  # a torchrun job; its run folder's records arrive as events
            session = TorchrunSession(cfg, processes, self)
            session.runFolderFound.connect(lambda path: self._load_run_imageset(Path(path)))
        else:
            session = TrainingSession(cfg, self, run_dir=run_dir, resume=resume)
        session.eventsReady.connect(self._on_live_events)
        session.dataReady.connect(self._on_data)
        session.loading.connect(self._on_loading)
        session.pausedChanged.connect(self._on_trainer_paused)
        session.finished.connect(self._on_session_finished)
        self.session = session
        self._set_state("loading")
        session.start()

    def toggle_pause(self) -> None:
        if not self.running:
            return
        if not getattr(self.session, "can_pause", True):
            self.statusBar().showMessage("A torchrun job cannot pause; Stop saves a checkpoint, and Resume in the runs "
                                         "browser goes on from it.", 5000)
            return
        if self.state == "paused":
            self.session.resume()
            self._set_state("running")
            self.statusBar().showMessage("Resumed.", 3000)
        elif self.state in ("running", "loading"):
            self.session.pause()
            self._set_state("paused")
            self.statusBar().showMessage("Pausing after this step (a checkpoint is saved)...")

    def pause_run(self) -> None:
        if self.state in ("running", "loading"):
            self.toggle_pause()

    def resume_run(self) -> None:
        if self.state == "paused":
            self.toggle_pause()

    def stop_run(self) -> None:
        if not self.running:
            return
        self.session.stop()
        self._set_state("stopping")
        self.statusBar().showMessage("Stopping after this step: saving a checkpoint and the final probe...")

    def _on_trainer_paused(self, waiting: bool) -> None:
        if waiting and self.state == "paused":
            step = self.last_step.step if self.last_step else 0
            self.statusBar().showMessage(f"Paused at step {step}; checkpoint saved. Press Space or Resume to go on.")

    def _on_loading(self, done: int, total: int) -> None:
        self.status_step.setText(f"loading images {done:,}/{total:,}")
        self.progress.setValue(int(1000 * done / max(total, 1)))

    def _on_data(self, imageset: Any) -> None:
        self.current_imageset = imageset
        for panel in self.panels:
            self._call_panel(panel, "set_imageset", imageset)

    def _on_live_events(self, events: list) -> None:
        self._dispatch(events)

    def _on_session_finished(self, _result: Any) -> None:
        if self.state != "idle":
            self._set_state("idle")
        if not self._closing:
            self.runs_browser.refresh()

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
        where = f"{ev.device} · {ev.precision}" + (" · channels-last" if ev.channels_last else "")
        if ev.world_size > 1:
            where += f" · {ev.world_size} processes ({ev.backend})"
        self.status_device.setText(where if live else f"replay · {where}")
        self.status_device.setToolTip(f"{ev.objective} on {ev.data} ({ev.num_train:,} training images), {ev.backbone} "
                                      f"({ev.parameters:,} parameters), batch {ev.batch_size}")
        self.setWindowTitle(Path(ev.run_dir).name)  # Qt adds " — SSL Studio", the application's display name
        if live:
            self.runs_browser.refresh()  # the new run shows up as running
        if live and self.state == "loading":
            self._set_state("running")
            note = f"; resumed from step {ev.resumed_from_step:,}" if ev.resumed_from_step else ""
            data_notes = " ".join(ev.data_notes) or (f"{ev.skipped_files} unreadable files were skipped." if ev.skipped_files else "")
            self.statusBar().showMessage(f"Training {ev.objective} on {ev.data} ({ev.num_train:,} images){note}. "
                                         + (f"{data_notes} " if data_notes else "") + f"Run folder: {ev.run_dir}", 12000)

    def _show_step(self, ev: Step) -> None:
        total = f" / {self.total_steps:,}" if self.total_steps else ""
        self.status_step.setText(f"step {ev.step:,}{total}")
        self.status_epoch.setText(f"epoch {ev.epoch:.2f}")
        self.status_rate.setText(f"{ev.images_per_s:,.0f} img/s")
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

    # ------------------------------------------------------------------ run folders
    def choose_run_folder(self) -> None:
        start = str(self.runs_dir if self.runs_dir.is_dir() else Path.cwd())
        path = QFileDialog.getExistingDirectory(self, "Open run folder", start)
        if path:
            self.open_run(path)

    def open_run(self, path: str | Path) -> bool:
        """Replay a run folder into the panels; keep following it while it is still being written."""
        path = Path(path)
        if not (path / "metrics.jsonl").is_file():
            self.show_banner(f"{path} is not a run folder with results: it has no metrics.jsonl; "
                             "choose a folder under runs/ made by SSL Studio.", "error")
            return False
        if self.running:
            self.show_banner("A run is training; stop it before opening another run folder.", "warning")
            return False
        self._stop_tail()
        self.hide_banner()
        self._clear_panels()
        self._reset_status("replaying")
        self.status_device.setText("")
        self.total_steps = None
        self.last_step = None
        try:
            events, offset = replay_events(path)
        except (OSError, ValueError) as exc:
            self.show_banner(f"Could not read {path / 'metrics.jsonl'} ({exc}).", "error")
            return False
        self._load_run_imageset(path)
        self._dispatch(events, live=False)
        self.current_run = str(path)
        self.setWindowTitle(path.name)
        if not any(isinstance(e, (Finished, Failed)) for e in events):
            self._tail_path, self._tail_offset = path, offset
            self._tail_timer.start()
            self.statusBar().showMessage(f"Following {path.name} as it is written...", 5000)
        else:
            self.statusBar().showMessage(f"Opened {path}.", 8000)
        self._offer_settings(path)
        return True

    def _offer_settings(self, path: Path) -> None:
        """Beside the opened run's banner: load its settings into the form (Re-run's code, without starting)."""
        config = path / "config.toml"
        if not config.is_file():
            return
        if not self.banner_bar.isVisible():
            self.show_banner(f"Opened run {path.name}.", "info")

        def load() -> None:
            if self.rerun(str(config)):
                self.hide_banner()
        self.banner.set_action("Load its settings into the form", load)

    def _load_run_imageset(self, path: Path) -> None:
        """Thumbnails for a replayed run come from its data source, when that is the cheap built-in one."""
        try:
            cfg = load_config(path / "config.toml")
        except Exception:  # noqa: BLE001 - missing, damaged or foreign: the curves still show
            return
        if cfg.data.source not in ("shapes", "digits") or cfg.data.num_images > 20000:
            return  # decoding a folder or CIFAR just for thumbnails would stall the window
        try:
            from ssl_studio.data import load_imageset

            imageset = load_imageset(cfg.data, seed=cfg.seed, progress=None)
        except Exception:  # noqa: BLE001 - thumbnails are a nicety; the curves still show
            return
        self._on_data(imageset)

    def _poll_tail(self) -> None:
        if self._tail_path is None:
            self._tail_timer.stop()
            return
        try:
            events, self._tail_offset = replay_events(self._tail_path, self._tail_offset)
        except (OSError, ValueError):
            return
        self._dispatch(events, live=False)
        if any(isinstance(e, (Finished, Failed)) for e in events):
            self._stop_tail()
            self.runs_browser.refresh()

    def _stop_tail(self) -> None:
        self._tail_timer.stop()
        self._tail_path = None

    @property
    def tailing(self) -> bool:
        return self._tail_timer.isActive()

    def rerun(self, config_path: str) -> bool:
        """Fill the experiment panel from a run's config.toml; the user presses Start."""
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            self.show_banner(f"Cannot re-run: {exc}", "error")
            return False
        self.experiment.load_config(cfg)
        self.statusBar().showMessage(f"Loaded the configuration of {Path(config_path).parent.name}; press Start to run it again.", 8000)
        return True

    # ------------------------------------------------------------------ presets
    def load_preset(self, path: str | Path) -> bool:
        path = Path(path)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            self.show_banner(f"Cannot load preset {path.name}: {exc}", "error")
            return False
        self.experiment.load_config(cfg)
        info = next((p for p in list_presets() if p.path == path), None)
        if info is not None and info.description:
            self.show_banner(f"{info.title}: {info.description}", "info")
        self.statusBar().showMessage(f"Loaded preset {path.stem}.", 5000)
        return True

    def choose_save_preset(self) -> None:
        title, ok = QInputDialog.getText(self, "Save as preset", "Title shown in the Presets menu:")
        if not ok or not title.strip():
            return
        description, ok = QInputDialog.getMultiLineText(self, "Save as preset", "What should happen, and why:")
        if not ok:
            return
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "preset"
        folder = presets_dir()
        start = folder / f"{slug}.toml" if folder.is_dir() else Path.home() / f"{slug}.toml"
        path, _ = QFileDialog.getSaveFileName(self, "Save preset", str(start), "Presets (*.toml)")
        if path:
            self.save_preset(path, title.strip(), description.strip())

    def save_preset(self, path: str | Path, title: str, description: str = "") -> bool:
        try:
            cfg = self.experiment.to_config()
        except ConfigError as exc:
            self.show_banner(f"Cannot save the preset: {exc}.", "error")
            return False
        group = "broken" if cfg.ablations else "healthy"
        try:
            save_config(cfg, path, header={"title": title, "group": group, "description": description})
        except OSError as exc:
            self.show_banner(f"Could not write the preset {path} ({exc.strerror or exc}); choose another folder.", "error")
            return False
        self._fill_presets_menu()
        self.statusBar().showMessage(f"Saved preset {path}.", 5000)
        return True

    # ------------------------------------------------------------------ export
    def choose_export(self, panel, fmt: str) -> None:
        base = (self.current_run and Path(self.current_run)) or Path.cwd()
        name = f"{panel.title.lower().replace(' ', '-')}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {panel.title} as {fmt.upper()}", str(Path(base) / name),
                                              f"{fmt.upper()} (*.{fmt})")
        if path:
            self.export_panel(panel, fmt, path)

    def export_panel(self, panel, fmt: str, path: str | Path) -> bool:
        method = getattr(panel, f"export_{fmt}", None)
        if method is None:
            self.show_banner(f"The {panel.title} panel cannot be exported as {fmt.upper()}; choose PNG or CSV.", "error")
            return False
        try:
            method(path)
        except (OSError, ValueError) as exc:
            self.show_banner(f"Could not export the {panel.title} panel to {path}: {exc}", "error")
            return False
        self.statusBar().showMessage(f"Exported {panel.title} to {path}.", 5000)
        return True

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
