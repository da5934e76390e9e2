"""VICReg: invariance between views, variance kept above a floor, covariance driven to zero."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_studio.objectives.base import Batch, MetricSpec, ProjectedObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import vicreg_loss
from ssl_studio.params import param


@dataclass
class VICRegParams:
    """Bardes, Ponce & LeCun 2022 ("VICReg: Variance-Invariance-Covariance Regularization").

    Published: λ = μ = 25, ν = 1, γ = 1, ε = 1e-4, a 3-layer expander 8192 wide.
    Adapted: the expander is 1024 wide for a 2-core CPU; the coefficients are the paper's.
    """

    invariance_weight: float = param(25.0, help="λ: weight of the mean squared distance between views.", min=0.0, max=1000.0)
    variance_weight: float = param(25.0, help="μ: weight of the hinge keeping each dimension's std above gamma.", min=0.0, max=1000.0)
    covariance_weight: float = param(1.0, help="ν: weight of the squared off-diagonal covariances.", min=0.0, max=1000.0)
    gamma: float = param(1.0, help="Target standard deviation of every embedding dimension.", min=0.0, max=100.0)
    eps: float = param(1e-4, help="Added to the variance before the square root, for stability.", min=0.0, min_exclusive=True, max=1.0)
    proj_hidden: int = param(1024, help="Hidden width of the expander (paper: 8192).", min=8, max=16384)
    proj_dim: int = param(1024, help="Output width of the expander (paper: 8192).", min=2, max=16384)


class VICReg(ProjectedObjective):
    """The three terms are reported every step; an ablated term is still measured but not trained on."""

    name = "vicreg"
    title = "VICReg"
    family = "negative-free"
    description = ("Views must agree (invariance) while every dimension keeps its spread (variance)\n"
                   "and dimensions stay uncorrelated (covariance): collapse is prevented explicitly.")
    Params = VICRegParams
    honours = frozenset({"no_projector", "no_variance", "no_covariance"})
    recipe = OptimRecipe(optimizer="lars", lr=0.3, weight_decay=1e-4)  # solo-learn CIFAR (paper: LARS 0.2 x B/256, wd 1e-6)
    # Under torchrun: variance and covariance over the global batch (embeddings gathered with gradient,
    # the official FullGatherLayer); BN synchronised, as the official code.
    batch_exchange = "global statistics"
    sync_batchnorm = True
    metric_specs = {"invariance": MetricSpec("Invariance", "", "terms"), "variance": MetricSpec("Variance", "", "terms"),
                    "covariance": MetricSpec("Covariance", "", "terms")}

    def __init__(self, backbone, params: VICRegParams, context):
        super().__init__(backbone, params, context)
        self.build_projector(params.proj_hidden, params.proj_dim, num_layers=3)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        p = self.params
        z1, z2 = self.project(torch.cat([batch.views[0], batch.views[1]])).chunk(2)
        terms = vicreg_loss(
            z1, z2,
            invariance_weight=p.invariance_weight,
            variance_weight=0.0 if self.ablated("no_variance") else p.variance_weight,
            covariance_weight=0.0 if self.ablated("no_covariance") else p.covariance_weight,
            gamma=p.gamma, eps=p.eps, across_ranks=True,
        )
        return StepOutput(terms["loss"], {k: terms[k].detach() for k in ("invariance", "variance", "covariance")})
