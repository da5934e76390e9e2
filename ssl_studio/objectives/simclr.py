"""SimCLR: two augmented views of an image attract, every other image in the batch repels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_studio.objectives.base import CONTRASTIVE_ACCURACY, Batch, ProjectedObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import contrastive_accuracy, nt_xent
from ssl_studio.params import param


@dataclass
class SimCLRParams:
    """Chen et al. 2020 ("A Simple Framework for Contrastive Learning of Visual Representations").

    The paper's CIFAR-10 runs use a 2048-wide projector to 128 dimensions and
    temperature 0.5 at batch 512-1024; solo-learn's CIFAR recipe uses 0.2.  On a
    2-core CPU the batch is 256, where 0.2 learns faster, and a 512-wide projector
    keeps the head cheap next to the small backbone.
    """

    temperature: float = param(0.2, help="Softmax temperature of NT-Xent: lower sharpens the penalty on hard negatives.", min=0.0, min_exclusive=True, max=10.0)
    proj_hidden: int = param(512, help="Hidden width of the projection head.", min=8, max=8192)
    proj_dim: int = param(128, help="Output width of the projection head (the space the loss sees).", min=2, max=4096)


class SimCLR(ProjectedObjective):
    name = "simclr"
    title = "SimCLR"
    family = "contrastive"
    description = ("Two augmented views of each image must find each other among all others in the batch.\n"
                   "Negatives keep the embedding spread out; temperature sets how hard negatives count.")
    Params = SimCLRParams
    honours = frozenset({"no_projector", "no_temperature"})
    recipe = OptimRecipe(optimizer="lars", lr=0.4, weight_decay=1e-5)  # solo-learn CIFAR recipe (LARS, 0.4 at batch 256)
    # Under torchrun: every rank's embeddings are negatives (gathered with gradient), and BN is global
    # (the paper's "global BN", §B.9: statistics over all devices).
    batch_exchange = "gathered negatives"
    sync_batchnorm = True
    metric_specs = {"contrastive_acc": CONTRASTIVE_ACCURACY}

    def __init__(self, backbone, params: SimCLRParams, context):
        super().__init__(backbone, params, context)
        self.build_projector(params.proj_hidden, params.proj_dim, num_layers=2)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        v1, v2 = batch.views[0], batch.views[1]
        z = self.project(torch.cat([v1, v2]))
        z1, z2 = z.chunk(2)
        if self.ablated("no_temperature"):
            loss = nt_xent(z1, z2, temperature=1.0, normalize=False, across_ranks=True)
        else:
            loss = nt_xent(z1, z2, temperature=self.params.temperature, across_ranks=True)
        return StepOutput(loss, {"contrastive_acc": contrastive_accuracy(z1, z2)})

