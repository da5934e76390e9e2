"""Fit and finish (issue 25): the window opens at a size that fits its screen, the runs table shows its rows when
docked at 1280×800, and the accuracy plot's "best" label never hides under its legend.  Offscreen, no training."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ssl_studio.gui.main_window import MainWindow  # noqa: E402
from ssl_studio.gui.window_chrome import fitted_size  # noqa: E402
from ssl_studio.gui.panels import LossPanel  # noqa: E402
from ssl_studio.gui.panels.runs_browser import VISIBLE_ROWS  # noqa: E402
from ssl_studio.engine.events import Probe, Started, Step  # noqa: E402


def started():
    return Started(run_dir="run", objective="simclr", data="shapes", backbone="convnet", device="cpu", precision="float32",
                   channels_last=False, num_train=100, num_probe=60, feature_dim=16, parameters=1000, flops_per_image=1,
                   total_steps=4, steps_per_epoch=4, batch_size=32)


def step(n):
    return Step(step=n, epoch=n / 4, loss=2.0 / n, lr=0.1, images_per_s=10.0, elapsed_s=float(n), progress=n / 4, eta_s=None)


def probe(n, knn):
    return Probe(step=n, effective_rank=4.0, mean_cosine=0.5, dim_std=0.1, knn_acc=knn, feature_dim=16)


@pytest.mark.parametrize("screen", [(1600, 1000), (1280, 800), (1920, 1080), (1024, 700)])
def test_a_first_window_takes_most_of_its_screen_and_fits_it(screen):
    width, height = fitted_size(*screen)
    assert width <= screen[0] - 16 and height <= screen[1] - 48  # inside, with a title bar's room
    assert width >= 0.9 * screen[0] and height >= 0.88 * screen[1]  # most of it (1600×1000 used to get 1500×920)


def _fake_runs(root, n):
    for i in range(n):
        run = root / f"20260101-0000{i:02d}-simclr-shapes"
        run.mkdir(parents=True)
        records = [{"event": "started", "time": 1000.0 + i, "objective": "simclr", "data": "shapes"},
                   {"event": "step", "step": 3, "loss": 1.0}, {"event": "finished", "step": 3, "status": "completed"}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_the_runs_table_shows_eight_rows_docked_at_1280x800(qtbot, tmp_path):
    _fake_runs(tmp_path / "runs", 12)
    w = MainWindow(runs_dir=tmp_path / "runs", settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    w.confirm_quit = False
    qtbot.addWidget(w)
    w.resize(1280, 760)
    w.show()
    w.runs_dock.raise_()
    w.runs_browser.refresh()
    table = w.runs_browser.table
    qtbot.waitUntil(lambda: table.rowCount() == 12 and table.isVisible())
    row = table.verticalHeader().defaultSectionSize()
    qtbot.waitUntil(lambda: table.viewport().height() >= VISIBLE_ROWS * row)
    assert w.minimumSizeHint().height() <= 760


def test_the_best_accuracy_label_stays_clear_of_the_legend(qtbot):
    panel = LossPanel()
    qtbot.addWidget(panel)
    panel.resize(520, 360)
    panel.show()
    # a short run whose best k-NN is its first probe, high on the plot: the label used to sit under the legend
    panel.handle_events([started(), probe(0, 0.95)] + [step(n) for n in range(1, 5)] + [probe(4, 0.5)])
    QApplication.processEvents()
    text, view = panel.best_knn_text, panel.acc_plot.getViewBox()
    assert text.isVisible() and text.toPlainText().startswith("best 95.0%")
    qtbot.waitUntil(lambda: not text.sceneBoundingRect().isEmpty())
    assert panel.acc_plot.legend is None  # the key is the title, above the data
    assert not text.sceneBoundingRect().intersects(panel.acc_plot.titleLabel.sceneBoundingRect())
    assert view.sceneBoundingRect().contains(text.sceneBoundingRect())  # inside the plot, not cut off


def test_the_budget_rate_is_measured_on_the_objectives_whole_step():
    """Views, heads, teacher and update, as the trainer runs them (the backbone alone was ~1.5x optimistic for DINO)."""
    import math

    from ssl_studio.config import config_from_mapping
    from ssl_studio.gui.budget_advice import measure_rate

    cfg = config_from_mapping({"objective": {"name": "dino"}, "model": {"backbone": "convnet", "width": 16},
                               "data": {"source": "shapes", "resolution": 16}, "batch_size": 8, "device": "cpu",
                               "precision": "float32"})
    rate = measure_rate(cfg, repeats=1)
    assert math.isfinite(rate) and rate > 0
