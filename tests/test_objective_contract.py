"""The objective contract's declared capabilities: what the engine and the window read instead of probing.

Every step metric an objective reports is declared in ``metric_specs``; the projector, the momentum targets,
the text tower and the attention backbone are class data or base-class methods; the engine owns the ablations
it implements; an objective that runs on some backbones only gets one when the person chose none.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import distributed_equivalence as eq  # noqa: E402
from ssl_studio.cli import main  # noqa: E402
from ssl_studio.config import ModelConfig, config_from_mapping  # noqa: E402
from ssl_studio.models import build_backbone  # noqa: E402
from ssl_studio.objectives import ObjectiveContext, all_objectives  # noqa: E402
from ssl_studio.objectives.base import ENGINE_ABLATIONS, MetricSpec, MomentumObjective  # noqa: E402
from ssl_studio.params import ConfigError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("case", list(eq.cases()))
def test_every_reported_step_metric_is_declared(case):
    """Every registered objective at its defaults, and the options that add metrics (iBOT, KoLeo, SigLIP)."""
    objective, _, batches = eq.build(case)
    objective.train()
    out = objective.training_step(batches[0], 0.5)
    specs = type(objective).metric_specs
    undeclared = sorted(set(out.metrics) - set(specs))
    assert not undeclared, f"{case} reports step metrics it does not declare in metric_specs: {undeclared}"
    assert all(isinstance(spec, MetricSpec) and spec.title and spec.group for spec in specs.values())


def make(name, ablations=(), backbone="convnet"):
    cls = all_objectives()[name]
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone=backbone, width=8, depth=2 if backbone == "vit" else 0), 32)
    return cls(bb, cls.parse_params({}), ObjectiveContext(image_size=32, ablations=frozenset(ablations), batch_size=8))


@pytest.mark.parametrize("name", ["simclr", "mocov2", "mocov3", "byol", "swav", "barlow", "vicreg"])
def test_no_projector_is_honoured_by_the_one_builder(name):
    with_head, without = make(name), make(name, ["no_projector"])
    assert type(with_head).has_projector and with_head.projector is not None and without.projector is None
    x = torch.randn(4, 3, 32, 32)
    without.eval()
    assert without.projector_embed(x).shape[1] == without.backbone.feature_dim  # what the loss sees: the backbone's features


@pytest.mark.parametrize("name,targets", [("byol", 2), ("mocov2", 2), ("mocov3", 2), ("dino", 2), ("ijepa", 1)])
def test_momentum_objectives_own_their_targets(name, targets):
    obj = make(name, backbone="vit" if name == "ijepa" else "convnet")
    assert isinstance(obj, MomentumObjective) and len(obj.momentum_pairs()) == targets
    for online, target in obj.momentum_pairs():
        assert target is not online and not any(p.requires_grad for p in target.parameters())
    assert make(name, ["no_ema"], backbone="vit" if name == "ijepa" else "convnet").momentum_pairs() == []


def test_capabilities_are_class_data():
    objectives = all_objectives()
    assert [n for n, c in objectives.items() if c.has_text_tower] == ["clip"]
    for cls in objectives.values():
        assert not cls.honours & ENGINE_ABLATIONS and ENGINE_ABLATIONS <= cls.ablation_switches()
    ijepa = make("ijepa", backbone="vit")
    assert ijepa.attention_backbone is ijepa.target_encoder
    simclr = make("simclr")
    assert simclr.attention_backbone is simclr.backbone
    with pytest.raises(NotImplementedError):
        simclr.encode_text(["a circle"])


def test_an_engine_ablation_is_accepted_without_being_declared():
    cfg = config_from_mapping({"objective": {"name": "simclr"}, "ablations": ["no_augmentation", "tiny_batch"]})
    assert cfg.ablations == ["no_augmentation", "tiny_batch"]
    with pytest.raises(ConfigError, match="does not apply to simclr") as err:
        config_from_mapping({"objective": {"name": "simclr"}, "ablations": ["no_ema"]})
    assert err.value.field == "ablations"


def test_a_vit_only_objective_gets_the_vit_only_when_no_backbone_was_chosen():
    assert config_from_mapping({"objective": {"name": "mae"}}).model.backbone == "vit"
    assert config_from_mapping({"objective": {"name": "simclr"}}).model.backbone == "convnet"
    assert config_from_mapping({"objective": {"name": "ijepa"}, "model": {"width": 8}}).model.backbone == "vit"
    assert config_from_mapping({"objective": {"name": "mae"}, "model": {"backbone": "convnet"}}).model.backbone == "convnet"


TINY = ["--data", "shapes", "--steps", "2", "--batch-size", "8", "--quiet", "--device", "cpu", "--set", "data.num_images=48",
        "--set", "data.resolution=16", "--set", "probe.every=0", "--set", "probe.visuals_every=0", "--set", "probe.size=16",
        "--set", "model.width=8", "--set", "workers=1"]


@pytest.mark.parametrize("name", ["mae", "ijepa"])
def test_cli_trains_a_vit_only_objective_on_the_vit_when_no_backbone_was_chosen(name, tmp_path, capsys):
    assert main(["train", "--objective", name, *TINY, "--set", "model.depth=1", "--out", str(tmp_path)]) == 0
    config = next(tmp_path.glob("*/config.toml")).read_text()
    assert 'backbone = "vit"' in config


def test_cli_refuses_a_chosen_backbone_that_does_not_fit_in_one_sentence(tmp_path, capsys):
    assert main(["train", "--objective", "mae", "--backbone", "convnet", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model.backbone must be one of vit for MAE, got 'convnet'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
