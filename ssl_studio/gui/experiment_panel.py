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
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QScrollArea, QSizePolicy, QSpinBox, QVBoxLayout, QWidget)

from ssl_studio.config import (ABLATIONS, DEVICES, AugmentConfig, BudgetConfig, DataConfig, OptimConfig, ProbeConfig,
                               RunConfig, config_from_mapping, config_to_mapping)
from ssl_studio.engine.build import augment_adjustments, resolve_augment
from ssl_studio.engine.launch import max_processes
from ssl_studio.gui.budget_advice import BudgetAdvisor
from ssl_studio.gui.experiment_objective import ObjectiveSection, _spec, _tooltip
from ssl_studio.gui.experiment_validation import FormValidation
from ssl_studio.gui.fitting import WrappingLabel
from ssl_studio.gui.naming import name_control
from ssl_studio.gui.param_form import INT_LIMIT, FloatSpinBox, ParamForm, format_number, pretty_name
from ssl_studio.gui.preview import PreviewStrip
from ssl_studio.gui.section import Section
from ssl_studio.objectives import all_objectives
from ssl_studio.params import ConfigError, from_mapping

DATA_CHOICES = (
    ("Shapes (built in)", "shapes"),
    ("Digits (built in)", "digits"),
    ("Image folder...", "folder"),
    ("CIFAR folder...", "cifar"),
    ("Text (built in)", "text"),  # the text lab: the standard library's documentation (data/text_corpus.py)
    ("Text file (.txt)...", "textfile"),  # text:PATH, no labels
    ("Text folder...", "textfolder"),  # text:PATH, .txt files; sub-folders give classes
)
PICKED = ("folder", "cifar", "textfile", "textfolder")  # sources whose path a dialog chooses
BUDGET_DEFAULTS = {"minutes": 5.0, "epochs": 10.0, "steps": 1000.0}
SHOWN_TOP_LEVEL = ("batch_size", "seed", "device")


# Data fields that only some sources read, by source kind: the others are hidden for that source.
DATA_FIELDS_FOR = {
    "num_images": ("shapes",), "held_out": ("shapes",), "backgrounds": ("shapes",), "fixed_background": ("shapes",),
    "limit": ("folder", "cifar", "text", "textfile", "textfolder"),
}


def _device_available(name: str) -> bool:
    import torch

    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


class ExperimentPanel(ObjectiveSection, FormValidation, QWidget):
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
        self._data_paths: dict[str, str] = {kind: "" for kind in PICKED}
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
        """A scrolled form of sections (objective, data, training, the method's settings, advanced), then the run bar."""
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

        self._build_objective_box(lay)
        self._build_data_box(lay)
        self._build_training_box(lay)
        self._build_method_sections(lay)
        self._build_advanced(lay)
        self._build_run_bar(outer)
        # Disabled while a run trains (its config is fixed); the preview stays lit.
        self.form_widgets = [self.objective_box, self.data_combo, self.findChild(Section, "dataDetails"),
                             self.training_box, self.params_box, self.ablation_box, *self.sections.values(),
                             self.processes_label, self.processes_spin]
        self.set_run_state("idle")

    def _build_data_box(self, lay: QVBoxLayout) -> None:
        # Data -------------------------------------------------------------------
        box = QGroupBox("Data")
        box.setObjectName("dataGroup")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.data_combo = name_control(QComboBox(), "dataCombo", "Data source", _tooltip(DataConfig, "source"))
        for text, kind in DATA_CHOICES:
            self.data_combo.addItem(text, kind)
        self.data_combo.activated.connect(self._on_data_activated)
        row.addWidget(QLabel("Source"))
        row.addWidget(self.data_combo, 1)
        v.addLayout(row)
        self.data_path = name_control(QLabel(""), "dataPathLabel", "Data folder")
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
        self.data_error = name_control(QLabel(""), "dataError", "Data problem")
        self.data_error.setWordWrap(True)
        self.data_error.hide()
        v.addWidget(self.data_error)
        lay.addWidget(box)

    def _build_training_box(self, lay: QVBoxLayout) -> None:
        # Training ---------------------------------------------------------------
        box = self.training_box = QGroupBox("Training")
        box.setObjectName("trainingGroup")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.budget_kind = name_control(QComboBox(), "budgetKindCombo", "Budget kind",
                                 "Stop after this much wall-clock time, passes over the data, or optimiser steps.")
        for kind in ("minutes", "epochs", "steps"):
            self.budget_kind.addItem(kind, kind)
        self.budget_value = name_control(FloatSpinBox(), "budgetValue", "Budget", _tooltip(BudgetConfig, "minutes"))
        self.budget_value.setRange(0.0, 1e7)
        self.budget_value.setValue(BUDGET_DEFAULTS["minutes"])
        self.budget_kind.currentIndexChanged.connect(self._on_budget_kind)
        self.budget_value.valueChanged.connect(self._changed)
        row.addWidget(self.budget_value, 1)
        row.addWidget(self.budget_kind)
        form.addRow("Budget", row)

        spec = _spec(RunConfig, "batch_size")
        self.batch_spin = name_control(QSpinBox(), "batchSizeSpin", "Batch size", spec.help)
        self.batch_spin.setRange(int(spec.min), int(spec.max))
        self.batch_spin.setValue(int(spec.default))
        self.batch_spin.valueChanged.connect(self._changed)
        form.addRow("Batch size", self.batch_spin)

        self.lr_edit = name_control(QLineEdit(), "lrEdit", "Learning rate", _tooltip(OptimConfig, "lr"))
        self.lr_edit.textChanged.connect(self._changed)
        form.addRow("Learning rate", self.lr_edit)

        spec = _spec(RunConfig, "seed")
        self.seed_spin = name_control(QSpinBox(), "seedSpin", "Seed", spec.help)
        self.seed_spin.setRange(int(spec.min or 0), INT_LIMIT)
        self.seed_spin.setValue(int(spec.default))
        self.seed_spin.valueChanged.connect(self._changed)
        form.addRow("Seed", self.seed_spin)

        self.device_combo = name_control(QComboBox(), "deviceCombo", "Device", _spec(RunConfig, "device").help)
        for d in DEVICES:
            self.device_combo.addItem(d, d)
            if not _device_available(d):
                item = self.device_combo.model().item(self.device_combo.count() - 1)
                item.setEnabled(False)
                item.setToolTip(f"No {d} device is available on this machine.")
        self.device_combo.currentIndexChanged.connect(self._changed)
        form.addRow("Device", self.device_combo)
        lay.addWidget(box)

    def _build_advanced(self, lay: QVBoxLayout) -> None:
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
                self.augment_note = name_control(QLabel(""), "augmentAdjustedLabel", "Augmentation adjusted for this data set and objective")
                self.augment_note.setWordWrap(True)
                self.augment_note.setStyleSheet("color: palette(placeholder-text);")
                self.augment_note.hide()
                section.layout().insertWidget(1, self.augment_note)  # under the title: seen folded or not
        self.kept_label = name_control(QLabel(""), "keptSettingsLabel", "Settings kept from the loaded configuration")
        self.kept_label.setWordWrap(True)
        self.kept_label.setStyleSheet("color: palette(placeholder-text);")
        lay.addWidget(self.kept_label)
        lay.addStretch(1)

    def _build_run_bar(self, outer: QVBoxLayout) -> None:
        # Always visible: the error and the run buttons ------------------------------
        self.error_label = name_control(QLabel(""), "errorLabel", "Configuration problem")
        self.error_label.setWordWrap(True)
        self.error_label.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.error_label.hide()
        outer.addWidget(self.error_label)
        row = QHBoxLayout()
        self.processes_label = name_control(QLabel("Processes"), "processesLabel", "Processes")
        self.processes_spin = name_control(QSpinBox(), "processesSpin", "Processes",
                                    "1 trains inside the window; 2 or more launch a torchrun job with that many local "
                                    "processes (one per GPU on CUDA, gloo on CPU), followed live. batch_size stays the global batch.")
        self.processes_spin.setRange(1, max_processes())
        self.processes_label.setBuddy(self.processes_spin)
        self.start_button = name_control(QPushButton("Start"), "startButton", "Start training", "Start training (Ctrl+Return)")
        self.pause_button = name_control(QPushButton("Pause"), "pauseButton", "Pause or resume training", "Pause or resume (Ctrl+P)")
        self.stop_button = name_control(QPushButton("Stop"), "stopButton", "Stop training",
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
        self.budget_note = name_control(WrappingLabel(""), "budgetNote", "Budget advice")  # too short a budget, before Start
        self.budget_note.hide()
        outer.addWidget(self.budget_note)
        row.addWidget(self.start_button, 2)
        row.addWidget(self.pause_button, 1)
        row.addWidget(self.stop_button, 1)
        outer.addLayout(row)

    # ------------------------------------------------------------------ objective


    # ------------------------------------------------------------------ data
    def data_source(self) -> str:
        kind = self._data_kind
        if kind in ("textfile", "textfolder"):
            return f"text:{self._data_paths[kind]}"
        if kind in ("folder", "cifar"):
            return f"{kind}:{self._data_paths[kind]}"
        return "text:builtin" if kind == "text" else kind

    def set_data_source(self, source: str) -> None:
        """Select a source string (shapes, digits, folder:PATH, cifar:PATH, text:builtin, text:PATH) without any dialog."""
        kind, _, path = source.partition(":")
        if kind not in ("shapes", "digits", "folder", "cifar", "text"):
            kind = "shapes"
        if kind == "text" and path.strip() and path.strip() != "builtin":
            kind = "textfolder" if Path(path.strip()).expanduser().is_dir() else "textfile"
            path = path.strip()
        if kind in PICKED:
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
        """Ask for an image, CIFAR or text folder, or a .txt file; False (and no change) when the dialog is cancelled."""
        start = self._data_paths.get(kind) or str(Path.home())
        if kind == "textfile":
            path, _ = QFileDialog.getOpenFileName(self, "Open a text file (UTF-8)", start, "Text files (*.txt);;All files (*)")
        else:
            title = {"folder": "Open image folder", "textfolder": "Open a folder of .txt files (sub-folders give classes)"}.get(
                kind, "Open CIFAR folder (cifar-10-batches-py or cifar-100-python)")
            path = QFileDialog.getExistingDirectory(self, title, start)
        if not path:
            return False
        if kind in ("textfile", "textfolder"):
            self._data_paths[kind] = path
            self._data_kind = kind
            self.data_combo.setCurrentIndex(self.data_combo.findData(kind))
            self._show_data_path()
            self._changed()
        else:
            self.set_data_source(f"{kind}:{path}")
        return True

    def _on_data_activated(self, index: int) -> None:
        kind = self.data_combo.itemData(index)
        if kind in PICKED and not self.choose_folder(kind):
            self.data_combo.setCurrentIndex(self.data_combo.findData(self._data_kind))  # cancelled: keep the old source
            return
        if kind in ("shapes", "digits", "text"):
            self.set_data_source(kind)

    def _show_data_path(self) -> None:
        kind = self._data_kind
        for field, kinds in DATA_FIELDS_FOR.items():
            self.data_form.set_row_visible(field, kind in kinds)
        if kind in PICKED:
            path = self._data_paths[kind]
            self.data_path.setText(path or ("No file chosen yet." if kind == "textfile" else "No folder chosen yet."))
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
            model[field] = spin.value() if self.model_field_applies(field) else 0  # the ViT's, and the text Transformer's depth
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
            kind = self._data_kind
            what = {"folder": "a folder: choose one with Image folder...", "cifar": "a folder: choose one with CIFAR folder...",
                    "textfile": "a .txt file: choose one with Text file (.txt)...",
                    "textfolder": "a folder of .txt files: choose one with Text folder..."}.get(kind, "a path")
            raise ConfigError("data.source", f"needs {what}")
        return config_from_mapping(m)

    def _changed(self, *_args) -> None:
        if self._loading:
            return
        self.validate()
        self.configChanged.emit()


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
