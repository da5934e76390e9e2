"""The runs browser on run folders written by real (tiny) Trainer runs, offscreen."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from ssl_studio.config import RunConfig
from ssl_studio.engine.trainer import Trainer
from ssl_studio.gui.panels import RunsBrowser
from ssl_studio.engine.run_model import differing_keys, flatten


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory) -> list[Path]:
    """Two finished runs that differ only in seed and batch size (made once: training is the slow part)."""
    root = tmp_path_factory.mktemp("made")
    paths = []
    for seed, batch in ((0, 32), (1, 16)):
        cfg = RunConfig()
        cfg.data.num_images = 256
        cfg.budget.steps = 6
        cfg.batch_size = batch
        cfg.probe.every = 3
        cfg.model.width = 8
        cfg.device = "cpu"
        cfg.workers = 1
        cfg.seed = seed
        cfg.name = f"seed{seed}"
        cfg.out = str(root)
        result = Trainer(cfg).run()
        assert result.status == "completed", result.message
        paths.append(result.run_dir)
    return paths


@pytest.fixture
def runs_root(made_runs, tmp_path) -> Path:
    """A fresh copy per test (tests delete and append), plus a broken folder and an empty one."""
    root = tmp_path / "runs"
    root.mkdir()
    for p in made_runs:
        shutil.copytree(p, root / p.name)
    broken = root / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text("this is not json\n{\"half\": ", encoding="utf-8")
    (broken / "config.toml").write_text("objective = [unclosed", encoding="utf-8")
    (root / "empty").mkdir()
    return root


@pytest.fixture
def browser(qtbot, runs_root):
    b = RunsBrowser(runs_root)
    b.use_trash = False
    qtbot.addWidget(b)
    b.resize(900, 700)
    b.show()
    return b


def names(browser):
    return sorted(t.name for t in browser.runs())


def test_lists_run_folders_and_skips_broken(browser, made_runs):
    assert names(browser) == sorted(p.name for p in made_runs)
    assert browser.table.rowCount() == 2
    for t in browser.runs():
        assert t.status == "completed" and t.objective == "simclr" and t.step == 6
        assert t.knn is not None and t.rank is not None and t.loss.n == 6 and t.probe_steps.n >= 3
    col = {browser.table.horizontalHeaderItem(c).text(): c for c in range(browser.table.columnCount())}
    assert browser.table.item(0, col["Status"]).text() == "completed"
    assert browser.table.item(0, col["Step"]).text() == "6"


def test_overlay_comparison_and_config_differences(browser):
    browser.select_paths([t.path for t in browser.runs()])
    assert len(browser.selected_tracks()) == 2
    assert browser.curve_counts() == {"loss": 2, "rank": 2, "knn": 2}
    assert len(browser.legend.items) == 2

    metrics = [row[0] for row in browser.comparison_rows]
    assert "report knn.k20" in metrics and "probe k-NN" in metrics and "summary effective_rank" in metrics
    assert browser.comparison.columnCount() == 2

    assert browser.diff_only.isChecked()
    assert sorted(row[0] for row in browser.diff_rows) == ["batch_size", "name", "seed"]
    assert browser.diff_table.rowCount() == 3
    browser.diff_only.setChecked(False)
    assert len(browser.diff_rows) > 20 and "optim.momentum" in [r[0] for r in browser.diff_rows]

    browser.select_paths([browser.runs()[0].path])
    assert browser.curve_counts()["loss"] == 1


def test_differing_keys_helper():
    a = flatten({"seed": 0, "optim": {"lr": 0.1, "momentum": 0.9}})
    b = flatten({"seed": 0, "optim": {"lr": 0.2, "momentum": 0.9}, "extra": True})
    assert differing_keys([a, b]) == ["optim.lr", "extra"]
    assert differing_keys([a, dict(a)]) == []


def test_open_rerun_and_delete(browser, qtbot, monkeypatch, runs_root):
    first, second = browser.runs()
    browser.select_paths([first.path])
    with qtbot.waitSignal(browser.openRun) as opened:
        browser.open_button.click()
    assert opened.args == [str(first.path)]
    with qtbot.waitSignal(browser.rerunRequested) as rerun:
        browser.rerun_button.click()
    assert rerun.args == [str(first.path / "config.toml")]

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert browser.delete_selected() == [] and first.path.exists()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    browser.select_paths([first.path])
    assert browser.delete_selected() == [first.path]
    assert not first.path.exists() and names(browser) == [second.name]
    assert browser.table.rowCount() == 1


def test_open_folder_from_elsewhere_and_watching(browser, qtbot, runs_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    source = browser.runs()[0].path
    shutil.copytree(source, elsewhere / "remote-run")
    assert browser.add_folder(elsewhere / "remote-run")
    assert "remote-run" in names(browser)
    assert [p.name for p in browser.selected_paths()] == ["remote-run"]

    # a new folder under the root appears by itself (watcher, or the 2 s poll)
    shutil.copytree(source, runs_root / "new-run")
    qtbot.waitUntil(lambda: "new-run" in names(browser), timeout=10_000)

    # a live run: appended lines are read from where the browser left off
    track = next(t for t in browser.runs() if t.name == "new-run")
    offset = track.offset
    with open(runs_root / "new-run" / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "step", "step": 7, "loss": 1.0, "lr": 0.1}) + "\n")
    qtbot.waitUntil(lambda: track.step == 7, timeout=10_000)
    assert track.offset > offset and track.loss.n == 7


def test_not_a_run_folder_is_refused(browser, monkeypatch, tmp_path):
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    (tmp_path / "nothing").mkdir()
    assert not browser.add_folder(tmp_path / "nothing")
    assert warned and "is not a run folder" in warned[0]


def test_exports(browser, tmp_path):
    browser.select_paths([t.path for t in browser.runs()])
    browser.export_comparison_csv(tmp_path / "cmp.csv")
    browser.export_comparison_markdown(tmp_path / "cmp.md")
    browser.export_curves_png(tmp_path / "curves.png")
    csv_text = (tmp_path / "cmp.csv").read_text(encoding="utf-8")
    md = (tmp_path / "cmp.md").read_text(encoding="utf-8")
    for t in browser.runs():
        assert t.name in csv_text and t.name in md
    assert "| seed |" in md and "## Configuration differences" in md
    assert (tmp_path / "curves.png").stat().st_size > 1000
