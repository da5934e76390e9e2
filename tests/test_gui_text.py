"""The window's Experiment panel offers the text lab: Text as a data source, the LMs as objectives, a preview that says what it loaded."""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")


def test_text_is_a_data_source_and_the_preview_describes_it(panel, qtbot):
    panel.set_data_source("text:builtin")
    panel._select_objective("masked-lm")
    cfg = panel.to_config()
    assert cfg.data.source == "text:builtin" and cfg.objective.name == "masked-lm"
    assert panel.data_combo.currentData() == "text"
    panel.preview.request(cfg.data, cfg.augment, 0)
    qtbot.waitUntil(lambda: panel.preview.last_result is not None and not panel.preview.busy, timeout=60000)
    status = panel.preview.status.text()
    assert "text, no picture preview" in status and "bpe vocabulary" in status
