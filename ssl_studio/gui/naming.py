"""Every control gets an objectName (tests, style sheets) and an accessibleName (screen readers), in one call."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def name_control(widget: QWidget, name: str, accessible: str | None = None, tip: str | None = None) -> QWidget:
    """``widget`` named ``name``, announced as ``accessible`` (default: the name), with ``tip`` as its tooltip."""
    widget.setObjectName(name)
    widget.setAccessibleName(accessible or name)
    if tip:
        widget.setToolTip(tip)
    return widget
