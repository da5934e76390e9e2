"""The reconstruction, attention and I-JEPA panels receive their Visuals events, draw them, ask for
new masks, and export (offscreen)."""

from __future__ import annotations

import csv
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ssl_studio.engine.events import Probe, Started, Step, Visuals  # noqa: E402
from ssl_studio.gui.panels.attention_panel import AttentionPanel  # noqa: E402
from ssl_studio.gui.panels.base import Panel  # noqa: E402
from ssl_studio.gui.panels.ijepa_panel import IJEPAPanel  # noqa: E402
from ssl_studio.gui.panels.reconstruction_panel import ReconstructionPanel, heat_overlay, outline  # noqa: E402


def started(step=0):
    return Started(run_dir="x", objective="mae", data="shapes", backbone="vit", device="cpu", precision="float32",
                   channels_last=False, num_train=10, num_probe=10, feature_dim=48, parameters=1, flops_per_image=1,
                   total_steps=10, steps_per_epoch=1, batch_size=4, resumed_from_step=step)


def probe(step, iou, auc=None):
    return Probe(step=step, effective_rank=1.0, mean_cosine=0.1, dim_std=0.1, knn_acc=None, feature_dim=48,
                 spectrum=np.ones(4, np.float32), points2d=np.zeros((2, 2)), labels=None, indices=np.arange(2),
                 features=None, attention_iou=iou, attention_auc=auc)


@pytest.fixture(scope="module")
def mae_visuals():
    from ssl_studio.config import ModelConfig
    from ssl_studio.models import build_backbone
    from ssl_studio.objectives import ObjectiveContext, all_objectives

    cls = all_objectives()["mae"]
    torch.manual_seed(0)
    obj = cls(build_backbone(ModelConfig(backbone="vit", width=16), 32), cls.parse_params({"decoder_dim": 32, "decoder_depth": 1}),
              ObjectiveContext(image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    return obj, obj.visuals(torch.randn(6, 3, 32, 32))["reconstruction"]


def as_event(step, kind, payload):
    arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
    info = {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}
    return Visuals(step=step, kind=kind, arrays=arrays, info=info)


def test_panels_declare_their_visual_kind():
    assert ReconstructionPanel.visual_kind == "reconstruction"
    assert AttentionPanel.visual_kind == "attention"
    assert IJEPAPanel.visual_kind == "ijepa"
    for cls in (ReconstructionPanel, AttentionPanel, IJEPAPanel):
        assert issubclass(cls, Panel) and cls.title


def test_reconstruction_panel_draws_and_exports(qtbot, tmp_path, mae_visuals):
    _, payload = mae_visuals
    panel = ReconstructionPanel()
    qtbot.addWidget(panel)
    panel.resize(800, 700)
    panel.handle_events([started(), as_event(5, "reconstruction", payload), Visuals(step=5, kind="attention")])
    assert panel.last is not None and panel.last.step == 5
    assert panel.picture is not None and panel.picture.shape[0] >= 3 * 96  # 6 images, 2 per row, 96-px tiles
    assert not panel.image.pixmap().isNull()
    assert "75 %" in panel.status.text()
    panel.handle_events([as_event(10, "reconstruction", {**payload, "masked_mse": 0.01})])
    assert list(panel.steps.view) == [5, 10]
    panel.export_png(tmp_path / "r.png")
    panel.export_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.png").stat().st_size > 0
    rows = list(csv.reader(open(tmp_path / "r.csv")))
    assert rows[0] == ["step", "mask_ratio", "seed", "masked_mse", "requested"] and len(rows) == 3
    panel.handle_events([started()])  # a new run clears
    assert panel.last is None and len(panel.steps) == 0


def test_reconstruction_panel_asks_for_new_masks(qtbot, mae_visuals):
    obj, payload = mae_visuals
    panel = ReconstructionPanel()
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.requestVisuals, timeout=1000) as blocker:
        panel.ratio_slider.setValue(50)
    assert blocker.args[0] == {"kind": "reconstruction", "mask_ratio": 0.5, "seed": 0}
    with qtbot.waitSignal(panel.requestVisuals, timeout=1000) as blocker:
        panel.new_mask.click()
    request = blocker.args[0]
    assert request == {"kind": "reconstruction", "mask_ratio": 0.5, "seed": 1}
    # what the window does with it: the model re-masks at the asked ratio and seed, the reply is drawn
    reply = obj.reconstruct(torch.randn(4, 3, 32, 32), request["mask_ratio"], request["seed"])
    assert reply["mask"].sum(1).tolist() == [32] * 4
    panel.handle_events([as_event(7, "reconstruction", {**reply, "requested": True})])
    assert "requested view" in panel.status.text() and "50 %" in panel.status.text()
    assert len(panel.steps) == 0  # a requested view is not a point on the training curve
    assert panel.table()[1][0][-1] is True


def _attention_payload(b=4, heads=3, g=8):
    rng = np.random.default_rng(0)
    h = rng.random((b, heads, g, g)).astype(np.float32)
    h /= h.sum((2, 3), keepdims=True)
    mean = h.mean(1)
    mask = mean > np.median(mean.reshape(b, -1), 1)[:, None, None]
    obj = np.zeros((b, g, g), bool)
    obj[:, 2:5, 2:5] = True
    return {"image": rng.random((b, 3, 32, 32)).astype(np.float32), "heads": h, "mean": mean, "mask": mask, "object": obj,
            "iou": 0.3, "keep_mass": 0.6, "grid": g, "layer": 5}


def test_attention_panel_draws_heads_mean_mask_and_iou(qtbot, tmp_path):
    panel = AttentionPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.handle_events([started(), probe(0, 0.12), probe(10, 0.2, auc=0.08), as_event(10, "attention", _attention_payload())])
    assert panel.picture is not None
    # 4 images (spin box 6 > 4) in rows of image + 3 heads + mean + mask = 6 tiles of 96 px
    assert panel.picture.shape[1] == 6 * 96 + 5 * 4 and panel.picture.shape[0] == 4 * 96 + 3 * 4
    assert panel.initial_iou == pytest.approx(0.12)
    assert "0.200" in panel.iou_label.text() and "0.120" in panel.iou_label.text()
    assert "AUC 0.080" in panel.iou_label.text()  # the latest probe's object-vs-background AUC beside its IoU
    auc_x, auc_y = panel.auc_curve.getData()
    assert list(auc_x) == [0, 10] and np.isnan(auc_y[0]) and auc_y[1] == pytest.approx(0.08)  # a probe without one leaves a gap
    assert list(panel.probe_steps.view) == [0, 10] and list(panel.visual_iou.view) == [pytest.approx(0.3)]
    assert panel.init_line.isVisible()
    panel.count.setValue(2)  # fewer images: redrawn from the last event
    assert panel.picture.shape[0] == 2 * 96 + 4
    panel.export_png(tmp_path / "a.png")
    panel.export_csv(tmp_path / "a.csv")
    rows = list(csv.reader(open(tmp_path / "a.csv")))
    assert rows[0] == ["step", "source", "iou", "object_background_auc"] and len(rows) == 4
    assert rows[1][3] == "" and float(rows[2][3]) == pytest.approx(0.08)
    panel.export_svg(tmp_path / "a.svg")
    assert (tmp_path / "a.svg").stat().st_size > 0


def test_ijepa_panel_draws_blocks_and_cosine(qtbot, tmp_path):
    from ssl_studio.objectives.masking import MultiBlockSampler

    m = MultiBlockSampler(8)(5, generator=torch.Generator().manual_seed(0))
    payload = {"image": np.random.default_rng(0).random((5, 3, 32, 32)).astype(np.float32),
               "context_mask": m.context_mask.numpy(), "target_masks": m.target_masks.numpy(),
               "cosine": np.full((5, 4), 0.4, np.float32), "mean_cosine": 0.4, "shuffled_cosine": 0.1, "grid": 8,
               "context_block": [8, 8], "target_block": [4, 3]}
    panel = IJEPAPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    steps = [Step(step=s, epoch=0.0, loss=1.0, lr=0.1, images_per_s=1.0, elapsed_s=1.0, progress=0.1, eta_s=1.0,
                  metrics={"pred_cosine": 0.1 * s}) for s in (1, 2, 3)]
    panel.handle_events([started(), *steps, as_event(3, "ijepa", payload)])
    assert panel.picture is not None and panel.picture.shape[0] == 2 * 96 + 4  # 5 images, 4 per row, 2 tiles each
    assert "0.400" in panel.cosine_label.text() and "0.100" in panel.cosine_label.text()
    assert list(panel.steps.view) == [3]  # probe cosines only: the training batch's is a step metric (Step metrics panel)
    assert "context patches" in panel.status.text()
    # the context tile keeps the context patches bright and dims the rest
    ctx = m.context_mask[0].reshape(8, 8).numpy()
    tile = panel.picture[:96, :96].astype(int)
    img = (np.clip(payload["image"][0].transpose(1, 2, 0) * 255 + 0.5, 0, 255)).astype(int).repeat(3, 0).repeat(3, 1)
    i, j = np.argwhere(~ctx)[0]
    assert tile[i * 12 + 6, j * 12 + 6].sum() < img[i * 12 + 6, j * 12 + 6].sum() or img[i * 12 + 6, j * 12 + 6].sum() == 0
    panel.export_csv(tmp_path / "i.csv")
    rows = list(csv.reader(open(tmp_path / "i.csv")))
    assert rows[0] == ["step", "source", "cosine", "shuffled_cosine"] and len(rows) == 2
    panel.export_png(tmp_path / "i.png")
    assert (tmp_path / "i.png").stat().st_size > 0


def test_picture_helpers():
    img = np.zeros((8, 8, 3), np.uint8)
    heat = np.array([[0.0, 1.0], [0.0, 0.0]])
    over = heat_overlay(img, heat, alpha=1.0)
    assert over[0, 4:].sum() > 0 and over[4:, :4].sum() < over[0, 4:].sum()  # the hot patch is brightest
    cells = np.array([[True, False], [False, False]])
    drawn = outline(img, cells, (255, 0, 0))
    assert (drawn[0, :4] == [255, 0, 0]).all() and (drawn[5:, 5:] == 0).all()
