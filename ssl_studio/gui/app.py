"""Start the lab: the QApplication (name, icon, theme) and the main window, ready to train.

``main`` is what ``ssl-studio`` (no sub-command), ``ssl-studio gui`` and the
``ssl-studio-gui`` launcher call.  The window opens with the built-in shapes
data and SimCLR selected, so one click on Start trains something meaningful.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from ssl_studio.gui import theme
from ssl_studio.gui.main_window import MainWindow
from ssl_studio.gui.window_chrome import APPLICATION, ORGANIZATION


def create_application(argv: list[str] | None = None) -> QApplication:
    """The one QApplication, named so QSettings and the desktop shell find it."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
    app.setApplicationName(APPLICATION)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName("SSL Studio")
    app.setDesktopFileName("ssl-studio")
    app.setWindowIcon(theme.app_icon())
    app.setStyle("Fusion")  # the same look on every platform; the style sheets are written for it
    return app


def create_window(runs_dir: str | Path = "runs", settings: QSettings | None = None) -> MainWindow:
    """The window with the saved theme applied; SimCLR on shapes is the panel's default."""
    app = create_application()
    settings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
    theme.apply(app, str(settings.value("theme", theme.DEFAULT_THEME)))
    return MainWindow(runs_dir=runs_dir, settings=settings)


def main(runs_dir: str | Path = "runs", argv: list[str] | None = None) -> int:
    app = create_application(argv)
    window = create_window(runs_dir)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
