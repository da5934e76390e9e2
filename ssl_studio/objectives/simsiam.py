"""SimSiam: BYOL without the moving average; a predictor and a stop-gradient alone prevent collapse."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_studio.models import MLPHead
from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import negative_cosine
from ssl_studio.params import param


@dataclass
class SimSiamParams:
    """Chen & He 2021 ("Exploring Simple Siamese Representation Learning", §3 and appendix).

    The paper's CIFAR projector has 2 layers of 2048 ending in an affine-free
    batch norm, and the predictor a 512-wide bottleneck (a quarter of the output).
    Here the projector is 512 wide to 512 with a 128-wide bottleneck: the same
    4:1 ratio at a width a 2-core CPU can afford beside the small backbone.
    """

    proj_hidden: int = param(512, help="Hidden width of the projector (paper CIFAR: 2048).", min=8, max=8192)
    proj_dim: int = param(512, help="Output width of the projector (paper CIFAR: 2048).", min=2, max=8192)
    pred_hidden: int = param(128, help="Bottleneck width of the predictor, a quarter of proj_dim in the paper (512).", min=2, max=8192)
    proj_layers: int = param(2, help="Linear layers in the projector (paper: 2 for CIFAR, 3 for ImageNet).", min=1, max=4)


class SimSiam(Objective):
    """One shared encoder; D(p1, sg(z2))/2 + D(p2, sg(z1))/2 with D the negative cosine.

    ``no_stop_gradient`` lets the gradient flow through both z's (the paper's §4.1
    experiment: the loss reaches -1 at once and the representation collapses);
    ``no_predictor`` removes the predictor, so p = z (also collapses, §4.2).
    """

    name = "simsiam"
    title = "SimSiam"
    family = "negative-free"
    description = ("Two views through one shared encoder: a predictor maps one to the other, whose output is held fixed.\n"
                   "No negatives, no momentum encoder: the stop-gradient alone keeps it from collapsing.")
    Params = SimSiamParams
    honours = frozenset({"no_predictor", "no_stop_gradient"})
    # Paper: SGD, lr 0.05 x B/256 (0.03 on CIFAR), wd 1e-4 (5e-4 on CIFAR), 800 epochs.  A run of a
    # few hundred steps needs solo-learn's CIFAR rate (0.5 per 256, wd 1e-5): measured on shapes at
    # batch 128 over 50 steps, 0.1 left the no-stop-gradient twin's loss at -0.3 with no collapse
    # yet, 0.5 took it to -0.84 with the backbone's effective rank at 7.5 (healthy: 37).
    recipe = OptimRecipe(optimizer="sgd", lr=0.5, weight_decay=1e-5)
    # Under torchrun: a per-sample loss; BN synchronised, as the official code (SyncBN).
    batch_exchange = "none"
    sync_batchnorm = True
    has_projector = True
    metric_specs = {"z_std": MetricSpec("Spread of the normalised projection", "", "collapse")}

    def __init__(self, backbone, params: SimSiamParams, context):
        super().__init__(backbone, params, context)
        self.build_projector(params.proj_hidden, params.proj_dim, num_layers=params.proj_layers, last_batch_norm=True)
        self.predictor = None if self.ablated("no_predictor") else MLPHead(params.proj_dim, params.pred_hidden, params.proj_dim, num_layers=2)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        z = self.project(torch.cat([batch.views[0], batch.views[1]]))
        p = z if self.predictor is None else self.predictor(z)
        t = z if self.ablated("no_stop_gradient") else z.detach()
        z1, z2 = t.chunk(2)
        p1, p2 = p.chunk(2)
        loss = 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
        with torch.no_grad():
            zn = torch.nn.functional.normalize(z.float(), dim=1)
            z_std = zn.std(0).mean()  # the paper's collapse monitor: ~1/sqrt(d) healthy, 0 collapsed
        return StepOutput(loss, {"z_std": z_std})
