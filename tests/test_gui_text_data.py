"""Own text in the window: Text file / Text folder in the Experiment panel's data choices, chosen with a dialog,
checked by the preview with the same sentences as the command line."""

import os
import random

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")

from PySide6.QtWidgets import QFileDialog  # noqa: E402

from ssl_studio.cli import main  # noqa: E402

WORDS = "the a socket file open close read write buffer stream thread lock queue data value number".split()


def _write_text(path, n=300, seed=0):
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(n)), encoding="utf-8")
    return path


def _choose(panel, kind):
    panel._on_data_activated(panel.data_combo.findData(kind))  # what picking the combo's entry does


def test_a_text_file_is_chosen_with_a_dialog_and_previewed(panel, qtbot, tmp_path, monkeypatch):
    text = _write_text(tmp_path / "own.txt")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(text), "")))
    panel._select_objective("causal-lm")
    with qtbot.waitSignal(panel.preview.loaded, timeout=60000):
        _choose(panel, "textfile")
    assert panel.data_source() == f"text:{text}" and panel.data_combo.currentData() == "textfile"
    assert panel.valid and panel.to_config().data.source == f"text:{text}"
    assert str(text) in panel.data_path.text() and panel.data_path.isVisibleTo(panel)
    assert "text, no picture preview" in panel.preview.status.text()


def test_a_text_folder_with_one_class_is_refused_with_the_cli_sentence(panel, qtbot, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "corpus"
    _write_text(folder / "only" / "a.txt")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    with qtbot.waitSignal(panel.preview.failed, timeout=60000) as blocker:
        _choose(panel, "textfolder")
    assert panel.data_combo.currentData() == "textfolder" and panel.data_source() == f"text:{folder}"
    assert "has only one class folder" in blocker.args[0] and panel.data_error.isVisibleTo(panel)
    assert main(["train", "--objective", "causal-lm", "--data", f"text:{folder}", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert blocker.args[0] in capsys.readouterr().err  # word for word what the command line says


def test_a_binary_file_is_refused_in_one_sentence(panel, qtbot, tmp_path, monkeypatch):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\x00\x01\x02" * 10)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bad), "")))
    with qtbot.waitSignal(panel.preview.failed, timeout=60000) as blocker:
        _choose(panel, "textfile")
    assert "is a binary file" in blocker.args[0] and str(bad) in blocker.args[0]


def test_a_cancelled_dialog_keeps_the_source_and_a_config_finds_its_entry(panel, tmp_path, monkeypatch):
    panel.set_data_source("text:builtin")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    _choose(panel, "textfile")
    assert panel.data_source() == "text:builtin" and panel.data_combo.currentData() == "text"
    folder = tmp_path / "texts"
    folder.mkdir()
    panel.set_data_source(f"text:{folder}")  # a loaded config or preset: no dialog
    assert panel.data_combo.currentData() == "textfolder" and panel.data_source() == f"text:{folder}"
    panel.set_data_source(f"text:{tmp_path / 'a.txt'}")
    assert panel.data_combo.currentData() == "textfile"


def test_a_language_model_offers_width_and_depth_of_its_own_network_and_no_backbone(panel, qtbot):
    from ssl_studio.models.text_lm import DEFAULT_TEXT_DEPTH

    panel.set_data_source("text:builtin")
    panel._select_objective("masked-lm")
    depth = panel.vit_spins["depth"]
    assert not panel.backbone_combo.isVisibleTo(panel) and not panel.vit_spins["registers"].isVisibleTo(panel)
    assert not panel.vit_spins["patch_size"].isVisibleTo(panel)
    assert depth.isEnabled() and depth.specialValueText() == f"default ({DEFAULT_TEXT_DEPTH})"
    depth.setValue(2)
    assert panel.to_config().model.depth == 2
    with qtbot.waitSignal(panel.preview.loaded, timeout=60000):
        panel.preview.request(panel.to_config().data, panel.to_config().augment, 0)
    assert not panel.preview.pictures.isVisibleTo(panel)  # text has no thumbnails to show
    depth.setValue(0)
    panel.set_data_source("shapes")
    panel._select_objective("simclr")
    assert panel.backbone_combo.isVisibleTo(panel) and panel.width_spin.specialValueText() == "backbone default"
    with qtbot.waitSignal(panel.preview.loaded, timeout=60000):
        panel.preview.request(panel.to_config().data, panel.to_config().augment, 0)
    assert panel.preview.pictures.isVisibleTo(panel)
