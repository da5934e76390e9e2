"""Light and dark looks: one style sheet per theme plus matching pyqtgraph colours.

Qt widgets take their colours from ``resources/style-<name>.qss``; plots do not
read style sheets, so the same palette is pushed into pyqtgraph's defaults (for
plots created later) and into every plot that already exists (``recolor_plots``).
Panels that draw their own series colours listen to ``notifier().changed`` or
call ``palette()`` when they build a curve, so a theme switch never needs a
restart.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from ssl_studio.presets import resources_dir

THEMES = ("light", "dark")
DEFAULT_THEME = "light"

# Colours the plots share with the style sheets (kept in step with the .qss files).
PALETTES: dict[str, dict] = {
    "light": {
        "window": "#f4f5f8",
        "base": "#ffffff",
        "text": "#1d2330",
        "muted": "#5d6678",
        "accent": "#3563d9",
        "error": "#c62828",
        "warning": "#b26a00",
        "plot_background": "#ffffff",
        "plot_foreground": "#2c3342",
        "grid": "#d9dde6",
        # Colour-blind-safe series colours (Okabe & Ito 2008), darkened for a white page.
        "series": ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7a5c00", "#000000"],
    },
    "dark": {
        "window": "#1c1f26",
        "base": "#252a33",
        "text": "#e4e7ee",
        "muted": "#9aa3b5",
        "accent": "#6b9bff",
        "error": "#ff6b6b",
        "warning": "#ffb74d",
        "plot_background": "#181b21",
        "plot_foreground": "#c9cfdb",
        "grid": "#3a404c",
        "series": ["#56b4e9", "#ff8c42", "#2fd3a0", "#e58fc4", "#f0c419", "#9fd4ff", "#d9b75c", "#ffffff"],
    },
}


class ThemeNotifier(QObject):
    """Announces theme switches to panels that keep their own colours."""

    changed = Signal(str)


_notifier: ThemeNotifier | None = None
_current = DEFAULT_THEME


def notifier() -> ThemeNotifier:
    global _notifier
    if _notifier is None:
        _notifier = ThemeNotifier()
    return _notifier


def current() -> str:
    return _current


def palette(name: str | None = None) -> dict:
    """The colours of theme ``name`` (default: the current one)."""
    return PALETTES[name or _current]


def tinted(icon: QIcon, colour: str | None = None, size: int = 32) -> QIcon:
    """``icon`` painted in one colour (default: the theme's text colour), keeping its shape and its disabled look:
    the style's black media icons vanish on the dark theme's grey toolbar."""
    from PySide6.QtGui import QPainter, QPixmap

    pix = QPixmap(icon.pixmap(size, size))
    if pix.isNull():
        return icon
    painter = QPainter(pix)
    painter.setCompositionMode(QPainter.CompositionMode_SourceIn)
    painter.fillRect(pix.rect(), QColor(colour or palette()["text"]))
    painter.end()
    return QIcon(pix)


def icon_path(ext: str = "svg") -> Path:
    return resources_dir() / "icons" / f"ssl-studio.{ext}"


def app_icon() -> QIcon:
    """The application icon; the PNG is a fallback for platforms without the SVG plugin."""
    icon = QIcon()
    for ext in ("svg", "png"):
        path = icon_path(ext)
        if path.exists():
            icon.addFile(str(path))
    return icon


def style_sheet(name: str) -> str:
    path = resources_dir() / f"style-{name}.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""  # a missing style sheet leaves Qt's default look, never a crash


def _qt_palette(colours: dict) -> QPalette:
    """A QPalette for what style sheets do not reach (tooltips, menus on some styles)."""
    pal = QPalette()
    pal.setColor(QPalette.Window, QColor(colours["window"]))
    pal.setColor(QPalette.WindowText, QColor(colours["text"]))
    pal.setColor(QPalette.Base, QColor(colours["base"]))
    pal.setColor(QPalette.AlternateBase, QColor(colours["window"]))
    pal.setColor(QPalette.Text, QColor(colours["text"]))
    pal.setColor(QPalette.Button, QColor(colours["base"]))
    pal.setColor(QPalette.ButtonText, QColor(colours["text"]))
    pal.setColor(QPalette.Highlight, QColor(colours["accent"]))
    pal.setColor(QPalette.HighlightedText, QColor("#ffffff"))
    pal.setColor(QPalette.ToolTipBase, QColor(colours["base"]))
    pal.setColor(QPalette.ToolTipText, QColor(colours["text"]))
    pal.setColor(QPalette.PlaceholderText, QColor(colours["muted"]))
    # Greyed-out controls (the form while a run trains) must look greyed out in both themes.
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        pal.setColor(QPalette.Disabled, role, QColor(colours["muted"]))
    pal.setColor(QPalette.Disabled, QPalette.Base, QColor(colours["window"]))
    return pal


def recolor_plots(root: QWidget | None = None) -> None:
    """Give every existing pyqtgraph view the current background and axis colours."""
    colours = palette()
    widgets: list = []
    if root is not None:
        widgets = root.findChildren(pg.GraphicsView)
    else:
        app = QApplication.instance()
        if app is not None:
            for top in app.topLevelWidgets():
                widgets.extend(top.findChildren(pg.GraphicsView))
    fg = colours["plot_foreground"]
    for view in widgets:
        view.setBackground(colours["plot_background"])
        scene = view.scene()
        if scene is None:
            continue
        for item in scene.items():
            if isinstance(item, pg.AxisItem):
                item.setPen(fg)
                item.setTextPen(fg)
            elif isinstance(item, pg.LabelItem):
                item.setText(item.text, color=fg)


def apply(app: QApplication, name: str) -> str:
    """Switch the whole application to theme ``name`` (unknown names fall back to light)."""
    global _current
    if name not in THEMES:
        name = DEFAULT_THEME
    _current = name
    colours = PALETTES[name]
    pg.setConfigOptions(background=colours["plot_background"], foreground=colours["plot_foreground"], antialias=True)
    app.setPalette(_qt_palette(colours))
    app.setStyleSheet(style_sheet(name))
    recolor_plots()
    notifier().changed.emit(name)
    return name
