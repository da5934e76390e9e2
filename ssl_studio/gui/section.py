"""A titled section of a form that folds away: the experiment panel's advanced settings stay out of sight until asked for."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """A titled block that can fold away, so advanced settings do not crowd the first look."""

    def __init__(self, title: str, content: QWidget, object_name: str, expanded: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(object_name)
        self.toggle = QToolButton()
        self.toggle.setObjectName(f"{object_name}Toggle")
        self.toggle.setAccessibleName(f"Show or hide {title}")
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: 600; padding: 2px; }")
        self.toggle.toggled.connect(self.set_expanded)
        self.content = content
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.toggle)
        lay.addWidget(content)
        content.setVisible(expanded)

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)
        self.toggle.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.content.setVisible(expanded)
