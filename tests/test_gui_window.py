"""The lab window end to end: start, pause, resume, stop, close, failures, run folders, presets, export.

Runs are tiny (256 shapes, a width-16 ConvNet, batch 32, a few dozen steps) so
the file finishes in a couple of minutes on 2 CPU cores.  Every wait is on a
signal or a condition, never a fixed sleep.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QLabel, QPushButton, QWidget  # noqa: E402

from ssl_studio.config import RunConfig, config_from_mapping, load_config  # noqa: E402
from ssl_studio.engine.events import Failed, Finished, Probe, Started, Step  # noqa: E402
from ssl_studio.engine.trainer import Trainer  # noqa: E402
from ssl_studio.gui import theme  # noqa: E402
from ssl_studio.gui.main_window import MainWindow  # noqa: E402
from ssl_studio.presets import list_presets  # noqa: E402

RUN_TIMEOUT_MS = 180_000


def tiny(steps: int = 12, **over) -> RunConfig:
    mapping = {
        "objective": {"name": "simclr"},
        "data": {"source": "shapes", "num_images": 256},
        "model": {"width": 16},
        "budget": {"steps": steps},
        "batch_size": 32,
        "probe": {"every": 4, "size": 64, "visuals_every": 0},
        "device": "cpu",
        "precision": "float32",
    }
    mapping.update(over)
    return config_from_mapping(mapping)


@pytest.fixture
def settings(tmp_path):
    """Settings in tmp_path, so tests never read or write the user's window layout."""
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    return QSettings(str(tmp_path / "ssl-studio.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, tmp_path, settings):
    w = MainWindow(runs_dir=tmp_path / "runs", settings=settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.session is not None and not w.session.done:
        w.session.shutdown(10_000)


class Recorder:
    """Keeps every batch the window dispatched, in order."""

    def __init__(self, session):
        self.events: list = []
        self.order: list[str] = []
        session.eventsReady.connect(self.on_events)
        session.dataReady.connect(lambda _d: self.order.append("data"))

    def on_events(self, events):
        self.events.extend(events)
        self.order.extend(type(e).__name__ for e in events)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def start(window, qtbot, cfg) -> Recorder:
    window.experiment.load_config(cfg)
    assert window.experiment.valid, window.experiment.error
    qtbot.mouseClick(window.experiment.start_button, Qt.LeftButton)
    assert window.session is not None, window.banner_text
    return Recorder(window.session)


def test_window_opens_ready_to_train(window):
    assert window.experiment.objective_name() == "simclr"
    assert window.experiment.data_source() == "shapes"
    assert window.findChild(QPushButton, "startButton").isEnabled()
    assert not window.findChild(QPushButton, "stopButton").isEnabled()
    for name in ("statusStep", "statusEpoch", "statusRate", "statusEta", "statusDevice", "progressBar"):
        w = window.findChild(QWidget, name)
        assert w is not None and w.accessibleName(), name
    assert QKeySequence("Ctrl+Return") in window.action_start.shortcuts()
    assert QKeySequence("Space") in window.action_pause.shortcuts()
    assert QKeySequence("Ctrl+.") in window.action_stop.shortcuts()
    docks = {d.objectName() for d in window.docks.values()}
    assert docks == {"experimentDock", "lossDock", "embeddingDock", "spectrumDock", "stepMetricsDock", "runsDock"}


def test_a_run_feeds_every_panel_and_finishes(window, qtbot, tmp_path):
    rec = start(window, qtbot, tiny(steps=12))
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert rec.order.index("data") < rec.order.index("Started")  # thumbnails are ready before the first draw
    assert len(rec.of(Step)) == 12 and rec.of(Probe)
    assert rec.of(Finished)[0].status == "completed"
    for panel in window.panels:
        if panel is window.step_metrics_panel and not panel.specs:  # the objective declares no step metrics: it says so
            assert "simclr reports no step metrics" in panel.message.text()
            continue
        header, rows = panel.table()
        assert rows, f"{panel.title} received no data"
    assert window.loss_panel.imageset is not None
    assert window.status_step.text() == "step 12 / 12"
    assert window.progress.value() == 1000
    assert window.state == "idle" and window.experiment.start_button.isEnabled()
    run_dir = Path(rec.of(Started)[0].run_dir)
    assert run_dir.parent == tmp_path / "runs" and (run_dir / "checkpoints" / "last.pt").exists()
    assert not window.session.thread.isRunning()
    assert window.panel_errors == {}


def test_pause_resume_stop(window, qtbot):
    rec = start(window, qtbot, tiny(steps=400))
    qtbot.waitUntil(lambda: bool(rec.of(Step)), timeout=RUN_TIMEOUT_MS)
    qtbot.mouseClick(window.experiment.pause_button, Qt.LeftButton)
    assert window.experiment.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: window.session.trainer_paused, timeout=RUN_TIMEOUT_MS)
    run_dir = Path(window.session.run_dir)
    assert (run_dir / "checkpoints" / "last.pt").exists()  # pausing saves a checkpoint
    window.session.flush()
    paused_at = len(rec.of(Step))
    for _ in range(5):  # the trainer waits: nothing new arrives however often we drain
        QApplication.processEvents()
        window.session.flush()
    assert len(rec.of(Step)) == paused_at
    assert window.session.control.waiting.is_set()

    window.toggle_pause()  # resume
    assert window.state == "running"
    qtbot.waitUntil(lambda: len(rec.of(Step)) > paused_at, timeout=RUN_TIMEOUT_MS)

    window.stop_run()
    assert window.state == "stopping"
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    finished = rec.of(Finished)
    assert finished and finished[0].status == "stopped"
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert not window.session.thread.isRunning()
    assert window.state == "idle" and window.experiment.start_button.isEnabled()


def test_closing_during_training_ends_the_thread(window, qtbot, qtlog):
    """Close stops the run, which saves a checkpoint; the thread ends before the window goes.

    ``close()`` waits up to 2 s; when the trainer's final probe and k-NN take longer
    (a loaded machine, a big data set) the window stays up with a note and closes
    itself when the thread has ended.  Either way no thread outlives the window.
    """
    rec = start(window, qtbot, tiny(steps=400))
    qtbot.waitUntil(lambda: bool(rec.of(Step)), timeout=RUN_TIMEOUT_MS)
    session = window.session
    closed_at_once = window.close()
    if not closed_at_once:
        assert "closes by itself" in window.statusBar().currentMessage()
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=RUN_TIMEOUT_MS)
    assert session.done and not session.thread.isRunning()
    assert any(isinstance(e, Finished) and e.status == "stopped" for e in rec.events)
    assert (Path(session.run_dir) / "checkpoints" / "last.pt").exists()
    assert not [r for r in qtlog.records if "Destroyed while thread" in r.message]


def test_a_failure_shows_a_banner_and_the_window_keeps_working(window, qtbot, tmp_path):
    missing = tmp_path / "no-such-folder"
    rec = start(window, qtbot, tiny(data={"source": f"folder:{missing}", "num_images": 256}))
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    failed = rec.of(Failed)
    assert failed, rec.order
    assert window.banner_bar.isVisible()
    assert failed[0].message in window.banner_text
    assert window.banner.property("level") == "error"
    assert window.state == "idle"
    # The message names data.source, so the data control is marked too.
    if failed[0].message.startswith("data.source"):
        assert window.experiment.data_combo.property("invalid") is True
    # A new run starts and the banner goes away.
    rec2 = start(window, qtbot, tiny(steps=4))
    assert not window.banner_bar.isVisible()
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert rec2.of(Finished) and rec2.of(Finished)[0].status == "completed"


def test_invalid_field_blocks_start(window, qtbot):
    window.experiment.lr_edit.setText("-1")
    assert not window.experiment.start_button.isEnabled()
    assert not window.action_start.isEnabled()
    assert "optim.lr must be > 0" in window.findChild(QLabel, "errorLabel").text()
    assert window.start_run() is False and window.session is None
    window.experiment.lr_edit.setText("")
    assert window.action_start.isEnabled()


@pytest.fixture(scope="module")
def headless_run(tmp_path_factory):
    """A run folder written without any window, as the CLI writes it."""
    out = tmp_path_factory.mktemp("headless")
    cfg = tiny(steps=8, out=str(out))
    result = Trainer(cfg).run()
    assert result.ok, result.message
    return result.run_dir


def test_open_a_run_folder_written_headless(window, headless_run):
    assert window.open_run(headless_run)
    header, rows = window.loss_panel.table()
    assert len(rows) >= 8
    assert window.spectrum_panel.table()[1] and window.embedding_panel.table()[1]
    assert not window.tailing  # finished: nothing to follow
    assert "replay" in window.status_device.text()
    assert window.status_step.text() == "step 8 / 8"


def test_open_a_live_run_folder_follows_it(window, qtbot, headless_run, tmp_path):
    live = tmp_path / "live-run"
    (live / "snapshots").mkdir(parents=True)
    for f in (headless_run / "snapshots").iterdir():
        (live / "snapshots" / f.name).write_bytes(f.read_bytes())
    (live / "config.toml").write_text((headless_run / "config.toml").read_text())
    lines = (headless_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    first_probe_after_steps = next(i for i, line in enumerate(lines) if '"event":"step"' in line) + 3
    (live / "metrics.jsonl").write_text("".join(lines[:first_probe_after_steps]))
    assert window.open_run(live)
    assert window.tailing
    before = len(window.loss_panel.table()[1])
    with open(live / "metrics.jsonl", "a") as fh:
        fh.write("".join(lines[first_probe_after_steps:]))
    qtbot.waitUntil(lambda: not window.tailing, timeout=10_000)
    assert len(window.loss_panel.table()[1]) > before


def test_open_a_folder_that_is_not_a_run(window, tmp_path):
    assert not window.open_run(tmp_path)
    assert "not a run folder" in window.banner_text


def test_rerun_fills_the_form(window, headless_run):
    assert window.rerun(str(headless_run / "config.toml"))
    cfg = load_config(headless_run / "config.toml")
    assert window.experiment.to_config().budget.steps == cfg.budget.steps == 8
    assert window.experiment.to_config().model.width == 16


def test_export_writes_files(window, headless_run, tmp_path):
    window.open_run(headless_run)
    for panel in window.panels:
        for fmt in ("png", "csv", "svg"):
            path = tmp_path / "export" / f"{type(panel).__name__}.{fmt}"
            ok = window.export_panel(panel, fmt, path)
            if fmt == "svg" and not ok:
                continue  # a panel without a vector plot says so in the banner
            assert ok, window.banner_text
            assert path.exists() and path.stat().st_size > 0, path


def test_presets_menu_and_loading(window):
    presets = list_presets()
    titles = {a.text() for a in window.presets_menu.actions()}
    for info in presets:
        assert info.title in titles
        assert window.preset_actions[info.name].toolTip() == info.description
    sections = [a.text() for a in window.presets_menu.actions() if a.isSeparator() and a.text()]
    assert sections[0] == "Healthy"
    supervised = next(p for p in presets if p.name == "supervised")
    window.preset_actions["supervised"].trigger()
    assert window.experiment.objective_name() == "supervised"
    assert supervised.description in window.banner_text


def test_save_as_preset(window, tmp_path):
    window.experiment.findChild(QCheckBox, "ablation_no_projector").setChecked(True)
    path = tmp_path / "mine.toml"
    assert window.save_preset(path, "My broken SimCLR", "No projector: accuracy drops.")
    cfg = load_config(path)
    assert cfg.ablations == ["no_projector"]
    import tomllib

    header = tomllib.loads(path.read_text())["preset"]
    assert header == {"title": "My broken SimCLR", "group": "broken", "description": "No projector: accuracy drops."}


def test_layout_and_theme_are_remembered(qtbot, tmp_path, settings):
    first = MainWindow(runs_dir=tmp_path / "runs", settings=settings)
    qtbot.addWidget(first)
    first.show()
    first.set_theme("dark")
    first.runs_dock.hide()
    first.close()
    second = MainWindow(runs_dir=tmp_path / "runs", settings=settings)
    qtbot.addWidget(second)
    second.show()
    assert not second.runs_dock.isVisible()
    assert second.theme_actions["dark"].isChecked()
    assert settings.value("theme") == "dark"
    second.reset_layout()
    assert second.runs_dock.isVisibleTo(second) or second.runs_dock.toggleViewAction().isChecked()
    second.set_theme("light")
    assert theme.current() == "light"


def test_window_controls_are_named(window):
    for cls in (QPushButton, QComboBox, QCheckBox):
        for w in window.findChildren(cls):
            if w.objectName().startswith("qt_"):
                continue
            assert w.objectName(), f"unnamed {cls.__name__} {getattr(w, 'text', lambda: '')()}"
    for name in ("toolStart", "toolPause", "toolStop", "failureBanner", "failureMessage", "bannerClose"):
        w = window.findChild(QWidget, name)
        assert w is not None and w.accessibleName(), name


def test_app_main_opens_the_window_and_returns(qtbot, tmp_path, settings):
    """``ssl-studio gui`` path: main() names the app, shows SimCLR on shapes, returns exec()'s status."""
    from PySide6.QtCore import QTimer

    from ssl_studio.gui import app as app_module

    seen = {}

    def close_it():
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen["windows"] = windows
        if windows:
            seen["objective"] = windows[0].experiment.objective_name()
            seen["icon"] = not QApplication.windowIcon().isNull()
            for w in windows:
                w.close()
        QApplication.instance().exit(0)

    QTimer.singleShot(0, close_it)
    assert app_module.main(runs_dir=tmp_path / "runs") == 0
    assert seen["windows"] and seen["objective"] == "simclr" and seen["icon"]
    assert QApplication.applicationName() == "SSL Studio"


def test_a_live_clip_run_gives_the_zero_shot_panel_its_text_tower(window, qtbot):
    """Edited prompts re-score against the running model's own text tower, not a stand-in."""
    rec = start(window, qtbot, tiny(steps=8, objective={"name": "clip"}, probe={"every": 4, "size": 64, "visuals_every": 4}))
    qtbot.waitUntil(lambda: window.visual_panels.get("zeroshot") is not None, timeout=RUN_TIMEOUT_MS)
    panel = window.visual_panels["zeroshot"]
    # a new picture panel comes to the front of the embedding's tab group (a tab behind is moved off screen)
    qtbot.waitUntil(lambda: not panel.visibleRegion().isEmpty())
    assert window.embedding_dock.widget().visibleRegion().isEmpty()
    qtbot.waitUntil(lambda: panel.scorer is not None and panel.scorer.ready and panel.image_emb is not None, timeout=RUN_TIMEOUT_MS)
    assert panel.scorer.objective is window.session.worker.trainer.objective
    panel.set_prompts(class_names=["circle", "square", "red"])
    assert panel.probs.shape[1] == 3 and panel.scored_names == ["circle", "square", "red"]
    with qtbot.waitSignal(window.session.finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert rec.of(Finished)[0].status == "completed" and window.panel_errors == {}


def test_cyclic_garbage_is_collected_in_the_gui_thread_while_training(window, qtbot):
    """A collection started by the training thread would destroy Qt objects there and can deadlock
    the window (seen: a closed window's QMenu freed during a probe); main_thread_gc keeps it here."""
    import gc
    import threading

    from ssl_studio.gui.main_thread_gc import main_thread_collection

    freed_in_gui_thread: list[bool] = []

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):
            freed_in_gui_thread.append(threading.current_thread() is threading.main_thread())

    start(window, qtbot, tiny(steps=400, probe={"every": 50, "size": 64, "visuals_every": 0}))
    session = window.session
    assert main_thread_collection.active and not gc.isenabled()
    for _ in range(50):
        Cycle()
    qtbot.waitUntil(lambda: len(freed_in_gui_thread) == 50, timeout=RUN_TIMEOUT_MS)
    assert session.running, "the run ended before its garbage was collected: lengthen it"
    assert all(freed_in_gui_thread)
    session.stop()
    qtbot.waitUntil(lambda: session.done, timeout=RUN_TIMEOUT_MS)
    assert not main_thread_collection.active and gc.isenabled()
