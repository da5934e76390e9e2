"""A probe reuses the backbone features it already computed for the projector rank: the same numbers, one forward pass fewer."""

from __future__ import annotations

import pytest
import torch

from ssl_studio.config import RunConfig
from ssl_studio.engine.probing import _NOT_REUSED
from ssl_studio.engine.trainer import Trainer


def _trained_prober(tmp_path, name: str, ablations=(), precision: str = "auto"):
    cfg = RunConfig()
    cfg.objective.name, cfg.ablations, cfg.precision = name, list(ablations), precision
    cfg.budget.steps, cfg.batch_size, cfg.data.num_images, cfg.out = 2, 16, 400, str(tmp_path)
    cfg.probe.every = cfg.probe.visuals_every = 0
    trainer = Trainer(cfg)
    trainer._evaluate = dict  # the closing evaluation is not what this checks
    assert trainer.run().ok
    return trainer.prober


@pytest.mark.parametrize("name, ablations, precision", [("simclr", (), "auto"), ("simclr", (), "float32"),
                                                        ("vicreg", (), "auto"), ("simclr", ("no_projector",), "auto")])
def test_the_projector_embedding_from_reused_features_equals_a_fresh_forward_pass(tmp_path, name, ablations, precision):
    prober = _trained_prober(tmp_path, name, ablations, precision)
    with torch.no_grad():
        reused = prober._project_features(prober.embed(prober.probe_index)[:512])
        fresh = prober._projector_embed_images()
    assert reused is not _NOT_REUSED and fresh is not None
    assert torch.equal(reused.float().cpu(), fresh.float().cpu())


def test_an_objective_with_its_own_projector_embedding_still_runs_it(tmp_path):
    prober = _trained_prober(tmp_path, "dino")  # its projector embedding is the head's bottleneck, not ``projector``
    assert prober._project_features(prober.embed(prober.probe_index)[:512]) is _NOT_REUSED
