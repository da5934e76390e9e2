"""The Text panel's Ask box: a typed prompt or [MASK] sentence answered by the shown run and its partner, off the GUI thread."""

import os
import queue

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")

from text_runs import train_causal_and_masked  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A causal and a masked LM run, two steps each, on one .txt file, in one runs folder."""
    causal, masked, _ = train_causal_and_masked(tmp_path_factory.mktemp("gui-ask"))
    return causal, masked


def _ask(qtbot, box, text):
    from PySide6.QtCore import Qt

    box.prompt.setText(text)
    qtbot.mouseClick(box.ask_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not box.busy and box.ask_button.isEnabled(), timeout=60000)


def test_a_run_opened_from_disk_answers_a_prompt_and_a_mask_with_its_partner(window, qtbot, runs):
    causal, masked = runs
    assert window.open_run(causal)
    qtbot.waitUntil(lambda: window.visual_panels.get("text") is not None, timeout=30000)
    box = window.visual_panels["text"].ask_box
    qtbot.waitUntil(lambda: box.partner.currentData() == str(masked), timeout=30000)  # the newest finished masked LM
    _ask(qtbot, box, "read the file and")
    result = box.last_result
    assert result is not None and result["mode"] == "continue"
    assert result["causal"]["continuation"] and result["masked"]["continuation"]
    shown = box.answers.toPlainText()
    assert "Causal LM" in shown and "Masked LM" in shown and "checkpoint" in shown and "Both models answered" in box.status.text()
    _ask(qtbot, box, "read the [MASK] and write")
    assert box.last_result["mode"] == "fill"
    assert sum(p for _, p in box.last_result["masked"]["masks"][0]) <= 1
    assert "top fills" in box.answers.toPlainText() and "log-likelihood" in box.answers.toPlainText()


def test_a_refused_text_is_one_sentence_in_the_box_and_the_partner_can_be_left_out(qtbot, runs):
    from ssl_studio.engine.runs import replay_events
    from ssl_studio.gui.panels.text_panel import TextPanel

    causal, masked = runs
    panel = TextPanel()
    qtbot.addWidget(panel)
    events, _ = replay_events(causal)
    panel.handle_events(events)
    box = panel.ask_box
    qtbot.waitUntil(lambda: box.partner.count() == 2, timeout=30000)
    _ask(qtbot, box, "read the café")
    assert box.status.text().startswith("Text has characters this run's vocabulary never saw ('é')")
    box.partner.setCurrentIndex(0)  # "no masked-lm run"
    _ask(qtbot, box, "read the file")
    assert box.last_result["masked"] is None and "One model answered" in box.status.text()
    panel.shutdown()


def test_a_run_training_in_the_window_answers_with_its_live_network(qtbot, runs):
    from ssl_studio.engine.runs import replay_events
    from ssl_studio.engine.trained import load_text_model
    from ssl_studio.gui.panels.text_panel import TextPanel

    causal, masked = runs
    panel = TextPanel()
    qtbot.addWidget(panel)
    asked = []

    def live(run_dir):
        asked.append(run_dir)
        reply = queue.Queue()
        reply.put(load_text_model(masked)[0])  # the "live" network: what the training thread would hand over
        return reply

    panel.set_live_model_source(live)
    events, _ = replay_events(masked)
    panel.handle_events(events)
    box = panel.ask_box
    qtbot.waitUntil(lambda: box.objective == "masked-lm", timeout=30000)
    _ask(qtbot, box, "read the file")
    assert asked == [str(masked)]
    assert box.last_result["names"]["masked"].endswith("(live)")
    panel.shutdown()


def test_the_window_hands_the_live_request_to_the_training_thread_only_for_its_own_run(window):
    window.current_run = "runs/a"
    assert window._live_text_model("runs/a") is None  # nothing is training

    class Control:
        requests = []

        def request_visuals(self, request):
            self.requests.append(request)

    class Session:
        done = False
        in_process = True
        control = Control()

    window.session = Session()
    try:
        assert window._live_text_model("runs/b") is None
        reply = window._live_text_model("runs/a")
        assert isinstance(reply, queue.Queue) and Session.control.requests[0] == {"kind": "text_model", "reply": reply}
        window.state = "paused"  # no step to hand it over at: the checkpoint answers
        assert window._live_text_model("runs/a") is None and len(Session.control.requests) == 1
    finally:
        window.state = "idle"
        window.session = None


def test_the_runs_browser_lists_text_runs_evaluated_by_perplexity(qtbot, runs):
    from ssl_studio.gui.panels.runs_browser import RunsBrowser

    causal, masked = runs
    browser = RunsBrowser(causal.parent)  # a text run's report.json holds "perplexity" from its closing evaluation
    qtbot.addWidget(browser)
    assert browser.table.rowCount() == 2
    cells = [browser.table.item(r, c).text() for r in range(2) for c in range(browser.table.columnCount()) if browser.table.item(r, c)]
    assert any("perplexity" in text for text in cells)
