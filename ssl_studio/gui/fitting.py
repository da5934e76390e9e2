"""Widgets whose long text never widens the window: elided or wrapped labels and a wrapping button row.

A QLabel asks for the width of its whole text, so one long evaluation line or
status message used to push the main window past the screen.  These widgets ask
for little width and show what fits: ``ElidedLabel`` ends in "…" with the whole
text as its tooltip, ``WrappingLabel`` wraps onto more lines, and ``FlowLayout``
moves buttons onto a second row when the dock is narrow.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLabel, QLayout, QSizePolicy, QWidget, QWidgetItem

MIN_TEXT_WIDTH = 60


class ElidedLabel(QLabel):
    """One line of text that ends in "…" where it does not fit; the whole text is the tooltip.

    ``text()`` returns the whole text, so code and tests read what was set.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, min_width: int = MIN_TEXT_WIDTH):
        super().__init__(parent)
        self._full = ""
        self._min_width = min_width
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)  # its text's width when there is room
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text or ""
        self.setToolTip(self._full if self._full else "")
        self._elide()
        self.updateGeometry()

    def text(self) -> str:  # noqa: D102 - Qt override
        return self._full

    def full_text(self) -> str:
        return self._full

    def _overhead(self) -> int:
        """Pixels a QLabel adds around its text (margins, indent, a style sheet's padding)."""
        return max(super().sizeHint().width() - self.fontMetrics().horizontalAdvance(super().text()), 0)

    def _elide(self) -> None:
        room = self.width() - self._overhead()
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(room, 1)) if self.width() > 1 else self._full
        super().setText(shown)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def sizeHint(self) -> QSize:  # noqa: D102 - Qt override
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance(self._full) + self._overhead() + 2, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: D102 - Qt override
        return QSize(self._min_width, super().minimumSizeHint().height())


class WrappingLabel(QLabel):
    """Text that wraps onto as many lines as the width needs (at most ``max_lines`` asked for), asking for little width.

    Past ``max_lines`` the label asks for no more height, so a long message in a
    narrow place cannot make the window taller than the screen; the whole text is
    then its tooltip.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, min_width: int = MIN_TEXT_WIDTH,
                 max_lines: int = 4, preferred_width: int = 480):
        super().__init__(text, parent)
        self._min_width = min_width
        self._max_lines = max_lines
        self._preferred_width = preferred_width
        self.setWordWrap(True)
        policy = QSizePolicy(QSizePolicy.Ignored, QSizePolicy.Minimum)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        super().setText(text)
        self._update_tooltip()
        self.updateGeometry()

    def _cap(self) -> int:
        m = self.contentsMargins()
        return self.fontMetrics().lineSpacing() * self._max_lines + m.top() + m.bottom() + 2

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        return min(super().heightForWidth(width), self._cap())

    def _height(self) -> int:
        return self.heightForWidth(max(self.width(), self._min_width)) if self.text() else 0

    def _update_tooltip(self) -> None:
        width = max(self.width(), self._min_width)
        clipped = bool(self.text()) and super().heightForWidth(width) > self._cap()
        self.setToolTip(self.text() if clipped else "")

    def minimumSizeHint(self) -> QSize:  # noqa: D102 - Qt override
        return QSize(self._min_width, self._height())

    def sizeHint(self) -> QSize:  # noqa: D102 - Qt override
        width = min(self.fontMetrics().horizontalAdvance(self.text()) + 8, self._preferred_width)
        return QSize(max(width, self._min_width), self._height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        before = event.oldSize().width()
        super().resizeEvent(event)
        if before != event.size().width():
            self._update_tooltip()
            self.updateGeometry()  # the height it needs changed with the width


class FlowLayout(QLayout):
    """Widgets left to right, onto the next row when the width runs out (Qt's flow layout example)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 4):
        super().__init__(parent)
        self._items: list = []
        self.setSpacing(spacing)
        self.setContentsMargins(4, 2, 4, 2)

    def addItem(self, item) -> None:  # noqa: N802 - Qt override
        self._items.append(item)

    def addWidget(self, widget: QWidget) -> None:  # noqa: N802 - Qt override
        self.addChildWidget(widget)
        self._items.append(QWidgetItem(widget))
        self.invalidate()

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):  # noqa: N802 - Qt override
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):  # noqa: N802 - Qt override
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self):  # noqa: N802 - Qt override
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt override
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt override
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _arrange(self, rect: QRect, move: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, row_height = area.x(), area.y(), 0
        for item in self._items:
            if item.widget() is not None and item.widget().isHidden():
                continue
            hint = item.sizeHint()
            if x + hint.width() > area.right() + 1 and row_height > 0:
                x, y, row_height = area.x(), y + row_height + self.spacing(), 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + m.bottom()


__all__ = ["ElidedLabel", "FlowLayout", "WrappingLabel"]
