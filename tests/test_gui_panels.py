"""The live panels fed with synthetic engine events (no training), offscreen."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch
from PySide6.QtCore import QEvent, QPointF
from PySide6.QtWidgets import QApplication

from ssl_studio.engine import diagnostics
from ssl_studio.engine.events import Evaluated, Probe, Started, Step
from ssl_studio.gui.panels import EmbeddingPanel, LossPanel, SpectrumPanel
from ssl_studio.gui.panels.base import class_colour, ema_filter
from ssl_studio.gui.panels.embedding_panel import nearest_neighbours, nearest_point, normalise_rows
from ssl_studio.gui.panels.loss_panel import EMA
from ssl_studio.gui.panels.projection import UMAP_HINT, umap_available

CLASSES = ["circle", "square", "triangle"]


def started(feature_dim=16, class_names=CLASSES):
    return Started(run_dir="run", objective="simclr", data="shapes", backbone="convnet", device="cpu", precision="float32",
                   channels_last=False, num_train=100, num_probe=60, feature_dim=feature_dim, parameters=1000,
                   flops_per_image=1, total_steps=100, steps_per_epoch=10, batch_size=32, class_names=class_names)


def steps(start, stop, seed=0):
    rng = np.random.default_rng(seed)
    return [Step(step=i, epoch=i / 10, loss=float(5.0 / i + 0.3 * rng.random()), lr=0.1 * i / stop, images_per_s=100.0,
                 elapsed_s=float(i), progress=i / stop, eta_s=None) for i in range(start, stop)]


def probe(step, features, labels=None, knn=None, linear=None):
    f = torch.as_tensor(features, dtype=torch.float32)
    return Probe(step=step, effective_rank=diagnostics.effective_rank(f), mean_cosine=diagnostics.mean_cosine(f),
                 dim_std=diagnostics.dim_std(f), knn_acc=knn, feature_dim=f.shape[1], linear_acc=linear,
                 spectrum=diagnostics.spectrum(f).astype(np.float32), points2d=diagnostics.pca_2d(f),
                 labels=None if labels is None else np.asarray(labels), indices=np.arange(len(f)) + 100,
                 features=f.numpy())


def clustered(n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(size=(3, d)) * 4
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


class FakeImageSet:
    def __init__(self, n=200):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 255, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
        self.labels = torch.arange(n) % 3
        self.class_names = CLASSES


@pytest.fixture
def loss_panel(qtbot):
    panel = LossPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 500)
    panel.show()
    return panel


# -- loss panel -------------------------------------------------------------------------
def test_loss_panel_curves_markers_and_log(loss_panel):
    panel = loss_panel
    all_steps = steps(1, 51)
    panel.handle_events([started()] + all_steps[:19])
    panel.handle_events(all_steps[19:] + [probe(25, *clustered(), knn=0.4), probe(50, *clustered(seed=1), knn=0.7)])
    panel.handle_events([probe(75, *clustered(seed=2), knn=0.6, linear=0.65)])
    assert len(panel.loss_curve.yData) == 50 and len(panel.lr_curve.yData) == 50
    assert len(panel.smooth_curve.yData) == 50
    assert len(panel.knn_curve.yData) == 3 and len(panel.linear_curve.yData) == 1

    losses = np.array([s.loss for s in all_steps])
    i = int(np.argmin(losses))
    mx, my = panel.best_loss_marker.xData, panel.best_loss_marker.yData
    assert mx[0] == i + 1 and my[0] == pytest.approx(losses[i])
    kx, ky = panel.best_knn_marker.xData, panel.best_knn_marker.yData
    assert kx[0] == 50 and ky[0] == pytest.approx(0.7)
    assert "step 50" in panel.best_label.text()

    panel.log_checkbox.setChecked(True)
    assert panel.loss_plot.getAxis("left").logMode
    assert panel.loss_curve.opts["logMode"][1]
    x, y = panel.loss_curve.getData()
    assert np.allclose(10 ** y, np.interp(x, np.arange(1, 51), losses))
    panel.set_log_y(False)
    assert not panel.loss_plot.getAxis("left").logMode

    panel.handle_events([Evaluated(step=50, results={"knn": {"k5": 0.5, "k20": 0.61}})])
    assert "61.0%" in panel.best_label.text()
    header, rows = panel.table()
    assert header[0] == "step" and len(rows) == 51  # 50 steps + the probe at step 75 (no step there)
    panel.clear()
    assert panel.loss.n == 0 and not len(panel.loss_curve.getData()[1] if panel.loss_curve.getData()[1] is not None else []) and panel.best_loss_index is None


def test_smoothing_changes_the_displayed_curve(loss_panel):
    panel = loss_panel
    panel.handle_events(steps(1, 200))
    before = panel.smooth_curve.yData.copy()
    panel.set_smoothing(70)
    after = panel.smooth_curve.yData.copy()
    assert len(after) == len(before) and not np.allclose(after, before)
    assert np.std(np.diff(after)) < np.std(np.diff(panel.loss_curve.yData))  # smoother than raw
    panel.set_smoothing(0)
    assert not panel.smooth_curve.isVisible()


def test_ema_incremental_matches_one_pass():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    w = 0.95
    ref, z = [], 0.0
    for t, v in enumerate(x, 1):  # the textbook debiased EMA
        z = w * z + (1 - w) * v
        ref.append(z / (1 - w ** t))
    ema = EMA(w)
    for chunk in np.array_split(x, 7):
        ema.extend(chunk)
    assert np.allclose(ema.values.view, ref)
    assert ema.values.view[0] == pytest.approx(x[0])


@pytest.mark.parametrize("w", [0.5, 0.999, 0.99999])
def test_ema_filter_long_runs(w):
    x = np.random.default_rng(1).normal(size=20_000) + 3.0
    ref = np.empty_like(x)
    z = 1.5
    for t, v in enumerate(x):
        z = w * z + (1 - w) * v
        ref[t] = z
    assert np.allclose(ema_filter(x, w, 1.5), ref, rtol=1e-9, atol=1e-9)


def test_million_point_loss_curve(loss_panel, qtbot):
    panel = loss_panel
    n = 1_000_000
    rng = np.random.default_rng(0)
    panel.add_arrays(np.arange(1, n + 1), 2.0 + np.exp(-np.arange(n) / 2e5) + 0.05 * rng.random(n), np.full(n, 0.1))
    panel.handle_events(steps(n + 1, n + 3))
    assert len(panel.loss_curve.yData) == n + 2
    assert panel.loss_curve.opts["autoDownsample"] and panel.loss_curve.opts["clipToView"]
    assert not panel.grab().isNull()
    panel.log_checkbox.setChecked(True)
    assert not panel.grab().isNull()


# -- embedding panel --------------------------------------------------------------------
@pytest.fixture
def embedding_panel(qtbot):
    panel = EmbeddingPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_embedding_scatter_colours_and_legend(embedding_panel):
    panel = embedding_panel
    feats, labels = clustered(60)
    panel.handle_events([started(), probe(10, feats, labels)])
    data = panel.scatter.data
    assert len(data) == 60
    brushes = data["brush"]
    assert len({id(b) for b in brushes}) == 3  # one shared brush per class
    for k in range(3):
        ids = {id(b) for b in brushes[labels == k]}
        assert len(ids) == 1
        assert brushes[labels == k][0].color().name() == class_colour(k, 3).name()
    assert [label.text for _, label in panel.legend.items] == CLASSES
    # a second probe reuses the same item and the same brush objects; only positions move
    item = panel.scatter
    second = probe(20, *clustered(60, seed=3))
    second.points2d = second.points2d * 100.0
    panel.handle_events([second])
    assert panel.scatter is item and {id(b) for b in panel.scatter.data["brush"]} == {id(b) for b in brushes}
    assert np.allclose(panel.scatter.data["x"], second.points2d[:, 0])
    panel.plot.getViewBox().updateAutoRange()
    (x0, x1), _ = panel.plot.getViewBox().viewRange()
    assert x0 <= second.points2d[:, 0].min() and x1 >= second.points2d[:, 0].max()  # bounds followed the move
    # new labels (another probe set) restyle the points
    panel.handle_events([probe(30, feats[:40], (labels[:40] + 1) % 3)])
    assert len(panel.scatter.data) == 40
    assert panel.scatter.data["brush"][0] is panel._brushes[(labels[0] + 1) % 3]


def test_embedding_hover_and_neighbours(embedding_panel, qtbot):
    panel = embedding_panel
    panel.set_imageset(FakeImageSet())
    # a grid of well separated points, so the point under the cursor is unambiguous
    gx, gy = np.meshgrid(np.arange(5), np.arange(4))
    pts = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32) * 10
    labels = np.arange(20) % 3
    feats = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    panel.set_probe(pts, labels, np.arange(20) + 5, feats, step=7)
    panel.plot.getViewBox().autoRange()
    qtbot.waitUntil(lambda: panel.plot.getViewBox().viewPixelSize()[0] > 0)
    for i in (0, 7, 19):
        assert panel.index_at(*pts[i]) == i
    assert panel.index_at(pts[7, 0] + 5, pts[7, 1] + 5) is None  # between points: nothing

    scene_pos = panel.plot.getViewBox().mapViewToScene(QPointF(*pts[7]))
    panel._mouse_moved(scene_pos)
    assert panel.hovered == 7 and panel.inset.isVisible()
    assert "#12" in panel.inset.text.text() and CLASSES[7 % 3] in panel.inset.text.text()
    assert not panel.inset.image.pixmap().isNull()
    QApplication.sendEvent(panel.plot_widget.viewport(), QEvent(QEvent.Type.Leave))
    assert not panel.inset.isVisible()

    panel.select_point(7)
    assert len(panel.neighbour_indices) == 8 and 7 not in panel.neighbour_indices
    unit = normalise_rows(feats)
    sims = unit @ unit[7]
    sims[7] = -np.inf
    assert list(panel.neighbour_indices) == list(np.argsort(-sims)[:8])
    assert panel.neighbour_cells[1][0].parentWidget().isVisible()
    assert "Nearest neighbours of #12" in panel.neighbour_caption.text()


def test_nearest_neighbours_hand_built():
    f = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.7, 0.7, 0], [0, 0, 1], [-1, 0, 0]], np.float32)
    idx, sims = nearest_neighbours(normalise_rows(f), 0, 3)
    assert list(idx) == [1, 3, 2] or list(idx) == [1, 3, 4]  # 2 and 4 tie at cosine 0
    assert sims[0] == pytest.approx(0.9 / np.sqrt(0.82), abs=1e-5)
    assert list(nearest_neighbours(normalise_rows(f), 5, 1)[0]) in ([2], [4])
    pts = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    assert nearest_point(pts, 9, 1, 1.0, 1.0, 3) == 1
    assert nearest_point(pts, 5, 5, 1.0, 1.0, 3) is None


def test_tsne_runs_in_background(embedding_panel, qtbot):
    panel = embedding_panel
    feats, labels = clustered(30, 8)
    panel.handle_events([started(8), probe(5, feats, labels)])
    from ssl_studio.gui.main_thread_gc import main_thread_collection

    held_before = main_thread_collection.holders
    with qtbot.waitSignal(panel.runner.finished, timeout=120_000):
        panel.set_method("tsne")  # starts the job; the GUI thread returns at once
        assert panel.runner.busy
        assert main_thread_collection.holders == held_before + 1  # no collection in the t-SNE thread
    qtbot.waitUntil(lambda: "tsne" in panel.projections, timeout=5000)
    assert main_thread_collection.holders == held_before
    pts, step = panel.projections["tsne"]
    assert pts.shape == (30, 2) and step == 5
    assert np.allclose(panel.scatter.data["x"], pts[:, 0])
    assert "t-SNE" in panel.status.text()
    panel.set_method("pca")
    assert np.allclose(panel.scatter.data["x"], panel.pca_points[:, 0])


def test_umap_option_state(embedding_panel):
    item = embedding_panel.method_combo.model().item(2)
    if umap_available():
        assert item.isEnabled()
    else:
        assert not item.isEnabled()
        assert "pip install ssl-studio[umap]" in item.toolTip() and item.toolTip() == UMAP_HINT


# -- spectrum panel ---------------------------------------------------------------------
@pytest.fixture
def spectrum_panel(qtbot):
    panel = SpectrumPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    return panel


def test_spectrum_banner_names_the_failure(spectrum_panel):
    panel = spectrum_panel
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(200, 16)).astype(np.float32)
    panel.handle_events([started(16), probe(10, healthy)])
    assert panel.banner.text() == "" and not panel.banner.isVisible()
    assert panel.verdict is None
    assert float(panel.rank_label.text()) == pytest.approx(diagnostics.effective_rank(torch.tensor(healthy)), abs=0.05)
    assert len(panel.spectrum_curve.yData) == 16

    collapsed = (np.ones((200, 16)) + 1e-4 * rng.normal(size=(200, 16))).astype(np.float32)
    panel.handle_events([probe(20, collapsed)])
    assert "representational collapse" in panel.banner.text().lower() and panel.banner.isVisible()

    panel.handle_events([probe(30, healthy)])
    assert not panel.banner.isVisible()
    low_rank = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 128))).astype(np.float32)
    panel.handle_events([probe(40, low_rank)])
    assert panel.verdict == "dimensional collapse" and "dimensional collapse" in panel.banner.text().lower()


def test_spectrum_heat_map_grows_per_probe(spectrum_panel):
    panel = spectrum_panel
    rng = np.random.default_rng(1)
    panel.handle_events([started(16)])
    for k in range(1, 5):
        batch = [probe(10 * k, rng.normal(size=(50, 16)).astype(np.float32))]
        if k == 4:
            batch.append(probe(45, rng.normal(size=(50, 16)).astype(np.float32)))  # two probes in one batch
        panel.handle_events(batch)
    assert panel.heat_image.image.shape == (5, 16)
    assert len(panel.rank_curve.yData) == 5
    assert panel.heat_image.image.max() == pytest.approx(1.0) and panel.heat_image.image.min() >= 0.0
    header, rows = panel.table()
    assert len(rows) == 5 and header[-1] == "eig_15"


def test_step_axes_count_whole_steps_from_the_first_probe(spectrum_panel, qtbot):
    panel = spectrum_panel
    panel.handle_events([started(16), probe(0, np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32))])
    panel.show()
    qtbot.waitExposed(panel)
    for plot in (panel.rank_plot, panel.heat_plot):
        label = plot.getAxis("bottom").labelString()
        assert "step" in label and "x0.001" not in label and "x1e" not in label  # one probe at step 0: range +-0.5

# -- export -----------------------------------------------------------------------------
def test_panels_export(qtbot, tmp_path):
    feats, labels = clustered(60)
    events = [started()] + steps(1, 30) + [probe(30, feats, labels, knn=0.5)]
    for cls in (LossPanel, EmbeddingPanel, SpectrumPanel):
        panel = cls()
        qtbot.addWidget(panel)
        panel.resize(500, 400)
        panel.show()
        panel.handle_events(events)
        name = cls.__name__
        panel.export_png(tmp_path / f"{name}.png")
        panel.export_svg(tmp_path / f"{name}.svg")
        panel.export_csv(tmp_path / f"{name}.csv")
        for ext in ("png", "svg", "csv"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 100, (name, ext)
        assert (tmp_path / f"{name}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_step_axis_follows_the_run_in_jumps(loss_panel):
    panel = loss_panel
    vb = panel.loss_plot.getViewBox()
    panel.handle_events(steps(1, 101))
    (x0, x1), _ = vb.viewRange()
    assert x0 <= 1 and x1 >= 100
    panel.handle_events(steps(101, 105))
    assert vb.viewRange()[0] == [x0, x1]  # still inside: the axis did not move
    panel.handle_events(steps(105, 400))
    assert vb.viewRange()[0][1] >= 399
    panel._user_moved()  # a manual zoom stops following
    vb.setXRange(10, 20, padding=0)
    panel.handle_events(steps(400, 600))
    assert vb.viewRange()[0] == [10, 20]
    vb.enableAutoRange(axis="x")  # the auto-range button follows the run again
    panel.handle_events(steps(600, 700))
    assert panel.follow_x and vb.viewRange()[0][1] >= 699


def test_pretty_name_spells_abbreviations_as_papers_do():
    from ssl_studio.gui.param_form import pretty_name

    assert pretty_name("proj_hidden") == "Proj hidden"
    assert pretty_name("use_bn_in_head") == "Use BN in head"
    assert pretty_name("no_ema") == "No EMA"
    assert pretty_name("ibot_loss_weight") == "iBOT loss weight"  # not "IBOT"
    assert pretty_name("koleo_loss_weight") == "KoLeo loss weight"
