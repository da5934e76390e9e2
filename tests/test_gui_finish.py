"""Issue 25's finishing touches: the budget box, data details per source, quit confirmation, loading an opened
run's settings, and the before-Start warning for budgets too short for the objective."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from ssl_studio.config import load_config  # noqa: E402
from ssl_studio.presets import list_presets  # noqa: E402


def test_budget_after_a_preset_is_a_plain_number_beside_its_unit(panel):
    info = next(i for i in list_presets() if load_config(i.path).budget.minutes is not None)
    panel.load_config(load_config(info.path))
    kind = panel.budget_kind.currentText()
    assert kind == "minutes"
    text = panel.budget_value.text().strip()
    float(text)  # a plain number: the unit lives in the box beside it, not in the number
    assert "min" not in text
    panel.budget_kind.setCurrentIndex(panel.budget_kind.findData("steps"))
    float(panel.budget_value.text().strip())


@pytest.mark.parametrize("source, shown, hidden", [
    ("shapes", ["num_images", "held_out", "backgrounds", "fixed_background"], ["limit"]),
    ("digits", [], ["num_images", "held_out", "backgrounds", "fixed_background", "limit"]),
    ("folder:{tmp}", ["limit"], ["num_images", "held_out", "backgrounds", "fixed_background"]),
    ("cifar:{tmp}", ["limit"], ["num_images", "held_out", "backgrounds", "fixed_background"]),
])
def test_data_details_show_only_the_fields_the_source_reads(panel, tmp_path, source, shown, hidden):
    panel.set_data_source(source.format(tmp=tmp_path))
    for name in ["resolution", "val_fraction", *shown]:
        assert panel.data_form.layout_.isRowVisible(panel.data_form.widget_for(name)), name
    for name in hidden:
        assert not panel.data_form.layout_.isRowVisible(panel.data_form.widget_for(name)), name
    assert panel.valid, panel.error


# ---------------------------------------------------------------------------------------------- the window
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from ssl_studio.config import config_from_mapping  # noqa: E402


def tiny(steps: int = 400):
    return config_from_mapping({
        "objective": {"name": "simclr"}, "data": {"source": "shapes", "num_images": 256}, "model": {"width": 16},
        "budget": {"steps": steps}, "batch_size": 32, "probe": {"every": 1000, "size": 64, "visuals_every": 0},
        "device": "cpu", "precision": "float32",
    })


def answer_quit_question(button_text: str, seen: list[str]) -> None:
    """Click ``button_text`` in the quit question as soon as it is up (it runs its own event loop)."""
    def poll():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == "quitQuestion":
            seen.append(box.text())
            for b in box.buttons():
                if b.text().replace("&", "") == button_text:
                    b.click()
                    return
        QTimer.singleShot(20, poll)
    QTimer.singleShot(0, poll)


def test_quitting_during_a_run_asks_and_cancel_keeps_window_and_run(window, qtbot):
    window.confirm_quit = True
    window.experiment.load_config(tiny())
    assert window.start_run(), window.banner_text
    session = window.session
    seen: list[str] = []
    answer_quit_question("Cancel", seen)
    assert not window.close()
    assert seen == ["A run is training; stop it (its checkpoint is saved) and quit?"]
    assert window.isVisible() and window.running and window.session is session and window.state != "stopping"

    answer_quit_question("Quit", seen)
    closed_at_once = window.close()
    assert len(seen) == 2
    if not closed_at_once:
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=120_000)
    assert session.done


def test_closing_an_idle_window_asks_nothing(window):
    window.confirm_quit = True
    assert window.close()  # no run: no question (a modal box here would never be answered)


def test_an_opened_run_offers_to_load_its_settings_into_the_form(window, qtbot, tmp_path):
    from PySide6.QtCore import Qt

    from ssl_studio.config import load_config, save_config

    cfg = config_from_mapping({
        "objective": {"name": "simclr", "temperature": 0.3}, "data": {"source": "shapes", "num_images": 128},
        "model": {"width": 8}, "budget": {"steps": 3}, "batch_size": 16, "device": "cpu", "precision": "float32"})
    run_dir = tmp_path / "runs" / "a-run"  # a run folder as far as opening it needs: its config and its records
    run_dir.mkdir(parents=True)
    save_config(cfg, run_dir / "config.toml")
    (run_dir / "metrics.jsonl").write_text("")
    window.experiment._select_objective("byol")
    assert window.open_run(run_dir)
    window._stop_tail()
    button = window.banner.action_button
    assert window.banner_bar.isVisible() and button.isVisible() and button.text() == "Load its settings into the form"
    assert window.minimumSizeHint().width() <= 1280
    qtbot.mouseClick(button, Qt.LeftButton)
    form = window.experiment.to_config()
    saved = load_config(run_dir / "config.toml")
    assert form.objective.name == "simclr" and form.budget.steps == saved.budget.steps == 3
    assert form.model.width == 8 and form.data.num_images == 128
    assert window.session is None and window.state == "idle"  # loaded, not started
    assert not window.banner_bar.isVisible()


# ---------------------------------------------------------------------------------------------- budget advice
def dino_vit(panel, minutes: float):
    from ssl_studio.presets import list_presets

    panel.load_config(load_config(next(i for i in list_presets() if i.name == "dino-vit").path))
    panel.budget_kind.setCurrentIndex(panel.budget_kind.findData("minutes"))
    panel.budget_value.setValue(minutes)
    assert panel.config.model.backbone == "vit" and panel.config.budget.minutes == minutes


def test_a_budget_too_short_for_dino_on_the_vit_says_so_before_start(panel):
    from ssl_studio.gui.budget_advice import rate_key

    dino_vit(panel, 3)
    panel.budget_advisor.rates[rate_key(panel.config)] = 128 * 25 / 60  # 25 steps a minute at batch 128
    panel.budget_value.setValue(2)
    assert panel.budget_note.isVisibleTo(panel)
    assert panel.budget_note.text() == ("DINO on the ViT needs about 600 steps to show learning; 2 minutes here give "
                                        "about 50; try 24 minutes.")
    panel.budget_value.setValue(30)  # 750 steps: enough
    assert not panel.budget_note.isVisibleTo(panel)
    panel.budget_value.setValue(2)
    panel._select_objective("simclr")  # no declared minimum: no advice
    panel.backbone_combo.setCurrentIndex(panel.backbone_combo.findData("convnet"))
    assert not panel.budget_note.isVisibleTo(panel)


def test_an_unknown_rate_is_measured_off_the_gui_thread(panel, qtbot, monkeypatch, tmp_path):
    import threading

    from ssl_studio.gui import budget_advice

    threads = []

    def fake_rate(cfg, repeats=2):
        threads.append(threading.current_thread())
        return 128 * 10 / 60  # 10 steps a minute

    monkeypatch.setattr(budget_advice, "measure_rate", fake_rate)
    panel.runs_dir = tmp_path  # no earlier run to read a rate from
    panel.budget_advisor._measure_timer.setInterval(0)
    dino_vit(panel, 5)
    qtbot.waitUntil(lambda: panel.budget_note.isVisibleTo(panel), timeout=10_000)
    assert "5 minutes here give about 50; try 60 minutes." in panel.budget_note.text()
    assert threads and threads[0] is not threading.main_thread()
