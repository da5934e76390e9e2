"""The experiment panel's method sections: the objective picker, backbone, the objective's settings and ablations.

A mixin of ``ExperimentPanel``: picking an objective rebuilds its settings form (from its parameter
dataclass), its ablation switches and the backbones it runs on; a backbone's recipe adjusts defaults.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox,
                               QStyledItemDelegate, QStyleOptionViewItem, QToolButton, QVBoxLayout)

from ssl_studio.config import ABLATIONS, BACKBONES, ModelConfig
from ssl_studio.gui.naming import name_control
from ssl_studio.gui.param_form import ParamForm, format_number, pretty_name
from ssl_studio.models import DEFAULT_DEPTH
from ssl_studio.objectives import FAMILIES
from ssl_studio.params import ConfigError, describe


BACKBONE_TITLES = {"convnet": "ConvNet (small, fast)", "resnet18": "ResNet-18", "vit": "ViT (tiny)"}


def _spec(cls: type, name: str):
    return next(s for s in describe(cls) if s.name == name)


def _tooltip(cls: type, name: str) -> str:
    return _spec(cls, name).help


class _IndentDelegate(QStyledItemDelegate):
    """Objectives sit indented under their family's bold header in the picker's list."""

    def paint(self, painter, option, index) -> None:
        if index.data(Qt.UserRole):
            option = QStyleOptionViewItem(option)
            option.rect.adjust(16, 0, 0, 0)
        super().paint(painter, option, index)


class ObjectiveSection:
    """Builds the Objective, Settings and "Break it on purpose" boxes, and follows the picker."""

    def _build_objective_box(self, lay: QVBoxLayout) -> None:
        # Objective --------------------------------------------------------------
        box = self.objective_box = QGroupBox("Objective")
        box.setObjectName("objectiveGroup")
        form = QFormLayout(box)
        self.model_form = form
        self.objective_combo = name_control(QComboBox(), "objectiveCombo", "Objective", "The self-supervised method to train.")
        model = QStandardItemModel(self.objective_combo)
        bold = QFont()
        bold.setBold(True)
        by_family: dict[str, list] = {}
        for cls in self.objectives.values():
            by_family.setdefault(cls.family, []).append(cls)
        for family, title in FAMILIES.items():
            members = by_family.get(family, [])
            if not members:
                continue
            header = QStandardItem(title)
            header.setFlags(Qt.NoItemFlags)
            header.setFont(bold)
            model.appendRow(header)
            for cls in members:
                item = QStandardItem(cls.title)
                item.setData(cls.name, Qt.UserRole)
                item.setToolTip(cls.description)
                model.appendRow(item)
        self.objective_combo.setModel(model)
        self.objective_combo.setItemDelegate(_IndentDelegate(self.objective_combo))
        self.objective_combo.currentIndexChanged.connect(self._on_objective_changed)
        form.addRow("Method", self.objective_combo)
        self.description = name_control(QLabel(), "objectiveDescription", "Objective description")
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow(self.description)
        self.backbone_combo = name_control(QComboBox(), "backboneCombo", "Backbone", _tooltip(ModelConfig, "backbone"))
        for b in BACKBONES:
            self.backbone_combo.addItem(BACKBONE_TITLES.get(b, b), b)
        self.backbone_combo.currentIndexChanged.connect(self._on_backbone_changed)
        form.addRow("Backbone", self.backbone_combo)
        self.width_spin = name_control(QSpinBox(), "widthSpin", "Backbone width", _tooltip(ModelConfig, "width"))
        w = _spec(ModelConfig, "width")
        self.width_spin.setRange(int(w.min), int(w.max))
        self.width_spin.setSpecialValueText("backbone default")  # shown at 0, the config's "take the backbone's own"
        self.width_spin.setValue(int(w.default))
        self.width_spin.valueChanged.connect(self._changed)
        form.addRow("Width", self.width_spin)
        # Settings of the ViT's token sequence, by ModelConfig field: enabled for the ViT only, 0 elsewhere.
        self.vit_spins: dict[str, QSpinBox] = {}
        for field, label, at_zero in (("depth", "Depth", f"default ({DEFAULT_DEPTH})"), ("patch_size", "Patch size", "default (side / 8)"),
                                      ("registers", "Registers", "none")):
            spin = name_control(QSpinBox(), f"{field}Spin", f"ViT {field}", _tooltip(ModelConfig, field))
            spec = _spec(ModelConfig, field)
            spin.setRange(int(spec.min), int(spec.max))
            spin.setSpecialValueText(at_zero)
            spin.setEnabled(self.backbone_combo.currentData() == "vit")
            spin.valueChanged.connect(self._changed)
            form.addRow(label, spin)
            self.vit_spins[field] = spin
        self.init_from_edit = name_control(QLineEdit(), "initFromEdit", "Start from run", _tooltip(ModelConfig, "init_from"))
        self.init_from_edit.setPlaceholderText("random weights")
        self.init_from_edit.setClearButtonEnabled(True)
        self.init_from_edit.textChanged.connect(self._changed)
        choose = name_control(QToolButton(), "initFromButton", "Choose the run to start from")
        choose.setText("Choose…")
        choose.clicked.connect(self.choose_start_run)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.init_from_edit, 1)
        row.addWidget(choose)
        form.addRow("Start from", row)
        lay.addWidget(box)

    def _build_method_sections(self, lay: QVBoxLayout) -> None:
        # The objective's own hyper-parameters -------------------------------------
        self.params_box = QGroupBox("Settings")
        self.params_box.setObjectName("paramsGroup")
        v = QVBoxLayout(self.params_box)
        self.param_form = ParamForm(prefix="param_")
        self.param_form.setObjectName("paramForm")
        self.param_form.changed.connect(self._changed)
        v.addWidget(self.param_form)
        self.recipe_note = name_control(QLabel(""), "backboneRecipeLabel", "Defaults adjusted for this backbone")
        self.recipe_note.setWordWrap(True)
        self.recipe_note.setStyleSheet("color: palette(placeholder-text);")
        self.recipe_note.hide()
        v.addWidget(self.recipe_note)
        lay.addWidget(self.params_box)

        # Ablations ----------------------------------------------------------------
        self.ablation_box = QGroupBox("Break it on purpose")
        self.ablation_box.setObjectName("ablationGroup")
        self.ablation_box.setAccessibleName("Ablations")
        self.ablation_layout = QVBoxLayout(self.ablation_box)
        self.ablation_checks: dict[str, QCheckBox] = {}
        lay.addWidget(self.ablation_box)

    def objective_name(self) -> str:
        return self.objective_combo.currentData(Qt.UserRole) or "simclr"

    def objective_class(self):
        return self.objectives[self.objective_name()]

    def _select_objective(self, name: str) -> None:
        model = self.objective_combo.model()
        for row in range(model.rowCount()):
            if model.item(row).data(Qt.UserRole) == name:
                self.objective_combo.setCurrentIndex(row)
                return
        raise ConfigError("objective.name", f"must be one of {', '.join(self.objectives)}, got {name!r}")

    def _on_objective_changed(self, *_args) -> None:
        if self.objective_combo.currentData(Qt.UserRole) is None:  # a family header: pick its first member
            for row in range(self.objective_combo.currentIndex() + 1, self.objective_combo.count()):
                if self.objective_combo.itemData(row, Qt.UserRole):
                    self.objective_combo.setCurrentIndex(row)
                    return
            self._select_objective(next(iter(self.objectives)))
            return
        cls = self.objective_class()
        self.description.setText(cls.description)
        self.params_box.setTitle(f"{cls.title} settings")
        self.param_form.build(cls.Params)
        self._update_backbones(cls)
        self._fit_model_rows(cls)
        self._recipe_backbone = self.backbone_combo.currentData()
        base_obj = self._base.get("objective", {})
        if base_obj.get("name") == cls.name:
            base_backbone = self._base.get("model", {}).get("backbone", self._recipe_backbone)
            given = {k: v for k, v in base_obj.items() if k != "name"}
            self.param_form.set_values({**cls.param_defaults_for(base_backbone), **given})
        else:
            self.param_form.set_values(cls.param_defaults_for(self._recipe_backbone))
        self.params_box.setVisible(bool(self.param_form.specs))
        self._show_recipe(cls)
        self._rebuild_ablations(cls)
        self._changed()

    def _show_recipe(self, cls) -> None:
        """The optimiser placeholders and the note say what the objective uses on the chosen backbone."""
        backbone = self.backbone_combo.currentData()
        r = cls.recipe_for(backbone)
        entry = cls.backbone_recipes.get(backbone)
        short = BACKBONE_TITLES.get(backbone, backbone).split(" (")[0]
        where = f"{cls.title} recipe" if entry is None else f"{cls.title} recipe for the {short}"
        self.lr_edit.setPlaceholderText(f"{format_number(r.lr)} per 256 images ({where}, {r.optimizer})")
        self.optim_form.set_placeholder("optimizer", f"auto ({r.optimizer})")
        self.optim_form.set_placeholder("weight_decay", f"auto ({format_number(r.weight_decay)})")
        if entry is None:
            self.recipe_note.setText("")
        else:
            settings = ", ".join(f"{pretty_name(k)} {('on' if v else 'off') if isinstance(v, bool) else format_number(v)}"
                                 for k, v in entry.params.items())
            self.recipe_note.setText(f"On the {short}, {cls.title} starts from: {settings}; {r.optimizer.upper()} at "
                                     f"{format_number(r.lr)}, weight decay {format_number(r.weight_decay)}. Why: {entry.why}.")
        self.recipe_note.setVisible(entry is not None)

    def _on_backbone_changed(self, *_args) -> None:
        """Move the objective's settings the user left at the old backbone's defaults to the new one's."""
        backbone = self.backbone_combo.currentData()
        previous, self._recipe_backbone = self._recipe_backbone, backbone
        cls = self.objective_class()
        if not self._loading and previous is not None and previous != backbone:
            declared = {spec.name: spec.default for spec in self.param_form.specs}
            old = {**declared, **cls.param_defaults_for(previous)}
            new = {**declared, **cls.param_defaults_for(backbone)}
            current = self.param_form.values()
            moved = {k: new[k] for k in new if old[k] != new[k] and current.get(k) == old[k]}
            if moved:
                self.param_form.set_values({**current, **moved})
        for spin in self.vit_spins.values():  # a token sequence only the ViT has
            spin.setEnabled(backbone == "vit")
        self._fit_model_rows(cls)
        self._show_recipe(cls)
        self._changed()

    def _fit_model_rows(self, cls) -> None:
        """The language models train the text lab's own Transformer: no backbone or registers to choose, and Width
        and Depth size that network (their defaults said as its own); image objectives get the rows back."""
        text = getattr(cls, "modality", "images") == "text"
        self.model_form.setRowVisible(self.backbone_combo, not text)
        self.model_form.setRowVisible(self.vit_spins["registers"], not text)
        self.model_form.setRowVisible(self.vit_spins["patch_size"], not text)
        if text:
            from ssl_studio.models.text_lm import DEFAULT_TEXT_DEPTH, DEFAULT_TEXT_WIDTH, TEXT_HEAD_DIM

            self.width_spin.setSpecialValueText(f"default ({DEFAULT_TEXT_WIDTH})")
            self.width_spin.setSingleStep(TEXT_HEAD_DIM)
            self.vit_spins["depth"].setSpecialValueText(f"default ({DEFAULT_TEXT_DEPTH})")
        else:
            self.width_spin.setSpecialValueText("backbone default")
            self.width_spin.setSingleStep(1)
            self.vit_spins["depth"].setSpecialValueText(f"default ({DEFAULT_DEPTH})")
        for field, spin in self.vit_spins.items():
            spin.setEnabled(self.model_field_applies(field))

    def model_field_applies(self, field: str) -> bool:
        """Whether the ViT's ``depth``, ``patch_size`` or ``registers`` spin sizes this run's network (the form hands on 0 otherwise)."""
        text = getattr(self.objective_class(), "modality", "images") == "text"
        return (field == "depth" and text) or (self.backbone_combo.currentData() == "vit" and not text)

    def _update_backbones(self, cls) -> None:
        model = self.backbone_combo.model()
        allowed = cls.backbones or BACKBONES
        for row in range(self.backbone_combo.count()):
            item = model.item(row)
            ok = self.backbone_combo.itemData(row) in allowed
            item.setEnabled(ok)
            item.setToolTip("" if ok else f"{cls.title} needs one of: {', '.join(allowed)}.")
        if self.backbone_combo.currentData() not in allowed:
            self.backbone_combo.setCurrentIndex(self.backbone_combo.findData(allowed[0]))

    def _rebuild_ablations(self, cls) -> None:
        checked = {n for n, b in self.ablation_checks.items() if b.isChecked()}
        if self._loading:
            checked = set(self._base.get("ablations", []))
        while self.ablation_layout.count():
            item = self.ablation_layout.takeAt(0)
            w = item.widget()
            if w is not None:  # detach now: deleteLater alone would leave it findable until the next event loop pass
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.ablation_checks = {}
        for name, effect in ABLATIONS.items():
            if name not in cls.ablation_switches():
                continue
            box = name_control(QCheckBox(pretty_name(name)), f"ablation_{name}", pretty_name(name), effect)
            box.setAccessibleDescription(effect)
            box.setChecked(name in checked)
            box.toggled.connect(self._changed)
            self.ablation_layout.addWidget(box)
            self.ablation_checks[name] = box
        if not self.ablation_checks:
            note = QLabel(f"{cls.title} has no ablation switches.")
            note.setObjectName("noAblations")
            self.ablation_layout.addWidget(note)
