"""The window over a runs folder of damaged runs (issue 22, items 3 and 8): it opens, lists every run with one
sentence saying what is wrong, opens each without raising, and resumes an interrupted run.

One window is built over one runs folder holding every damage at once (every file of a run folder truncated,
zeroed, garbage, missing, or a folder in its place): a damaged run must not stop the window from opening, and
building the window once keeps the battery fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from run_damage import DAMAGES, FILES, SPECIALS, copy_run, damage, made_run, put_special  # noqa: E402,F401 - made_run is a fixture
from ssl_studio.engine.events import Started  # noqa: E402
from ssl_studio.engine.runs import read_metrics  # noqa: E402
from ssl_studio.gui.main_window import MainWindow  # noqa: E402

pytestmark = pytest.mark.reliability

CASES = [(name, how) for name in FILES for how in DAMAGES]
SPECIAL_CASES = [(name, what) for name in FILES for what in SPECIALS]  # a named pipe or /dev/zero in place of the file


def case_dir(name: str, how: str) -> str:
    return f"{name.replace('/', '_')}-{how}"


@pytest.fixture(scope="module")
def runs_root(made_run, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for name, how in CASES:
        damage(copy_run(made_run, root, case_dir(name, how)), name, how)
    for name, what in SPECIAL_CASES:
        run = copy_run(made_run, root, case_dir(name, what))
        put_special(run / name, what)
    interrupted = copy_run(made_run, root, "interrupted")  # killed after its last checkpoint: no finished record
    kept = [r for r in read_metrics(interrupted)[0] if r["event"] not in ("finished", "evaluated")]
    (interrupted / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def window(qapp, runs_root, tmp_path_factory):
    settings_dir = tmp_path_factory.mktemp("settings")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(settings_dir))
    w = MainWindow(runs_dir=runs_root, settings=QSettings(str(settings_dir / "ssl-studio.ini"), QSettings.IniFormat))
    w.show()
    yield w
    if w.session is not None and not w.session.done:
        w.session.shutdown(10_000)
    w.close()
    w.deleteLater()


def row_of(browser, path: Path) -> dict[str, str]:
    table = browser.table
    header = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    for r in range(table.rowCount()):
        if Path(table.item(r, 0).data(Qt.ItemDataRole.UserRole)) == path:
            return {h: table.item(r, c).text() for c, h in enumerate(header)}
    raise AssertionError(f"{path.name} is not listed")


@pytest.mark.parametrize("name, how", CASES)
def test_window_lists_and_opens_a_damaged_run(window, runs_root, name, how):
    browser = window.runs_browser
    path = browser.runs_dir / case_dir(name, how)
    row = row_of(browser, path)
    if name == "report.json" and how == "missing":
        assert row["Problem"] == ""  # not evaluated is not damaged
    else:
        assert FILES[name] in row["Problem"] and row["Problem"].endswith(".") and "\n" not in row["Problem"], row
    opened = window.open_run(path)  # never raises
    window._stop_tail()
    if name == "metrics.jsonl" and how in ("missing", "directory"):
        assert not opened and "metrics.jsonl" in window.banner_text
    else:
        assert opened, window.banner_text
        assert window.panel_errors == {}


def test_an_interrupted_run_is_resumed_from_the_window(window, qtbot, runs_root):
    browser = window.runs_browser
    path = browser.runs_dir / "interrupted"
    assert row_of(browser, path)["Status"] == "interrupted"
    browser.select_paths([path])
    assert browser.resume_button.isEnabled()
    browser.select_paths([browser.runs_dir / case_dir("config.toml", "zeroed")])
    assert not browser.resume_button.isEnabled()  # a completed run is not resumable
    browser.select_paths([path])
    events = []
    qtbot.mouseClick(browser.resume_button, Qt.LeftButton)
    assert window.session is not None, window.banner_text
    window.session.eventsReady.connect(events.extend)
    with qtbot.waitSignal(window.session.finished, timeout=120_000):
        pass
    started = [e for e in events if isinstance(e, Started)]
    assert started and started[0].resumed_from_step == 4 and started[0].run_dir == str(path)
    browser.refresh()
    assert row_of(browser, path)["Status"] == "completed"


def test_curves_of_a_resumed_run_do_not_go_back_in_time(tmp_path):
    """Steps trained after the last checkpoint of a killed run are trained again on resume: they are drawn once."""
    from ssl_studio.engine.run_model import RunModel

    def step(n):
        return {"event": "step", "step": n, "loss": 10.0 - n}

    lines = [{"event": "started", "time": 1.0, "resumed_from_step": 0}] + [step(n) for n in range(1, 11)]
    lines += [{"event": "started", "time": 2.0, "resumed_from_step": 6}] + [step(n) for n in (7, 8)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"event": "st', encoding="utf-8")
    (tmp_path / ".lock").write_text("{}", encoding="utf-8")  # its process held it, and is gone
    track = RunModel(tmp_path)
    track.update()
    assert list(track.steps.view) == [1, 2, 3, 4, 5, 6, 7, 8] and track.step == 8
    assert track.status == "interrupted"  # says running, and nobody holds it
    assert "cut off" in track.problem


@pytest.mark.parametrize("name, what", SPECIAL_CASES)
def test_window_lists_and_opens_a_run_with_a_pipe_or_device_in_place_of_a_file(window, runs_root, name, what):
    """Before the second pass the window never opened over such a folder: the runs browser waited on the pipe (or read
    /dev/zero) while the window was built.  Now the run is listed with one sentence, and opening it does not wait."""
    browser = window.runs_browser
    path = browser.runs_dir / case_dir(name, what)
    row = row_of(browser, path)
    assert FILES[name] in row["Problem"] and row["Problem"].endswith(".") and "\n" not in row["Problem"], row
    opened = window.open_run(path)  # never raises, never waits
    window._stop_tail()
    if name == "metrics.jsonl":
        assert not opened or window.panel_errors == {}
    else:
        assert opened, window.banner_text
        assert window.panel_errors == {}
