"""The experiment panel: everything a run needs, picked with the mouse, validated like the CLI.

The panel holds no rules of its own.  On every edit it builds the same
TOML-shaped mapping a config file would hold and passes it to
``config_from_mapping``; a ConfigError names the field (``optim.lr``,
``objective.temperature``...), which is marked red, and its sentence is shown
under the form while Start stays disabled.  Forms for the objective's
hyper-parameters and for the advanced sections (data details, augmentation,
optimiser, probes) are generated from the dataclasses that declare them.

Settings the panel does not show (precision, run name, ...) are kept from the
last loaded configuration, so loading a preset or a run and pressing Start
repeats it exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ssl_studio.config import (
    ABLATIONS,
    BACKBONES,
    DEVICES,
    AugmentConfig,
    BudgetConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    ProbeConfig,
    RunConfig,
    config_from_mapping,
    config_to_mapping,
)
from ssl_studio.engine.build import augment_adjustments, resolve_augment
from ssl_studio.engine.launch import max_processes
from ssl_studio.gui.budget_advice import BudgetAdvisor
from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.gui.param_form import INT_LIMIT, FloatSpinBox, ParamForm, format_number, pretty_name
from ssl_studio.gui.preview import PreviewStrip
from ssl_studio.models import DEFAULT_DEPTH
from ssl_studio.objectives import FAMILIES, all_objectives
from ssl_studio.params import ConfigError, describe, from_mapping

DATA_CHOICES = (
    ("Shapes (built in)", "shapes"),
    ("Digits (built in)", "digits"),
    ("Image folder...", "folder"),
    ("CIFAR folder...", "cifar"),
    ("Text (built in)", "text"),  # the text lab: the standard library's documentation (data/text_corpus.py)
)
BUDGET_DEFAULTS = {"minutes": 5.0, "epochs": 10.0, "steps": 1000.0}
BACKBONE_TITLES = {"convnet": "ConvNet (small, fast)", "resnet18": "ResNet-18", "vit": "ViT (tiny)"}
SHOWN_TOP_LEVEL = ("batch_size", "seed", "device")


# Data fields that only some sources read, by source kind: the others are hidden for that source.
DATA_FIELDS_FOR = {
    "num_images": ("shapes",), "held_out": ("shapes",), "backgrounds": ("shapes",), "fixed_background": ("shapes",),
    "limit": ("folder", "cifar", "text"),
}


def _spec(cls: type, name: str):
    return next(s for s in describe(cls) if s.name == name)


def _tooltip(cls: type, name: str) -> str:
    return _spec(cls, name).help


def _device_available(name: str) -> bool:
    import torch

    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def _name(widget: QWidget, object_name: str, accessible: str, tip: str = "") -> QWidget:
    widget.setObjectName(object_name)
    widget.setAccessibleName(accessible)
    if tip:
        widget.setToolTip(tip)
    return widget


class _IndentDelegate(QStyledItemDelegate):
    """Objectives sit indented under their family's bold header in the picker's list."""

    def paint(self, painter, option, index) -> None:
        if index.data(Qt.UserRole):
            option = QStyleOptionViewItem(option)
            option.rect.adjust(16, 0, 0, 0)
        super().paint(painter, option, index)


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


class ExperimentPanel(QWidget):
    """Objective, backbone, data, budget and the objective's own settings; Start/Pause/Stop."""

    validityChanged = Signal(bool, str)  # valid, error sentence ("" when valid)
    configChanged = Signal()
    startRequested = Signal()
    pauseRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("experimentPanel")
        self.setAccessibleName("Experiment")
        self.title = "Experiment"
        self.objectives = all_objectives()
        self._base: dict[str, Any] = config_to_mapping(RunConfig())
        self._data_paths: dict[str, str] = {"folder": "", "cifar": ""}
        self._data_kind = "shapes"
        self._loading = False
        self._marked: list[QWidget] = []
        self._recipe_backbone: str | None = None  # the backbone the objective's form defaults were last set for
        self._last_preview_key: str | None = None
        self._state = "idle"
        self.error: str = ""
        self.config: RunConfig | None = None
        self.runs_dir = Path("runs")  # where "Start from" looks first; the window sets its own
        self._build()
        self.budget_advisor = BudgetAdvisor(self.runs_dir, self)
        self.budget_advisor.noteChanged.connect(self._show_budget_note)
        self.configChanged.connect(self._check_budget)
        self._on_objective_changed()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)

        scroll = QScrollArea()
        scroll.setObjectName("experimentScroll")
        scroll.setAccessibleName("Experiment settings")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("experimentBody")
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 4, 0)
        lay.setSpacing(8)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

        # Objective --------------------------------------------------------------
        box = self.objective_box = QGroupBox("Objective")
        box.setObjectName("objectiveGroup")
        form = QFormLayout(box)
        self.objective_combo = _name(QComboBox(), "objectiveCombo", "Objective", "The self-supervised method to train.")
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
        self.description = _name(QLabel(), "objectiveDescription", "Objective description")
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow(self.description)
        self.backbone_combo = _name(QComboBox(), "backboneCombo", "Backbone", _tooltip(ModelConfig, "backbone"))
        for b in BACKBONES:
            self.backbone_combo.addItem(BACKBONE_TITLES.get(b, b), b)
        self.backbone_combo.currentIndexChanged.connect(self._on_backbone_changed)
        form.addRow("Backbone", self.backbone_combo)
        self.width_spin = _name(QSpinBox(), "widthSpin", "Backbone width", _tooltip(ModelConfig, "width"))
        w = _spec(ModelConfig, "width")
        self.width_spin.setRange(int(w.min), int(w.max))
        self.width_spin.setSpecialValueText("backbone default")  # shown at 0, the config's "take the backbone's own"
        self.width_spin.setValue(int(w.default))
        self.width_spin.valueChanged.connect(self._changed)
        form.addRow("Width", self.width_spin)
        # Settings of the ViT's token sequence, by ModelConfig field: enabled for the ViT only, 0 elsewhere.
        self.vit_spins: dict[str, QSpinBox] = {}
        for field, label, at_zero in (("depth", "Depth", f"default ({DEFAULT_DEPTH})"), ("registers", "Registers", "none")):
            spin = _name(QSpinBox(), f"{field}Spin", f"ViT {field}", _tooltip(ModelConfig, field))
            spec = _spec(ModelConfig, field)
            spin.setRange(int(spec.min), int(spec.max))
            spin.setSpecialValueText(at_zero)
            spin.setEnabled(self.backbone_combo.currentData() == "vit")
            spin.valueChanged.connect(self._changed)
            form.addRow(label, spin)
            self.vit_spins[field] = spin
        self.init_from_edit = _name(QLineEdit(), "initFromEdit", "Start from run", _tooltip(ModelConfig, "init_from"))
        self.init_from_edit.setPlaceholderText("random weights")
        self.init_from_edit.setClearButtonEnabled(True)
        self.init_from_edit.textChanged.connect(self._changed)
        choose = _name(QToolButton(), "initFromButton", "Choose the run to start from")
        choose.setText("Choose…")
        choose.clicked.connect(self.choose_start_run)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.init_from_edit, 1)
        row.addWidget(choose)
        form.addRow("Start from", row)
        lay.addWidget(box)

        # Data -------------------------------------------------------------------
        box = QGroupBox("Data")
        box.setObjectName("dataGroup")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.data_combo = _name(QComboBox(), "dataCombo", "Data source", _tooltip(DataConfig, "source"))
        for text, kind in DATA_CHOICES:
            self.data_combo.addItem(text, kind)
        self.data_combo.activated.connect(self._on_data_activated)
        row.addWidget(QLabel("Source"))
        row.addWidget(self.data_combo, 1)
        v.addLayout(row)
        self.data_path = _name(QLabel(""), "dataPathLabel", "Data folder")
        self.data_path.setWordWrap(True)
        self.data_path.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.data_path.hide()
        v.addWidget(self.data_path)
        self.data_form = ParamForm(DataConfig, prefix="data_", exclude=("source",))
        self.data_form.setObjectName("dataForm")
        self.data_form.changed.connect(self._changed)
        v.addWidget(Section("Data details", self.data_form, "dataDetails", expanded=False))
        self._show_data_path()
        self.preview = PreviewStrip()
        self.preview.failed.connect(self._on_preview_failed)
        self.preview.loaded.connect(self._on_preview_loaded)
        v.addWidget(self.preview)
        self.data_error = _name(QLabel(""), "dataError", "Data problem")
        self.data_error.setWordWrap(True)
        self.data_error.hide()
        v.addWidget(self.data_error)
        lay.addWidget(box)

        # Training ---------------------------------------------------------------
        box = self.training_box = QGroupBox("Training")
        box.setObjectName("trainingGroup")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.budget_kind = _name(QComboBox(), "budgetKindCombo", "Budget kind",
                                 "Stop after this much wall-clock time, passes over the data, or optimiser steps.")
        for kind in ("minutes", "epochs", "steps"):
            self.budget_kind.addItem(kind, kind)
        self.budget_value = _name(FloatSpinBox(), "budgetValue", "Budget", _tooltip(BudgetConfig, "minutes"))
        self.budget_value.setRange(0.0, 1e7)
        self.budget_value.setValue(BUDGET_DEFAULTS["minutes"])
        self.budget_kind.currentIndexChanged.connect(self._on_budget_kind)
        self.budget_value.valueChanged.connect(self._changed)
        row.addWidget(self.budget_value, 1)
        row.addWidget(self.budget_kind)
        form.addRow("Budget", row)

        spec = _spec(RunConfig, "batch_size")
        self.batch_spin = _name(QSpinBox(), "batchSizeSpin", "Batch size", spec.help)
        self.batch_spin.setRange(int(spec.min), int(spec.max))
        self.batch_spin.setValue(int(spec.default))
        self.batch_spin.valueChanged.connect(self._changed)
        form.addRow("Batch size", self.batch_spin)

        self.lr_edit = _name(QLineEdit(), "lrEdit", "Learning rate", _tooltip(OptimConfig, "lr"))
        self.lr_edit.textChanged.connect(self._changed)
        form.addRow("Learning rate", self.lr_edit)

        spec = _spec(RunConfig, "seed")
        self.seed_spin = _name(QSpinBox(), "seedSpin", "Seed", spec.help)
        self.seed_spin.setRange(int(spec.min or 0), INT_LIMIT)
        self.seed_spin.setValue(int(spec.default))
        self.seed_spin.valueChanged.connect(self._changed)
        form.addRow("Seed", self.seed_spin)

        self.device_combo = _name(QComboBox(), "deviceCombo", "Device", _spec(RunConfig, "device").help)
        for d in DEVICES:
            self.device_combo.addItem(d, d)
            if not _device_available(d):
                item = self.device_combo.model().item(self.device_combo.count() - 1)
                item.setEnabled(False)
                item.setToolTip(f"No {d} device is available on this machine.")
        self.device_combo.currentIndexChanged.connect(self._changed)
        form.addRow("Device", self.device_combo)
        lay.addWidget(box)

        # The objective's own hyper-parameters -------------------------------------
        self.params_box = QGroupBox("Settings")
        self.params_box.setObjectName("paramsGroup")
        v = QVBoxLayout(self.params_box)
        self.param_form = ParamForm(prefix="param_")
        self.param_form.setObjectName("paramForm")
        self.param_form.changed.connect(self._changed)
        v.addWidget(self.param_form)
        self.recipe_note = _name(QLabel(""), "backboneRecipeLabel", "Defaults adjusted for this backbone")
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

        # Advanced, generated from the config dataclasses ---------------------------------
        self.augment_form = ParamForm(AugmentConfig, prefix="augment_")
        self.augment_form.setObjectName("augmentForm")
        self.augment_form.changed.connect(self._changed)
        self.optim_form = ParamForm(OptimConfig, prefix="optim_", exclude=("lr",))
        self.optim_form.setObjectName("optimForm")
        self.optim_form.changed.connect(self._changed)
        self.probe_form = ParamForm(ProbeConfig, prefix="probe_")
        self.probe_form.setObjectName("probeForm")
        self.probe_form.changed.connect(self._changed)
        self.sections = {
            "augment": Section("Augmentation", self.augment_form, "augmentSection", expanded=False),
            "optim": Section("Optimiser", self.optim_form, "optimSection", expanded=False),
            "probe": Section("Probes", self.probe_form, "probeSection", expanded=False),
        }
        for key, section in self.sections.items():
            lay.addWidget(section)
            if key == "augment":  # what the run really uses where data set or objective adjust the lab's defaults
                self.augment_note = _name(QLabel(""), "augmentAdjustedLabel", "Augmentation adjusted for this data set and objective")
                self.augment_note.setWordWrap(True)
                self.augment_note.setStyleSheet("color: palette(placeholder-text);")
                self.augment_note.hide()
                section.layout().insertWidget(1, self.augment_note)  # under the title: seen folded or not
        self.kept_label = _name(QLabel(""), "keptSettingsLabel", "Settings kept from the loaded configuration")
        self.kept_label.setWordWrap(True)
        self.kept_label.setStyleSheet("color: palette(placeholder-text);")
        lay.addWidget(self.kept_label)
        lay.addStretch(1)

        # Always visible: the error and the run buttons ------------------------------
        self.error_label = _name(QLabel(""), "errorLabel", "Configuration problem")
        self.error_label.setWordWrap(True)
        self.error_label.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.error_label.hide()
        outer.addWidget(self.error_label)
        row = QHBoxLayout()
        self.processes_label = _name(QLabel("Processes"), "processesLabel", "Processes")
        self.processes_spin = _name(QSpinBox(), "processesSpin", "Processes",
                                    "1 trains inside the window; 2 or more launch a torchrun job with that many local "
                                    "processes (one per GPU on CUDA, gloo on CPU), followed live. batch_size stays the global batch.")
        self.processes_spin.setRange(1, max_processes())
        self.processes_label.setBuddy(self.processes_spin)
        self.start_button = _name(QPushButton("Start"), "startButton", "Start training", "Start training (Ctrl+Return)")
        self.pause_button = _name(QPushButton("Pause"), "pauseButton", "Pause or resume training", "Pause or resume (Ctrl+P)")
        self.stop_button = _name(QPushButton("Stop"), "stopButton", "Stop training",
                                 "Stop after this step and save a checkpoint (Ctrl+.)")
        self.start_button.setMinimumHeight(32)
        self.start_button.clicked.connect(self.startRequested)
        self.pause_button.clicked.connect(self.pauseRequested)
        self.stop_button.clicked.connect(self.stopRequested)
        # on its own line above the buttons: beside them it squeezed Pause's label in a narrow dock
        processes_row = QHBoxLayout()
        processes_row.addWidget(self.processes_label)
        processes_row.addWidget(self.processes_spin)
        self.processes_hint = QLabel("2 or more: a torchrun job")
        self.processes_hint.setStyleSheet("color: palette(placeholder-text);")
        processes_row.addWidget(self.processes_hint, 1)
        outer.addLayout(processes_row)
        self.budget_note = _name(WrappingLabel(""), "budgetNote", "Budget advice")  # too short a budget, before Start
        self.budget_note.hide()
        outer.addWidget(self.budget_note)
        row.addWidget(self.start_button, 2)
        row.addWidget(self.pause_button, 1)
        row.addWidget(self.stop_button, 1)
        outer.addLayout(row)
        # Disabled while a run trains (its config is fixed); the preview stays lit.
        self.form_widgets = [self.objective_box, self.data_combo, self.findChild(Section, "dataDetails"),
                             self.training_box, self.params_box, self.ablation_box, *self.sections.values(),
                             self.processes_label, self.processes_spin]
        self.set_run_state("idle")

    # ------------------------------------------------------------------ objective
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
        self._show_recipe(cls)
        self._changed()

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
            if name not in cls.honours:
                continue
            box = _name(QCheckBox(pretty_name(name)), f"ablation_{name}", pretty_name(name), effect)
            box.setAccessibleDescription(effect)
            box.setChecked(name in checked)
            box.toggled.connect(self._changed)
            self.ablation_layout.addWidget(box)
            self.ablation_checks[name] = box
        if not self.ablation_checks:
            note = QLabel(f"{cls.title} has no ablation switches.")
            note.setObjectName("noAblations")
            self.ablation_layout.addWidget(note)

    # ------------------------------------------------------------------ data
    def data_source(self) -> str:
        kind = self._data_kind
        if kind in ("folder", "cifar"):
            return f"{kind}:{self._data_paths[kind]}"
        return "text:builtin" if kind == "text" else kind

    def set_data_source(self, source: str) -> None:
        """Select a source string (shapes, digits, folder:PATH, cifar:PATH) without any dialog."""
        kind, _, path = source.partition(":")
        if kind not in ("shapes", "digits", "folder", "cifar", "text"):
            kind = "shapes"
        if kind in ("folder", "cifar"):
            self._data_paths[kind] = path
        self._data_kind = kind
        self.data_combo.setCurrentIndex(self.data_combo.findData(kind))
        self._show_data_path()
        self._changed()

    def choose_start_run(self) -> bool:
        """Ask for the run folder whose trained backbone the next run starts from; False when cancelled."""
        current = self.init_from_edit.text().strip()
        start = str(Path(current).parent if current else self.runs_dir if self.runs_dir.is_dir() else Path.cwd())
        path = QFileDialog.getExistingDirectory(self, "Start from the trained backbone of run", start)
        if not path:
            return False
        self.init_from_edit.setText(path)
        return True

    def choose_folder(self, kind: str) -> bool:
        """Ask for an image or CIFAR folder; False (and no change) when the dialog is cancelled."""
        title = "Open image folder" if kind == "folder" else "Open CIFAR folder (cifar-10-batches-py or cifar-100-python)"
        start = self._data_paths.get(kind) or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, title, start)
        if not path:
            return False
        self.set_data_source(f"{kind}:{path}")
        return True

    def _on_data_activated(self, index: int) -> None:
        kind = self.data_combo.itemData(index)
        if kind in ("folder", "cifar") and not self.choose_folder(kind):
            self.data_combo.setCurrentIndex(self.data_combo.findData(self._data_kind))  # cancelled: keep the old source
            return
        if kind in ("shapes", "digits", "text"):
            self.set_data_source(kind)

    def _show_data_path(self) -> None:
        kind = self._data_kind
        for field, kinds in DATA_FIELDS_FOR.items():
            self.data_form.set_row_visible(field, kind in kinds)
        if kind in ("folder", "cifar"):
            path = self._data_paths[kind]
            self.data_path.setText(path or "No folder chosen yet.")
            self.data_path.setToolTip(path)
            self.data_path.show()
        else:
            self.data_path.hide()

    def _on_preview_failed(self, message: str) -> None:
        self.data_error.setText(message)
        self.data_error.show()
        self.data_combo.setProperty("invalid", True)
        self._repolish(self.data_combo)

    def _on_preview_loaded(self, _name: str) -> None:
        self.data_error.hide()
        if self.data_combo not in self._marked:
            self.data_combo.setProperty("invalid", False)
            self._repolish(self.data_combo)

    def _request_preview(self, mapping: dict[str, Any]) -> None:
        try:
            data = from_mapping(DataConfig, mapping.get("data", {}), "data")
            augment = from_mapping(AugmentConfig, mapping.get("augment", {}), "augment")
        except ConfigError:
            return
        if data.source.endswith(":"):
            return
        objective = mapping.get("objective", {}).get("name")
        if objective in all_objectives():  # preview what the run will use, data set and objective adjustments included
            augment = resolve_augment(augment, data.source, objective)
        plain = "no_augmentation" in mapping.get("ablations", [])
        seed = mapping.get("seed", 0)
        key = repr((data, augment, seed, plain))
        if key == self._last_preview_key:
            return
        self._last_preview_key = key
        self.preview.request(data, augment, seed if isinstance(seed, int) else 0, plain)

    # ------------------------------------------------------------------ budget
    def _on_budget_kind(self, *_args) -> None:
        kind = self.budget_kind.currentData()
        spec = _spec(BudgetConfig, kind)
        self.budget_value.setToolTip(spec.help)
        self.budget_value.setSuffix("")  # the unit box beside it names the unit; a suffix read "5 min  minutes"
        self.budget_value.setStepType(FloatSpinBox.DefaultStepType if kind == "steps" else FloatSpinBox.AdaptiveDecimalStepType)
        self.budget_value.setSingleStep(10 if kind == "steps" else 1)
        if not self._loading:
            self.budget_value.setValue(BUDGET_DEFAULTS[kind])
        self._changed()

    # ------------------------------------------------------------------ mapping and validation
    def mapping(self) -> dict[str, Any]:
        """The form as the mapping a TOML file would hold (the CLI's input format)."""
        m = copy.deepcopy(self._base)
        m["objective"] = {"name": self.objective_name(), **self.param_form.values()}
        model = dict(m.get("model", {}))
        model["backbone"] = self.backbone_combo.currentData()
        model["width"] = self.width_spin.value()
        for field, spin in self.vit_spins.items():
            model[field] = spin.value() if model["backbone"] == "vit" else 0
        model["init_from"] = self.init_from_edit.text().strip()
        m["model"] = model
        data = dict(self.data_form.values())
        data["source"] = self.data_source()
        m["data"] = data
        m["augment"] = self.augment_form.values()
        optim = self.optim_form.values()
        lr = self.lr_edit.text().strip()
        if lr:
            optim["lr"] = lr
        m["optim"] = optim
        m["probe"] = self.probe_form.values()
        kind = self.budget_kind.currentData()
        value = self.budget_value.value()
        m["budget"] = {kind: int(value) if kind == "steps" and float(value).is_integer() else value}
        m["batch_size"] = self.batch_spin.value()
        m["seed"] = self.seed_spin.value()
        m["device"] = self.device_combo.currentData()
        m["ablations"] = [n for n in ABLATIONS if n in self.ablation_checks and self.ablation_checks[n].isChecked()]
        return m

    def processes(self) -> int:
        """How many local processes Start trains with (1: in the window; more: a torchrun job)."""
        return self.processes_spin.value()

    def to_config(self) -> RunConfig:
        """The validated RunConfig; raises ConfigError naming the field, like the CLI."""
        m = self.mapping()
        src = m["data"]["source"]
        if src.endswith(":"):
            raise ConfigError("data.source", f"needs a folder: choose one with {'Open image folder' if src.startswith('folder') else 'Open CIFAR folder'}...")
        return config_from_mapping(m)

    def _changed(self, *_args) -> None:
        if self._loading:
            return
        self.validate()
        self.configChanged.emit()

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

    def _update_augment_note(self) -> None:
        """Say which augmentation fields the run changes from the form, and why (build.augment_adjustments)."""
        text = ""
        if self.config is not None:
            adjusted = augment_adjustments(self.config.augment, self.config.data.source, self.config.objective.name)
            if adjusted:
                text = "This run uses " + "; ".join(f"{pretty_name(k).lower()} {format_number(v) if isinstance(v, float) else v} ({why})"
                                                    for k, (v, why) in adjusted.items()) + ", where the form keeps the lab's default."
        self.augment_note.setText(text)
        self.augment_note.setVisible(bool(text))

    def _update_kept(self) -> None:
        """Name the settings that come from a loaded config but have no control here."""
        defaults = config_to_mapping(RunConfig())
        kept = []
        for key, value in self._base.items():
            if key in ("objective", "model", "data", "augment", "optim", "probe", "budget", "ablations", *SHOWN_TOP_LEVEL):
                continue
            if isinstance(value, dict):
                continue
            if defaults.get(key) != value:
                kept.append(f"{key} = {value!r}")
        self.kept_label.setText("Kept from the loaded configuration: " + ", ".join(kept) if kept else "")
        self.kept_label.setVisible(bool(kept))

    # ------------------------------------------------------------------ loading
    def load_config(self, cfg: RunConfig) -> None:
        """Fill the form from a preset's or a run's configuration (Re-run uses this)."""
        self._loading = True
        try:
            self._base = config_to_mapping(cfg)
            self._select_objective(cfg.objective.name)
            self._on_objective_changed()  # rebuilds the objective's form from _base, over its backbone's defaults
            self.backbone_combo.setCurrentIndex(max(0, self.backbone_combo.findData(cfg.model.backbone)))
            self.width_spin.setValue(cfg.model.width)
            for field, spin in self.vit_spins.items():
                spin.setValue(getattr(cfg.model, field))
            self.init_from_edit.setText(cfg.model.init_from)
            self.set_data_source(cfg.data.source)
            self.data_form.set_values(self._base.get("data", {}))
            self.augment_form.set_values(self._base.get("augment", {}))
            self.optim_form.set_values(self._base.get("optim", {}))
            self.probe_form.set_values(self._base.get("probe", {}))
            b = cfg.budget
            kind, value = "minutes", BUDGET_DEFAULTS["minutes"]
            for name in ("minutes", "epochs", "steps"):
                if getattr(b, name) is not None:
                    kind, value = name, float(getattr(b, name))
            self.budget_kind.setCurrentIndex(self.budget_kind.findData(kind))
            self._on_budget_kind()
            self.budget_value.setValue(value)
            self.batch_spin.setValue(cfg.batch_size)
            self.lr_edit.setText("" if cfg.optim.lr is None else format_number(cfg.optim.lr))
            self.seed_spin.setValue(cfg.seed)
            self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(cfg.device)))
            for name, box in self.ablation_checks.items():
                box.setChecked(name in cfg.ablations)
        finally:
            self._loading = False
        self.validate()
        self.configChanged.emit()

    # ------------------------------------------------------------------ run state
    def set_run_state(self, state: str) -> None:
        """idle | loading | running | paused | stopping: which buttons make sense, whether the form edits."""
        self._state = state
        for w in self.form_widgets:
            w.setEnabled(state == "idle")
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        self._update_buttons()

    def _update_buttons(self) -> None:
        state = self._state
        self.start_button.setEnabled(state == "idle" and self.config is not None)
        self.pause_button.setEnabled(state in ("running", "paused", "loading"))
        self.stop_button.setEnabled(state in ("running", "paused", "loading"))

    def _check_budget(self) -> None:
        self.budget_advisor.runs_dir = Path(self.runs_dir)
        self.budget_advisor.check(self.config)

    def _show_budget_note(self, note: str) -> None:
        self.budget_note.setText(note)
        self.budget_note.setVisible(bool(note))

    def shutdown(self) -> None:
        self.budget_advisor.shutdown()
        self.preview.shutdown()
