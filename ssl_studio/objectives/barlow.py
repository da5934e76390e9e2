"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_studio.objectives.base import Batch, MetricSpec, ProjectedObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import barlow_twins_loss
from ssl_studio.params import param


@dataclass
class BarlowParams:
    """Zbontar et al. 2021 ("Barlow Twins: Self-Supervised Learning via Redundancy Reduction").

    Published: λ = 5e-3 (the official code's 0.0051), a 3-layer projector 8192 wide.
    Adapted: the projector is 1024 wide (a 2-core CPU would spend most of a step in
    8192-wide layers, and the cross-correlation of 8192 dimensions from a batch of
    256 is mostly noise).  λ stays at the paper's value.
    """

    lambda_offdiag: float = param(5e-3, help="Weight of the redundancy-reduction (off-diagonal) term.", min=0.0, max=10.0)
    proj_hidden: int = param(1024, help="Hidden width of the projector (paper: 8192).", min=8, max=16384)
    proj_dim: int = param(1024, help="Output width of the projector (paper: 8192).", min=2, max=16384)


class BarlowTwins(ProjectedObjective):
    """Invariance on the diagonal, decorrelation off it; ``no_covariance`` keeps only the diagonal."""

    name = "barlow"
    title = "Barlow Twins"
    family = "negative-free"
    description = ("The cross-correlation between the embeddings of two views is pushed to the identity.\n"
                   "The diagonal makes views agree, the off-diagonal makes dimensions carry different information.")
    Params = BarlowParams
    honours = frozenset({"no_projector", "no_covariance"})
    recipe = OptimRecipe(optimizer="lars", lr=0.3, weight_decay=1e-4)  # solo-learn CIFAR (paper: LARS 0.2, wd 1.5e-6 at B=2048)
    # Under torchrun: the standardisation and the cross-correlation over the global batch (all-reduced
    # with gradient, the official code's all_reduce(c)); BN synchronised, as the official code.
    batch_exchange = "global statistics"
    sync_batchnorm = True
    metric_specs = {"on_diag": MetricSpec("Invariance (diagonal)", "", "terms"),
                    "off_diag": MetricSpec("Redundancy (off-diagonal)", "", "terms")}

    def __init__(self, backbone, params: BarlowParams, context):
        super().__init__(backbone, params, context)
        self.build_projector(params.proj_hidden, params.proj_dim, num_layers=3)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        z1, z2 = self.project(torch.cat([batch.views[0], batch.views[1]])).chunk(2)
        lam = 0.0 if self.ablated("no_covariance") else self.params.lambda_offdiag
        terms = barlow_twins_loss(z1, z2, lam, across_ranks=True)
        return StepOutput(terms["loss"], {"on_diag": terms["on_diag"].detach(), "off_diag": terms["off_diag"].detach()})
