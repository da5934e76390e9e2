"""The experiment panel: generated forms, validation at the field, presets, round trips (no training)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import (  # noqa: E402
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ssl_studio.config import ABLATIONS, RunConfig, config_from_mapping, config_to_mapping, load_config  # noqa: E402
from ssl_studio.engine.trainer import DEFAULT_MINUTES  # noqa: E402
from ssl_studio.objectives import all_objectives, get_objective  # noqa: E402
from ssl_studio.params import describe  # noqa: E402
from ssl_studio.presets import list_presets  # noqa: E402


def same_run(a: RunConfig, b: RunConfig) -> bool:
    """Equal configurations; objective tables compare as parsed Params (all fields vs. only the changed ones)."""
    ma, mb = config_to_mapping(a), config_to_mapping(b)
    for m in (ma, mb):  # no budget means the trainer's default, which the form shows explicitly
        m["budget"] = m.get("budget") or {"minutes": DEFAULT_MINUTES}
    oa, ob = ma.pop("objective"), mb.pop("objective")
    cls = get_objective(oa["name"])
    return ma == mb and oa["name"] == ob["name"] and cls.parse_params({k: v for k, v in oa.items() if k != "name"}) == \
        cls.parse_params({k: v for k, v in ob.items() if k != "name"})


def test_defaults_are_simclr_on_shapes_and_valid(panel):
    assert panel.objective_name() == "simclr"
    assert panel.data_source() == "shapes"
    assert panel.valid, panel.error
    assert panel.start_button.isEnabled()
    cfg = panel.to_config()
    # The form reproduces the defaults exactly (4/3 stays 4/3 through the spin box).
    assert config_to_mapping(cfg)["augment"] == config_to_mapping(RunConfig())["augment"]


def test_objectives_grouped_by_family_with_description(panel):
    combo = panel.objective_combo
    names = [combo.itemData(i) for i in range(combo.count()) if combo.itemData(i)]
    assert set(names) == set(all_objectives())
    headers = [combo.itemText(i) for i in range(combo.count()) if not combo.itemData(i)]
    assert headers and headers[0] == "Contrastive"
    cls = all_objectives()["simclr"]
    assert panel.description.text() == cls.description


@pytest.mark.parametrize("name", sorted(all_objectives()))
def test_param_form_is_generated_from_params(panel, name):
    cls = all_objectives()[name]
    panel._select_objective(name)
    for spec in describe(cls.Params):
        w = panel.findChild(QWidget, f"param_{spec.name}")
        assert w is not None and w is panel.param_form.widget_for(spec.name)
        assert spec.help in w.toolTip()
        assert w.accessibleName()
        if isinstance(w, QAbstractSpinBox) and spec.min is not None:
            assert w.minimum() == pytest.approx(spec.min)
        if isinstance(w, (QSpinBox, QDoubleSpinBox)) and spec.unit:
            assert spec.unit in w.suffix()
        if spec.choices and isinstance(w, QComboBox):
            assert [w.itemData(i) for i in range(w.count()) if w.itemData(i) is not None] == list(spec.choices)
    honoured = [a for a in ABLATIONS if a in cls.ablation_switches()]
    boxes = [panel.findChild(QCheckBox, f"ablation_{a}") for a in honoured]
    assert all(b is not None for b in boxes)
    assert [b.toolTip() for b in boxes] == [ABLATIONS[a] for a in honoured]
    assert panel.valid, panel.error  # every objective's defaults validate


def test_out_of_range_param_blocks_start_and_names_the_field(panel, qtbot):
    temperature = panel.param_form.widget_for("temperature")
    temperature.setValue(0.0)  # declared min_exclusive 0
    assert not panel.valid
    assert not panel.start_button.isEnabled()
    assert panel.error_label.isVisible()
    assert panel.error_label.text().startswith("objective.temperature must be > 0")
    assert temperature.property("invalid") is True
    temperature.setValue(0.5)
    assert panel.valid and panel.start_button.isEnabled()
    assert temperature.property("invalid") is False
    assert not panel.error_label.isVisible()


@pytest.mark.parametrize("text,message", [("-0.1", "optim.lr must be > 0, got -0.1"), ("fast", "optim.lr must be a number, got 'fast'")])
def test_bad_learning_rate_is_marked(panel, text, message):
    panel.lr_edit.setText(text)
    assert not panel.start_button.isEnabled()
    assert panel.error_label.text() == message  # the exact sentence the CLI prints
    assert panel.lr_edit.property("invalid") is True
    panel.lr_edit.setText("")
    assert panel.valid
    assert "per 256 images" in panel.lr_edit.placeholderText()  # the recipe is shown when blank


def test_advanced_augment_error_marks_its_field(panel):
    panel.augment_form.widget_for("crop_scale_min").setValue(0.9)
    panel.augment_form.widget_for("crop_scale_max").setValue(0.5)
    assert panel.error.startswith("augment.crop_scale_min must be <=")
    assert panel.augment_form.widget_for("crop_scale_min").property("invalid") is True
    assert panel.sections["augment"].content.isVisibleTo(panel)  # unfolded to show the marked field


def test_ablations_follow_the_objective(panel):
    panel._select_objective("simclr")
    box = panel.findChild(QCheckBox, "ablation_no_projector")
    box.setChecked(True)
    assert panel.to_config().ablations == ["no_projector"]
    panel._select_objective("supervised")
    assert panel.findChild(QCheckBox, "ablation_no_projector") is None or not panel.findChild(QCheckBox, "ablation_no_projector").isVisible()
    assert "no_projector" not in panel.to_config().ablations


def test_load_config_round_trip(panel):
    cfg = config_from_mapping({
        "objective": {"name": "simclr", "temperature": 0.35, "proj_dim": 64},
        "data": {"source": "shapes", "num_images": 300, "resolution": 24},
        "model": {"width": 24}, "budget": {"steps": 17}, "batch_size": 48, "optim": {"lr": 0.05, "grad_clip": 1.0},
        "probe": {"every": 5}, "seed": 3, "device": "cpu", "ablations": ["no_temperature"], "precision": "float32",
        "name": "my-run",
    })
    panel.load_config(cfg)
    assert panel.findChild(QDoubleSpinBox, "param_temperature").value() == pytest.approx(0.35)
    assert panel.budget_kind.currentData() == "steps" and panel.budget_value.value() == 17
    assert panel.lr_edit.text() == "0.05"
    assert panel.findChild(QCheckBox, "ablation_no_temperature").isChecked()
    assert panel.kept_label.isVisible() and "precision" in panel.kept_label.text()
    out = panel.to_config()
    assert same_run(out, cfg)


def test_every_preset_fills_the_form(panel):
    presets = list_presets()
    assert presets
    for info in presets:
        cfg = load_config(info.path)
        panel.load_config(cfg)
        assert panel.objective_name() == cfg.objective.name
        assert panel.valid, f"{info.name}: {panel.error}"
        assert same_run(panel.to_config(), cfg)


def test_folder_source_without_a_folder_is_refused(panel, tmp_path):
    panel.set_data_source("folder:")
    assert not panel.valid and panel.error.startswith("data.source needs a folder")
    panel.set_data_source(f"folder:{tmp_path}")
    assert panel.valid
    assert panel.data_path.isVisibleTo(panel) and str(tmp_path) in panel.data_path.text()
    panel.set_data_source("shapes")
    assert panel.data_source() == "shapes"


def test_preview_shows_samples_and_views(panel, qtbot):
    panel.set_data_source("shapes")
    panel.preview.request(panel.to_config().data, panel.to_config().augment, 0)
    qtbot.waitUntil(lambda: panel.preview.last_result is not None and not panel.preview.busy, timeout=60000)
    result = panel.preview.last_result
    assert result["originals"].shape[0] == len(result["views"][0]) > 0
    assert panel.preview.cells[1][0].pixmap() is not None and not panel.preview.cells[1][0].pixmap().isNull()


def test_preview_reports_a_bad_folder(panel, qtbot, tmp_path):
    missing = tmp_path / "nope"
    with qtbot.waitSignal(panel.preview.failed, timeout=60000) as blocker:
        panel.set_data_source(f"folder:{missing}")
    assert str(missing) in blocker.args[0] or "folder" in blocker.args[0]
    assert panel.data_error.isVisibleTo(panel)


def test_every_control_is_named(panel):
    inputs = (QComboBox, QSpinBox, QDoubleSpinBox, QLineEdit, QCheckBox, QPushButton)
    for cls in inputs:
        for w in panel.findChildren(cls):
            if isinstance(w.parent(), (QAbstractSpinBox, QComboBox)):
                continue  # the line edit inside a spin box belongs to it
            assert w.objectName(), f"unnamed {cls.__name__}: {w.text() if hasattr(w, 'text') else ''}"
            assert w.accessibleName(), f"{w.objectName()} has no accessible name"
    for name in ("objectiveCombo", "backboneCombo", "dataCombo", "budgetKindCombo", "budgetValue", "batchSizeSpin",
                 "lrEdit", "seedSpin", "deviceCombo", "errorLabel", "startButton", "pauseButton", "stopButton"):
        w = panel.findChild(QWidget, name)
        assert w is not None and w.accessibleName(), name


def test_the_panel_says_where_data_and_objective_adjust_the_augmentation(panel):
    panel.load_config(config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": "shapes"}}))
    assert panel.valid
    note = panel.augment_note.text()
    assert not panel.augment_note.isHidden() and "crop scale min 0.85 (the shapes data)" in note
    panel.load_config(config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": "digits"}}))
    assert panel.augment_note.isHidden() and panel.augment_note.text() == ""
    panel.load_config(config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": "shapes"},
                                           "augment": {"crop_scale_min": 0.3}}))
    assert panel.augment_note.isHidden()  # the user's own value is used as is


def test_dino_settings_follow_the_backbone_unless_the_user_changed_them(panel):
    from ssl_studio.engine.build import objective_params, resolved_optim

    panel._select_objective("dino")
    combo = panel.backbone_combo
    combo.setCurrentIndex(combo.findData("convnet"))
    out_dim = panel.findChild(QSpinBox, "param_out_dim")
    crops = panel.findChild(QSpinBox, "param_local_crops")
    bn = panel.findChild(QCheckBox, "param_use_bn_in_head")
    assert (out_dim.value(), crops.value(), bn.isChecked()) == (128, 0, True)
    assert "lars" in panel.lr_edit.placeholderText() and not panel.recipe_note.isHidden()
    # the window and `ssl-studio train --objective dino` run the same thing
    cli = config_from_mapping({"objective": {"name": "dino"}})
    assert objective_params(panel.to_config()) == objective_params(cli)
    assert resolved_optim(panel.to_config()) == resolved_optim(cli)

    combo.setCurrentIndex(combo.findData("vit"))
    assert (out_dim.value(), crops.value(), bn.isChecked()) == (1024, 2, False)
    assert "adamw" in panel.lr_edit.placeholderText() and panel.recipe_note.isHidden()
    out_dim.setValue(300)  # the user's own choice
    combo.setCurrentIndex(combo.findData("convnet"))
    assert (out_dim.value(), crops.value(), bn.isChecked()) == (300, 0, True)

    # a run made by the CLI without settings shows what it ran
    panel.load_config(cli)
    shown = [panel.findChild(kind, f"param_{name}") for kind, name in
             ((QSpinBox, "out_dim"), (QSpinBox, "local_crops"), (QCheckBox, "use_bn_in_head"))]
    assert (shown[0].value(), shown[1].value(), shown[2].isChecked()) == (128, 0, True)
    assert objective_params(panel.to_config()) == objective_params(cli)


def test_start_from_a_run_is_typed_chosen_and_loaded(panel, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QToolButton

    from ssl_studio.gui import experiment_panel as module

    edit = panel.findChild(QLineEdit, "initFromEdit")
    assert edit.text() == "" and panel.to_config().model.init_from == ""
    edit.setText(str(tmp_path / "mae-run"))
    assert panel.valid, panel.error
    assert panel.to_config().model.init_from == str(tmp_path / "mae-run")
    # the button asks for a folder, starting in the runs folder; a cancelled dialog changes nothing
    panel.runs_dir = tmp_path
    edit.clear()
    asked = []
    monkeypatch.setattr(module.QFileDialog, "getExistingDirectory", lambda parent, title, start: asked.append(start) or "")
    panel.findChild(QToolButton, "initFromButton").click()
    assert asked == [str(tmp_path)] and panel.to_config().model.init_from == ""
    monkeypatch.setattr(module.QFileDialog, "getExistingDirectory", lambda parent, title, start: str(tmp_path / "chosen"))
    assert panel.choose_start_run()
    assert panel.to_config().model.init_from == str(tmp_path / "chosen")
    # a failed start names the field, and the panel knows which control that is
    assert panel.widget_for_field("model.init_from") is edit
    # re-running a run that started from another fills the field back in
    cfg = config_from_mapping({"objective": {"name": "dino"}, "model": {"backbone": "vit", "init_from": "/runs/mae"}})
    panel.load_config(cfg)
    assert edit.text() == "/runs/mae" and same_run(panel.to_config(), cfg)


@pytest.mark.parametrize("name, shown_at_0, chosen, loaded", [("registers", "none", 4, 2), ("depth", "default (6)", 2, 3),
                                                              ("patch_size", "default (side / 8)", 8, 4)])
def test_registers_and_depth_are_vit_settings(panel, name, shown_at_0, chosen, loaded):
    spin = panel.findChild(QSpinBox, f"{name}Spin")
    combo = panel.backbone_combo
    combo.setCurrentIndex(combo.findData("convnet"))
    assert not spin.isEnabled() and getattr(panel.to_config().model, name) == 0
    combo.setCurrentIndex(combo.findData("vit"))
    assert spin.isEnabled() and spin.text() == shown_at_0
    spin.setValue(chosen)
    assert panel.valid, panel.error
    assert getattr(panel.to_config().model, name) == chosen
    # back on the ConvNet the value stays in the box but not in the run, which would refuse it
    combo.setCurrentIndex(combo.findData("convnet"))
    assert not spin.isEnabled() and getattr(panel.to_config().model, name) == 0 and panel.valid
    cfg = config_from_mapping({"objective": {"name": "dino"}, "model": {"backbone": "vit", name: loaded}})
    panel.load_config(cfg)
    assert spin.isEnabled() and spin.value() == loaded and same_run(panel.to_config(), cfg)
