"""Alignment and uniformity: two views' embeddings close together, all embeddings spread over the sphere.

Wang & Isola 2020 ("Understanding Contrastive Representation Learning through Alignment and Uniformity
on the Hypersphere", ICML) show that the contrastive loss optimises two properties of L2-normalised
features, and train on them directly:

    L_align   = E ||f(x) - f(y)||^alpha                      over positive pairs (two views of one image)
    L_uniform = log E exp(-t ||f(x) - f(x')||^2)             over all pairs of the batch

Alignment alone collapses (every image to one point); uniformity is the part that forbids it, without
negatives in the softmax sense.  The example of docs/adding-an-objective.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_studio.objectives import collectives
from ssl_studio.objectives.base import Batch, MetricSpec, OptimRecipe, ProjectedObjective, StepOutput
from ssl_studio.params import param


def alignment_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean of ``||x_i - y_i||^alpha`` over the rows of two L2-normalised ``B x D`` embeddings."""
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity_loss(x: torch.Tensor, t: float = 2.0, across_ranks: bool = False) -> torch.Tensor:
    """``log`` of the mean of ``exp(-t ||x_i - x_j||^2)`` over all pairs ``i < j`` of L2-normalised rows.

    ``across_ranks``: the pairs of the global batch under torchrun (rows gathered with gradient); every
    rank then computes the same value, so the mean over ranks is the global batch's.
    """
    if across_ranks:
        x = collectives.gather(x)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@dataclass
class AlignUniformParams:
    """Wang & Isola 2020: alpha = 2, t = 2 and equal weights (the authors' reference code).

    Adapted as the lab's other joint-embedding methods: the loss sees a 2-layer projection head,
    512 wide to 128 dimensions, on the backbone (the features every evaluation reads).
    """

    align_alpha: float = param(2.0, help="Exponent of the distance between two views' embeddings (paper: 2).", min=0.5, max=4.0)
    uniform_t: float = param(2.0, help="Scale t of the Gaussian potential between embeddings (paper: 2).", min=0.1, max=20.0)
    uniform_weight: float = param(1.0, help="Weight of the uniformity term beside the alignment term (paper: 1).", min=0.0, max=100.0)
    proj_hidden: int = param(512, help="Hidden width of the projection head.", min=8, max=8192)
    proj_dim: int = param(128, help="Output width of the projection head (the sphere the loss sees).", min=2, max=4096)


class AlignUniform(ProjectedObjective):
    """Loss = L_align(z1, z2) + w (L_uniform(z1) + L_uniform(z2)) / 2 on normalised projections."""

    name = "align-uniform"
    title = "Alignment + uniformity"
    family = "contrastive"
    description = ("Two views of an image are pulled together while all embeddings are spread evenly over the sphere.\n"
                   "The two halves of the contrastive loss, trained directly: uniformity alone prevents collapse.")
    Params = AlignUniformParams
    honours = frozenset({"no_projector"})
    recipe = OptimRecipe(optimizer="lars", lr=0.4, weight_decay=1e-5)  # the lab's SimCLR recipe: the same kind of loss
    # Under torchrun: uniformity over the pairs of the global batch (embeddings gathered with gradient);
    # BN synchronised, as for SimCLR.
    batch_exchange = "gathered negatives"
    sync_batchnorm = True
    metric_specs = {"alignment": MetricSpec("Alignment", "", "terms"), "uniformity": MetricSpec("Uniformity", "", "terms")}

    def __init__(self, backbone, params: AlignUniformParams, context):
        super().__init__(backbone, params, context)
        self.build_projector(params.proj_hidden, params.proj_dim, num_layers=2)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        p = self.params
        z = F.normalize(self.project(torch.cat([batch.views[0], batch.views[1]])).float(), dim=1)
        z1, z2 = z.chunk(2)
        align = alignment_loss(z1, z2, p.align_alpha)
        uniform = 0.5 * (uniformity_loss(z1, p.uniform_t, across_ranks=True) + uniformity_loss(z2, p.uniform_t, across_ranks=True))
        loss = align + p.uniform_weight * uniform
        return StepOutput(loss, {"alignment": align.detach(), "uniformity": uniform.detach()})


__all__ = ["AlignUniform", "AlignUniformParams", "alignment_loss", "uniformity_loss"]
