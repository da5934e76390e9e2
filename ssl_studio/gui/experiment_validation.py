"""The experiment panel's validation marks: the field a ConfigError names, marked red beside its control.

A mixin of ``ExperimentPanel``: every edit builds the TOML-shaped mapping and validates it like the CLI;
this part maps the error's field to its widget and shows or clears the mark.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from ssl_studio.gui.section import Section
from ssl_studio.params import ConfigError


class FormValidation:
    """Validate the form's configuration and mark the named field."""

    def validate(self) -> bool:
        """Rebuild the config from the form; mark the field a ConfigError names."""
        self._clear_marks()
        try:
            self.config = self.to_config()
            self.error = ""
        except ConfigError as exc:
            self.config = None
            self.error = str(exc)
            self._mark(exc.field, self.error)
        self.error_label.setText(self.error)
        self.error_label.setVisible(bool(self.error))
        self._update_buttons()
        self._update_kept()
        self._update_augment_note()
        self._request_preview(self.mapping())
        self.validityChanged.emit(self.config is not None, self.error)
        return self.config is not None

    @property
    def valid(self) -> bool:
        return self.config is not None

    def widget_for_field(self, field: str) -> QWidget | None:
        """The control a ConfigError's field path refers to, if the panel shows it."""
        direct = {
            "objective.name": self.objective_combo,
            "model.backbone": self.backbone_combo,
            "model.width": self.width_spin,
            **{f"model.{field}": spin for field, spin in self.vit_spins.items()},
            "model.init_from": self.init_from_edit,
            "data.source": self.data_combo,
            "optim.lr": self.lr_edit,
            "batch_size": self.batch_spin,
            "seed": self.seed_spin,
            "device": self.device_combo,
            "ablations": self.ablation_box,
            "budget": self.budget_value,
        }
        if field in direct:
            return direct[field]
        head, _, rest = field.partition(".")
        rest = rest.split("[", 1)[0]
        if head == "budget":
            return self.budget_value
        forms = {"objective": self.param_form, "data": self.data_form, "augment": self.augment_form,
                 "optim": self.optim_form, "probe": self.probe_form}
        if head in forms:
            w = forms[head].widget_for(rest)
            if w is not None and head in self.sections:
                self.sections[head].set_expanded(True)
            if w is not None and head == "data":
                self.findChild(Section, "dataDetails").set_expanded(True)
            return w
        return None

    def _mark(self, field: str, message: str) -> None:
        w = self.widget_for_field(field)
        if w is None:
            return
        w.setProperty("invalid", True)
        w.setProperty("errorText", message)
        w.setToolTip(message)
        self._repolish(w)
        self._marked.append(w)

    def mark_external(self, field: str, message: str) -> None:
        """Mark a field a failed run named (e.g. data.source without labels); the next edit clears it."""
        self._mark(field, message)
        self.error_label.setText(message)
        self.error_label.show()

    def clear_external_mark(self) -> None:
        self.validate()

    def _clear_marks(self) -> None:
        for w in self._marked:
            w.setProperty("invalid", False)
            tip = w.property("normalToolTip")
            w.setToolTip(tip if tip is not None else "")
            self._repolish(w)
        self._marked = []
        # Remember each control's own tooltip once, so an error tooltip can be undone.
        for w in self.findChildren(QWidget):
            if w.property("normalToolTip") is None and w.toolTip():
                w.setProperty("normalToolTip", w.toolTip())

    @staticmethod
    def _repolish(w: QWidget) -> None:
        style = w.style()
        style.unpolish(w)
        style.polish(w)
        w.update()
