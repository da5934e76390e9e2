"""A form generated from a ``Params`` dataclass, so no hyper-parameter is written twice.

``ssl_studio.params.describe`` gives each field's type, default, range, unit and
help; this module turns that into widgets (spin boxes with the declared range,
the unit as suffix, the help as tooltip, combos for choices, check boxes for
booleans, line edits for lists and optional values) and reads the values back
as the plain mapping the TOML reader validates.  Validation itself is never
re-implemented here: the experiment panel runs the same ``config_from_mapping``
the command line does and marks the field its ConfigError names.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ssl_studio.params import ParamSpec, describe

INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e12


# Abbreviations a label spells the way papers do ("Use BN in head", "No EMA"), not as words.
ACRONYMS = {"bn": "BN", "ema": "EMA", "mlp": "MLP", "cls": "CLS", "knn": "k-NN", "ibot": "iBOT", "koleo": "KoLeo"}


def pretty_name(name: str) -> str:
    """``proj_hidden`` -> ``Proj hidden``, ``use_bn_in_head`` -> ``Use BN in head``: labels read as
    words, the object name keeps the key."""
    words = name.split("_")
    text = " ".join(ACRONYMS.get(word, word) for word in words)
    if words and words[0] in ACRONYMS:  # spelled as the paper does, first letter included (k-NN, iBOT)
        return text
    return text[:1].upper() + text[1:]


def format_number(value: float) -> str:
    """Short, exact-enough text for a float (0.2, 1e-05, 0.996), never 0.200000000."""
    if value == 0:
        return "0"
    text = f"{value:.6g}"
    return text


class FloatSpinBox(QDoubleSpinBox):
    """A double spin box that shows values the way papers write them (0.996, 1e-05, 3e+04).

    A fixed number of decimals either hides small learning rates or pads every
    number with zeros; this one keeps ten decimals internally and prints ``%g``.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(10)
        self.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
        self.setKeyboardTracking(True)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return format_number(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        text = text.strip()
        if self.suffix():
            text = text.removesuffix(self.suffix().strip()).strip()
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # noqa: D401 - Qt override
        core = text.strip()
        if self.suffix():
            core = core.removesuffix(self.suffix().strip()).strip()
        if core in ("", "-", "+", ".", "-.", "e", "E") or core.lower().endswith(("e", "e-", "e+")):
            return QValidator.Intermediate, text, pos
        try:
            value = float(core)
        except ValueError:
            return QValidator.Invalid, text, pos
        if not math.isfinite(value):
            return QValidator.Invalid, text, pos
        if value < self.minimum() or value > self.maximum():
            return QValidator.Intermediate, text, pos
        return QValidator.Acceptable, text, pos


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple) or tp in (list, tuple)


class ParamForm(QWidget):
    """The fields of one dataclass; emits ``changed`` on every edit."""

    changed = Signal()

    def __init__(self, params_cls: type | None = None, parent: QWidget | None = None, prefix: str = "param_",
                 exclude: tuple[str, ...] = ()):
        super().__init__(parent)
        self.prefix = prefix
        self.exclude = set(exclude)
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.specs: list[ParamSpec] = []
        self.widgets: dict[str, QWidget] = {}
        self._optional: set[str] = set()
        self._exact: dict[str, float] = {}
        if params_cls is not None:
            self.build(params_cls)

    # -- building ----------------------------------------------------------------------
    def build(self, params_cls: type) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.widgets.clear()
        self._optional.clear()
        self._exact.clear()
        self.specs = [s for s in describe(params_cls) if s.name not in self.exclude]
        for spec in self.specs:
            widget = self._make_widget(spec)
            widget.setObjectName(f"{self.prefix}{spec.name}")
            widget.setAccessibleName(pretty_name(spec.name))
            widget.setAccessibleDescription(spec.help)
            widget.setToolTip(self._tooltip(spec))
            label = QLabel(pretty_name(spec.name))
            label.setToolTip(widget.toolTip())
            label.setBuddy(widget)
            self.layout_.addRow(label, widget)
            self.widgets[spec.name] = widget

    @staticmethod
    def _tooltip(spec: ParamSpec) -> str:
        parts = [spec.help]
        if spec.choices:
            parts.append("One of: " + ", ".join(str(c) for c in spec.choices) + ".")
        elif spec.min is not None or spec.max is not None:
            lo = "-inf" if spec.min is None else format_number(spec.min)
            hi = "inf" if spec.max is None else format_number(spec.max)
            parts.append(f"Range: {lo} to {hi}{' ' + spec.unit if spec.unit else ''}.")
        if spec.default is not None:
            default = ", ".join(str(v) for v in spec.default) if isinstance(spec.default, (list, tuple)) else spec.default
            parts.append(f"Default: {default}.")
        return "\n".join(p for p in parts if p)

    def _make_widget(self, spec: ParamSpec) -> QWidget:
        tp = spec.type
        if spec.choices:
            combo = QComboBox()
            if spec.default is None:  # "unset takes the recommendation"
                combo.addItem("auto", None)
            for choice in spec.choices:
                combo.addItem(str(choice), choice)
            if spec.default in spec.choices:
                combo.setCurrentIndex(spec.choices.index(spec.default))
            combo.currentIndexChanged.connect(self._emit_changed)
            return combo
        if tp is bool:
            box = QCheckBox()
            box.setChecked(bool(spec.default))
            box.toggled.connect(self._emit_changed)
            return box
        if spec.default is None or _is_list(tp) or tp not in (int, float):
            # Optional values ("unset takes the recommendation"), lists and strings: free text,
            # interpreted by the same coercion the TOML reader uses.
            edit = QLineEdit()
            if spec.default is None:
                self._optional.add(spec.name)
                edit.setPlaceholderText("auto")
            else:
                edit.setText(self._text(spec.default))
            edit.textChanged.connect(self._emit_changed)
            return edit
        if tp is int:
            spin = QSpinBox()
            spin.setRange(int(spec.min) if spec.min is not None else -INT_LIMIT,
                          int(spec.max) if spec.max is not None else INT_LIMIT)
            spin.setValue(int(spec.default))
            spin.setKeyboardTracking(True)
            spin.valueChanged.connect(self._emit_changed)
        else:
            spin = FloatSpinBox()
            spin.setRange(float(spec.min) if spec.min is not None else -FLOAT_LIMIT,
                          float(spec.max) if spec.max is not None else FLOAT_LIMIT)
            spin.setValue(float(spec.default))
            self._exact[spec.name] = float(spec.default)
            spin.valueChanged.connect(self._emit_changed)
        if spec.unit:
            spin.setSuffix(f" {spec.unit}")
        return spin

    def _emit_changed(self, *_args) -> None:
        self.changed.emit()

    @staticmethod
    def _text(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(format_number(v) if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, float):
            return format_number(value)
        return str(value)

    # -- values ------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The form as a TOML-shaped mapping; blank optional fields are left out (= unset)."""
        out: dict[str, Any] = {}
        for spec in self.specs:
            w = self.widgets[spec.name]
            if isinstance(w, QComboBox):
                if w.currentData() is None:
                    continue
                out[spec.name] = w.currentData()
            elif isinstance(w, QCheckBox):
                out[spec.name] = w.isChecked()
            elif isinstance(w, QSpinBox):
                out[spec.name] = w.value()
            elif isinstance(w, QDoubleSpinBox):
                # The spin box rounds to its decimals; an untouched value goes back exactly
                # (4/3 stays 4/3, so a loaded run repeats bit for bit).
                exact = self._exact.get(spec.name)
                out[spec.name] = exact if exact is not None and round(exact, w.decimals()) == w.value() else w.value()
            elif isinstance(w, QLineEdit):
                text = w.text().strip()
                if text == "" and spec.name in self._optional:
                    continue
                out[spec.name] = text
        return out

    def set_values(self, mapping: dict[str, Any]) -> None:
        """Fill fields from a mapping (a preset's or a run's); unknown keys are ignored here
        because validation reports them."""
        self.blockSignals(True)
        try:
            for spec in self.specs:
                value = mapping.get(spec.name, spec.default)
                w = self.widgets[spec.name]
                if isinstance(w, QComboBox):
                    i = w.findData(value) if value is not None else 0
                    if i >= 0:
                        w.setCurrentIndex(i)
                elif isinstance(w, QCheckBox):
                    w.setChecked(bool(value))
                elif isinstance(w, QSpinBox):
                    try:
                        w.setValue(int(value))
                    except (TypeError, ValueError):
                        pass
                elif isinstance(w, QDoubleSpinBox):
                    try:
                        w.setValue(float(value))
                        self._exact[spec.name] = float(value)
                    except (TypeError, ValueError):
                        pass
                elif isinstance(w, QLineEdit):
                    w.setText("" if value is None else self._text(value))
        finally:
            self.blockSignals(False)
        self.changed.emit()

    def widget_for(self, name: str) -> QWidget | None:
        return self.widgets.get(name)

    def set_row_visible(self, name: str, visible: bool) -> None:
        """Show or hide one field with its label (fields that do not apply to the current choice)."""
        w = self.widgets.get(name)
        if w is not None:
            self.layout_.setRowVisible(w, visible)

    def set_placeholder(self, name: str, text: str) -> None:
        """Show what an unset optional field will resolve to (e.g. the objective's recipe)."""
        w = self.widgets.get(name)
        if isinstance(w, QLineEdit):
            w.setPlaceholderText(text)
        elif isinstance(w, QComboBox) and w.count() and w.itemData(0) is None:
            w.setItemText(0, text)
