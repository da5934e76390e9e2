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


def test_the_text_panel_shows_an_objectives_answers(qtbot):
    import torch

    from ssl_studio.engine.events import Visuals
    from ssl_studio.gui.main_window import visual_panel_classes
    from ssl_studio.models.text_lm import TextTransformer
    from ssl_studio.models.text_tokenizers import BPETokenizer
    from ssl_studio.objectives.base import ObjectiveContext
    from ssl_studio.objectives.text_lm import CausalLM, CausalLMParams, MaskedLM, MaskedLMParams

    tok = BPETokenizer.learn(["the cat sat on the mat and the dog sat on the log."] * 4, 60)
    tokens = torch.tensor([tok.encode("the cat sat on the mat and the dog")[:8]] * 2)
    panel = visual_panel_classes()["text"]()
    qtbot.addWidget(panel)
    for cls, params, fragment in ((CausalLM, CausalLMParams(), "continuation"), (MaskedLM, MaskedLMParams(), "top-3 fills")):
        obj = cls(TextTransformer(tok.vocab_size, 8, width=48, depth=1, tokenizer=tok), params, ObjectiveContext(image_size=8))
        payload = obj.visuals(tokens)["text"]
        assert len(payload["rows"]) == 2 and all(r["output"] for r in payload["rows"])
        panel.handle_events([Visuals(step=3, kind="text", arrays={}, info=payload)])
        assert fragment in panel.view.toPlainText() and "Step 3" in panel.status.text()
    assert "[MASK]" in payload["rows"][0]["input"]
