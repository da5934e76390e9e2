"""The window fits a 1280×800 screen whatever it shows, and a new run starts from empty panels.

Long text (banners, the loss panel's evaluation line, the status bar) wraps or
elides instead of widening the window; the docks of visuals the last objective
drew are hidden when a run of another objective starts.  Runs are tiny (256
shapes, width 16, a dozen steps); every wait is on a signal or a condition.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from ssl_studio.config import RunConfig, config_from_mapping  # noqa: E402
from ssl_studio.engine.events import Started  # noqa: E402
from ssl_studio.gui.main_window import MainWindow  # noqa: E402

RUN_TIMEOUT_MS = 180_000
LAPTOP = (1280, 800)
LONG = "a sentence long enough to cross any screen, " * 20

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(objective: str, steps: int = 8) -> RunConfig:
    return config_from_mapping({
        "objective": {"name": objective}, "data": {"source": "shapes", "num_images": 256}, "model": {"width": 16},
        "budget": {"steps": steps}, "batch_size": 32, "probe": {"every": 4, "size": 64, "visuals_every": 4},
        "device": "cpu", "precision": "float32", "workers": 0})


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "ssl-studio.ini"), QSettings.IniFormat)
    w = MainWindow(runs_dir=tmp_path / "runs", settings=settings)
    qtbot.addWidget(w)
    w.resize(*LAPTOP)
    w.show()
    yield w
    if w.session is not None and not w.session.done:
        w.session.shutdown(10_000)


def fits(window) -> bool:
    hint = window.minimumSizeHint()
    return hint.width() <= LAPTOP[0] and hint.height() <= LAPTOP[1] - 40  # a title bar above it


def run(window, qtbot, cfg: RunConfig) -> None:
    window.experiment.load_config(cfg)
    assert window.start_run(), window.banner_text
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)


def test_the_window_fits_a_laptop_at_launch_while_training_and_after_long_text(window, qtbot):
    assert fits(window), window.minimumSizeHint()
    run(window, qtbot, tiny("clip"))
    assert window.status_eta.text() == "done"  # not the last step's "ETA 00:00"
    assert window.visual_panels.get("zeroshot") is not None  # the widest panel is docked
    assert fits(window), window.minimumSizeHint()
    width = window.minimumSizeHint().width()
    window.show_banner(LONG, "warning")
    window.loss_panel.eval_text = LONG
    window.loss_panel._update_best_label()
    window.status_step.setText(LONG)
    window.status_device.setText(LONG)
    window.embedding_panel.status.setText(LONG)
    window.runs_browser.root_label.setText(LONG)
    window.runs_dock.raise_()
    qtbot.waitUntil(lambda: window.banner_bar.isVisible())
    assert window.minimumSizeHint().width() <= width  # long text never widens the window
    assert fits(window), window.minimumSizeHint()
    assert window.status_step.text() == LONG  # elided on screen, whole in text() and the tooltip
    assert window.status_step.toolTip() == LONG


def test_a_new_run_clears_every_panel_and_hides_the_last_objectives_visuals(window, qtbot):
    run(window, qtbot, tiny("clip"))
    zeroshot = window.visual_panels["zeroshot"]
    dock = window.docks["zeroshotDock"]
    assert dock.isVisible() and zeroshot.class_lines()
    zeroshot.set_report({"confusion": [[3, 1], [0, 4]], "class_names": ["circle", "square"], "top1": 0.875})
    assert window.loss_panel.best_loss_marker.xData is not None and len(window.loss_panel.best_loss_marker.xData)

    seen: list = []
    window.experiment.load_config(tiny("simclr", steps=4))
    assert window.start_run()
    window.session.eventsReady.connect(lambda evs: seen.extend(e for e in evs if isinstance(e, Started)))
    # at once, before the new run's first step: nothing of the CLIP run is left
    assert dock.isHidden()
    assert not zeroshot.class_lines() and zeroshot.confusion is None and zeroshot.image_emb is None
    assert all(c.isHidden() for c in zeroshot.cells)
    assert not window.loss_panel.best_loss_text.isVisible()
    marker = window.loss_panel.best_loss_marker
    assert marker.xData is None or len(marker.xData) == 0  # the old run's min star is gone
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert seen and seen[0].objective == "simclr"
    assert dock.isHidden()  # SimCLR sends no zero-shot visuals: its panel stays away
    assert fits(window), window.minimumSizeHint()


def test_small_things_resume_icon_about_title_and_the_loss_png(window, tmp_path):
    from PySide6.QtGui import QColor, QImage

    from ssl_studio import __version__
    from ssl_studio.gui import theme

    play = window.action_start.icon().pixmap(16).toImage()
    window._set_state("paused")
    assert window.action_pause.text() == "Resume"
    assert window.action_pause.icon().pixmap(16).toImage() == play  # Resume shows play, not the pause bars
    window._set_state("idle")
    assert window.action_pause.icon().pixmap(16).toImage() != play
    before = theme.current()
    window.set_theme("dark")  # the run icons take the theme's text colour (the style's black ones vanished on dark grey)
    icon = window.action_start.icon().pixmap(16).toImage()
    opaque = [icon.pixelColor(x, y) for x in range(16) for y in range(16) if icon.pixelColor(x, y).alpha() > 200]
    assert opaque and all(c.lightness() > 150 for c in opaque), QColor(opaque[0]).name() if opaque else "empty"
    window.set_theme(before)
    assert __version__ in window.about_text() and window.findChild(type(window.menuBar().actions()[0].menu()), "menuHelp")
    path = tmp_path / "loss.png"
    window.loss_panel.export_png(path)
    image = QImage(str(path))
    assert image.height() == window.loss_panel.graphics.grab().height() < window.loss_panel.grab().height()


def test_the_confusion_matrix_writes_names_and_counts_only_where_they_fit(qtbot):
    import numpy as np

    from ssl_studio.gui.panels.zeroshot_panel import ZeroShotPanel

    names = ["circle", "square", "triangle", "star", "cross", "heart", "hexagon", "ring", "diamond", "crescent"]
    panel = ZeroShotPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 600)
    panel.show()
    panel.set_report({"confusion": (np.eye(10) * 120 + 3).tolist(), "class_names": names, "top1": 0.9})
    assert panel.pages.currentIndex() == 1  # the evaluation's page comes to the front
    qtbot.waitUntil(lambda: panel.plot_widget.width() > 100)
    panel._label_confusion()
    bottom = [label for _, label in panel.plot.getAxis("bottom")._tickLevels[0]]
    assert bottom == [str(k) for k in range(10)]  # ~20 px columns: numbers, not names run together
    assert not panel._confusion_texts  # three-digit counts do not fit a 20 px cell
    panel.resize(1400, 1200)
    qtbot.waitUntil(lambda: panel.plot_widget.width() > 900)
    panel._label_confusion()
    bottom = [label for _, label in panel.plot.getAxis("bottom")._tickLevels[0]]
    assert bottom[0].startswith("circ") and len(panel._confusion_texts) == 100
    panel.clear()
    assert panel.pages.currentIndex() == 0 and panel.plot.getAxis("bottom")._tickLevels is None


def test_after_stop_the_status_bar_says_stopped_not_an_eta(window, qtbot):
    window.experiment.load_config(tiny("simclr", steps=5000))
    assert window.start_run()
    qtbot.waitUntil(lambda: window.last_step is not None, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        window.stop_run()
    qtbot.waitUntil(lambda: window.state == "idle", timeout=RUN_TIMEOUT_MS)
    assert window.status_eta.text() == "stopped"
    assert window.progress.format().startswith("stopped at")
