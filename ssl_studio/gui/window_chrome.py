"""The lab window's chrome: actions, menus, toolbar, status bar, banner, theme, and the saved layout and geometry.

A mixin of ``MainWindow``: it builds what surrounds the docks and keeps the window on its screen
(the last geometry when it fits, else most of the free area).  No run logic here.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QProgressBar, QPushButton, QSizePolicy, QStyle, QToolBar, QWidget

from ssl_studio.gui import theme
from ssl_studio.gui.fitting import ElidedLabel, WrappingLabel
from ssl_studio.gui.naming import name_control
from ssl_studio.presets import list_presets

ORGANIZATION = "SSL Studio"
APPLICATION = "SSL Studio"
SETTINGS_VERSION = 2  # bump when the dock layout changes shape, so an old saved state is ignored
DEFAULT_SIZE = (1500, 920)  # the layout's design size, before the window is fitted to its screen
SCREEN_SHARE = 0.96  # a first window (or one whose saved geometry does not fit) takes most of the free screen
LARGEST_SIZE = (2400, 1500)  # beyond this a window is a wall of empty plot


def fitted_size(free_width: int, free_height: int) -> tuple[int, int]:
    """The window's size on a screen whose free area is ``free_width`` × ``free_height``: most of it, a title bar's
    room left above, never larger than ``LARGEST_SIZE`` nor smaller than 640 × 480."""
    width = min(int(free_width * SCREEN_SHARE), free_width - 16, LARGEST_SIZE[0])
    height = min(int(free_height * SCREEN_SHARE) - 32, free_height - 48, LARGEST_SIZE[1])
    return max(width, 640), max(height, 480)


class Banner(QFrame):
    """A one-sentence message across the top of the window: failures, collapse warnings, preset notes.

    It stays until dismissed or until the next run starts, so a failure cannot
    flash by unnoticed, and it never blocks the window the way a modal dialog would.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        name_control(self, "failureBanner", "Message")
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Minimum)
        self.setProperty("level", "error")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.message = name_control(WrappingLabel("", preferred_width=2000, max_lines=3), "failureMessage", "Message text")  # wraps; never widens the window
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.message, 1)
        self.action_button = name_control(QPushButton(""), "bannerAction", "The message's action")
        self.action_button.hide()
        self.action_button.clicked.connect(lambda: self._action() if self._action else None)
        self._action = None
        lay.addWidget(self.action_button, 0, Qt.AlignTop)
        self.close_button = name_control(QPushButton("Dismiss"), "bannerClose", "Dismiss the message")
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


class WindowChrome:
    """Actions, menus, toolbars, status bar, settings and theme of the window."""

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
        name_control(tools, "runToolBar", "Run controls")
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
        name_control(self.banner_bar, "bannerBar", "Messages")
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
        self.status_step = name_control(ElidedLabel("ready", min_width=70), "statusStep", "Step")
        self.status_epoch = name_control(ElidedLabel("", min_width=40), "statusEpoch", "Epoch")
        self.status_rate = name_control(ElidedLabel("", min_width=40), "statusRate", "Images per second")
        self.status_eta = name_control(ElidedLabel("", min_width=40), "statusEta", "Time left")
        self.status_device = name_control(ElidedLabel("", min_width=40), "statusDevice", "Device")
        self.progress = name_control(QProgressBar(), "progressBar", "Budget used")
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

    def _restore_settings(self) -> None:
        s = self.settings
        name = s.value("theme", theme.current())
        self.theme_actions.get(name if name in theme.THEMES else theme.DEFAULT_THEME).setChecked(True)
        geometry = s.value("window/geometry")
        self._geometry_restored = False
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self._geometry_restored = self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state, SETTINGS_VERSION)
        else:
            self._share_pending = True  # the default layout: share the height once shown
        self.banner_bar.hide()  # a message from last session is not news

    def _fit_to_screen(self) -> None:
        """Open inside the screen the window is on: the last session's geometry when it fits, else most of the
        screen's free area (``SCREEN_SHARE``, room left for the title bar), centred."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        free = screen.availableGeometry()
        if (getattr(self, "_geometry_restored", False) and free.contains(self.frameGeometry())
                and self.width() <= free.width()):
            return
        width, height = fitted_size(free.width(), free.height())
        self.resize(width, height)
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

    def show_banner(self, text: str, level: str = "error") -> None:
        self.banner.show_message(text, level)
        self.banner_bar.show()

    def hide_banner(self) -> None:
        self.banner.set_action()
        self.banner_bar.hide()

    @property
    def banner_text(self) -> str:
        return self.banner.message.text() if self.banner_bar.isVisible() else ""
