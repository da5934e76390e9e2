"""The MAE vs I-JEPA vs DINO study, end to end on a tiny budget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ssl_studio.params import ConfigError
from ssl_studio.studies.masked import COLUMNS, centre_prior_iou, iou_verdict, paired_gain, redraw_figure, run_masked_study

TINY = {"data.num_images": 128, "batch_size": 16, "model.width": 16, "probe.size": 32, "probe.every": 0, "probe.visuals_every": 0,
        "precision": "float32"}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_masked_study_end_to_end(tmp_path):
    logs = []
    study = run_masked_study(data="shapes", out=tmp_path, steps=2, overrides=TINY, log=logs.append)
    for name in ("table.md", "table.csv", "study.json", "figure.png"):
        assert (study / name).exists(), name
    meta = json.loads((study / "study.json").read_text())
    rows = meta["rows"]
    assert [r["method"] for r in rows] == ["ViT at initialisation", "MAE", "I-JEPA", "DINO (ViT)"]
    assert [r["status"] for r in rows] == ["reference", "completed", "completed", "completed"]
    assert meta["budget"] == {"steps": 2}
    init = rows[0]
    for r in rows:
        assert r["attention_iou"] is not None and 0.0 <= r["attention_iou"] <= 1.0, r["method"]
        assert len(r["attention_distance"]) == 6 and all(d >= 0 for d in r["attention_distance"])
        regions = r["attention_regions"]  # the attention's mass inside / on the outline of / off the object
        assert sum(regions[k] for k in ("inside", "outline", "background")) == pytest.approx(1.0, abs=1e-4), r["method"]
        assert sum(regions[k + "_share"] for k in ("inside", "outline", "background")) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 <= r["object_background_auc"] <= 1.0, r["method"]  # object patches ranked above background ones, sign and all
        assert r["knn_k20"] is not None and r["linear_top1"] is not None and r["effective_rank"] is not None
        # what the feature encodes besides the shape: k-NN on every other attribute shapes records
        assert set(r["attribute_knn"]) == {"colour", "size", "position", "background"}, r["method"]
        assert all(0.0 <= v <= 1.0 for v in r["attribute_knn"].values())
    for r in rows[1:]:  # each trained ViT is compared with the initial one image by image
        assert r["iou_gain"] is not None and abs(r["iou_gain"] - (r["attention_iou"] - init["attention_iou"])) < 1e-6
    # every run starts from the same ViT: their step-0 probes agree with each other
    starts = {round(r["initial_probe_iou"], 6) for r in rows[1:]}
    assert len(starts) == 1 and init["initial_probe_iou"] is not None
    with open(study / "table.csv") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == COLUMNS and len(table) == 5
    assert "ViT at initialisation" in (study / "table.md").read_text()
    assert "colour " in table[1][COLUMNS.index("k-NN@20 by attribute")]
    report = json.loads((Path(rows[1]["run_dir"]) / "report.json").read_text())
    assert set(report["attributes"]["attributes"]["colour"]) == {"k20", "chance", "values"}
    assert "a uniform map puts" in (study / "table.md").read_text()
    assert meta["centre_prior_iou"] is not None and 0.0 <= meta["centre_prior_iou"] <= 1.0
    assert meta["centre_prior_patches"] == round(init["mask_patches"]) and "Centre prior" in (study / "table.md").read_text()
    assert init["centre_prior_iou"] == meta["centre_prior_iou"]
    for r in rows[1:]:  # each mask is judged against a centre mask of its own size
        assert 0.0 <= r["centre_prior_iou"] <= 1.0
        if round(r["mask_patches"]) == meta["centre_prior_patches"]:
            assert r["centre_prior_iou"] == meta["centre_prior_iou"]
        assert table[rows.index(r) + 1][COLUMNS.index("centre prior at that size")] == f"{r['centre_prior_iou']:.3f}"
    assert "a centre mask of its size" in (study / "table.md").read_text()
    assert [row[COLUMNS.index("object vs background AUC")] for row in table[1:]] == [f"{r['object_background_auc']:.3f}" for r in rows]
    assert "Object vs background AUC" in (study / "table.md").read_text()
    assert meta["backbone"].startswith("ViT, embed ") and meta["backbone"] in (study / "table.md").read_text()
    fig = Image.open(study / "figure.png")
    assert fig.size[0] > 600 and fig.size[1] > 300
    assert any("masked study" in line for line in logs)
    mae = rows[1]
    assert mae["masked_mse"] is not None and mae["fill_mse"] is not None and mae["masked_mse"] >= 0
    assert rows[2]["masked_mse"] is None  # only MAE reconstructs
    recon = Image.open(study / "reconstructions.png")
    assert recon.size[0] > 10 * 96 and recon.size[1] > 4 * 96  # ten probe images, four rows, 96 px tiles
    assert "reconstructions.png" in (study / "table.md").read_text()
    (study / "figure.png").unlink()
    assert redraw_figure(study).exists()  # from study.json and pictures.npz


def test_masked_study_refuses_bad_budgets(tmp_path):
    with pytest.raises(ConfigError):
        run_masked_study(out=tmp_path, minutes_per_run=0)
    with pytest.raises(ConfigError):
        run_masked_study(out=tmp_path, steps=0)


def test_mean_fill_mse_on_a_hand_built_image():
    """Two patches of a 2 x 2 grid hidden; the fill is the mean colour of the two visible ones."""
    import numpy as np

    from ssl_studio.studies.masked import mean_fill_mse

    img = np.zeros((1, 1, 4, 4), np.float32)
    img[0, 0, :2, :2] = 1.0  # patch 0 visible, value 1
    img[0, 0, :2, 2:] = 0.0  # patch 1 visible, value 0 -> visible mean 0.5
    img[0, 0, 2:, :2] = 1.0  # patch 2 hidden: error (1 - 0.5)^2
    img[0, 0, 2:, 2:] = 0.5  # patch 3 hidden: error 0
    mask = np.array([[0, 0, 1, 1]], np.float32)
    assert mean_fill_mse(img, mask) == pytest.approx(0.125)


def test_paired_gain_by_hand():
    """Differences image by image, NaN images (no object on the grid) left out; SE = std / sqrt(n)."""
    values = torch.tensor([0.5, 0.4, float("nan"), 0.3])
    reference = torch.tensor([0.2, 0.2, 0.9, 0.2])
    gain, se = paired_gain(values, reference)
    assert gain == pytest.approx((0.3 + 0.2 + 0.1) / 3)
    assert se == pytest.approx(0.1 / 3**0.5)  # sample std of (0.3, 0.2, 0.1) is 0.1
    assert paired_gain(None, reference) == (None, None)


def test_centre_prior_iou_by_hand():
    """On a 4x4 grid the 4 central cells; an object filling them scores 1, one in a corner cell 0."""
    centred = torch.zeros(2, 4, 4, dtype=torch.bool)
    centred[0, 1:3, 1:3] = True  # exactly the central 2x2
    centred[1, 0, 0] = True  # a corner cell only
    assert centre_prior_iou(centred[:1], 4, 4) == pytest.approx(1.0)
    assert centre_prior_iou(centred[1:], 4, 4) == pytest.approx(0.0)
    assert centre_prior_iou(centred, 4, 4) == pytest.approx(0.5)
    assert centre_prior_iou(centred[:1], 4, 8) == pytest.approx(0.5)  # 8 cells: the 4 central ones + 4 of the next ring


def test_iou_verdict_says_clearly_only_at_three_standard_errors():
    assert iou_verdict(0.227, 0.173, 0.054, 0.006) == "clearly above"  # 9 SE
    assert iou_verdict(0.273, 0.256, 0.017, 0.010) == "not clearly different from"  # 1.7 SE: reversed on another seed
    assert iou_verdict(0.068, 0.256, -0.188, 0.006) == "clearly below"
    assert iou_verdict(0.250, 0.256, -0.006, 0.010) == "not clearly different from"
    assert iou_verdict(0.30, 0.25, None, None) == "above" and iou_verdict(0.20, 0.25, 0.0, 0.0) == "not above"
