"""Alignment + uniformity (Wang & Isola 2020): the two terms against hand-computed values, and a tiny run."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_studio.cli import main
from ssl_studio.objectives import get_objective
from ssl_studio.objectives.align_uniform import alignment_loss, uniformity_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_alignment_is_the_mean_distance_to_the_power_alpha():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # row 0: distance sqrt(2); row 1: 0
    assert alignment_loss(x, y, alpha=2.0).item() == pytest.approx((2.0 + 0.0) / 2)
    assert alignment_loss(x, y, alpha=1.0).item() == pytest.approx(math.sqrt(2.0) / 2)


def test_uniformity_is_zero_for_a_collapsed_batch_and_lower_when_spread():
    same = torch.tensor([[1.0, 0.0]] * 4)
    assert uniformity_loss(same, t=2.0).item() == pytest.approx(0.0)  # log mean exp(0)
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # 6 pairs: 4 neighbours at squared distance 2, 2 opposites at 4
    expected = math.log((4 * math.exp(-2 * 2.0) + 2 * math.exp(-2 * 4.0)) / 6)
    assert uniformity_loss(square, t=2.0).item() == pytest.approx(expected)
    assert uniformity_loss(square, t=2.0) < uniformity_loss(same, t=2.0)


def test_the_objective_is_registered_with_its_declarations():
    cls = get_objective("align-uniform")
    assert cls.has_projector and cls.family == "contrastive" and "no_projector" in cls.honours
    assert set(cls.metric_specs) == {"alignment", "uniformity"}


def test_it_trains_from_the_cli(tmp_path):
    assert main(["train", "--objective", "align-uniform", "--data", "shapes", "--steps", "3", "--batch-size", "16", "--quiet",
                 "--device", "cpu", "--set", "data.num_images=64", "--set", "data.resolution=16", "--set", "probe.size=16",
                 "--set", "probe.visuals_every=0", "--set", "model.width=8", "--set", "workers=1", "--out", str(tmp_path)]) == 0
    metrics = next(tmp_path.glob("*/metrics.jsonl")).read_text()
    assert '"alignment"' in metrics and '"uniformity"' in metrics
