"""SwAV: predict the cluster code of one crop from another, codes balanced over prototypes by Sinkhorn-Knopp."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.objectives import collectives as distributed
from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import sinkhorn_knopp, swav_swapped_loss
from ssl_studio.objectives.multicrop import forward_crops
from ssl_studio.params import param


@dataclass
class SwAVParams:
    """Caron et al. 2020 ("Unsupervised Learning of Visual Features by Contrasting Cluster Assignments").

    Published: 3000 prototypes, a 2048-wide head to 128 dimensions, temperature 0.1,
    Sinkhorn epsilon 0.05 with 3 iterations, 2 global + 6 local crops (224/96 px),
    prototypes frozen for the first epoch, a queue of 3840 features for batches
    under 256.  Adapted: 128 prototypes (the shapes set has tens of visual modes, not
    thousands, and each prototype needs several samples per batch to be balanced
    over), a 512-wide head, 2 local crops of 16 px (``augment.local_size``) next to
    the 32 px globals, prototypes frozen for the first 5 % of the budget, and the
    queue off by default (turn it on with ``queue_size`` for batches under ~128).
    """

    num_prototypes: int = param(128, help="Number of prototypes (cluster centres) (paper: 3000).", min=2, max=65536)
    temperature: float = param(0.1, help="Softmax temperature of the swapped prediction.", min=0.0, min_exclusive=True, max=10.0)
    epsilon: float = param(0.05, help="Entropic regularisation of Sinkhorn-Knopp: higher gives softer codes.", min=0.0, min_exclusive=True, max=10.0)
    sinkhorn_iterations: int = param(3, help="Sinkhorn-Knopp iterations.", min=1, max=100)
    local_crops: int = param(2, help="Small local crops per image besides the 2 global views (paper: 6).", min=0, max=12)
    freeze_prototypes: float = param(0.05, help="Share of the budget during which the prototypes get no gradient.", min=0.0, max=1.0)
    queue_size: int = param(0, help="Features of earlier batches kept per global crop for computing codes (0 = off; paper: 3840).", min=0, max=65536)
    queue_start: float = param(0.15, help="Share of the budget after which the queue is used (paper: epoch 15 of 100+).", min=0.0, max=1.0)
    proj_hidden: int = param(512, help="Hidden width of the projection head (paper: 2048).", min=8, max=8192)
    proj_dim: int = param(128, help="Output width of the projection head (paper: 128).", min=2, max=4096)


class SwAV(Objective):
    """Codes from the two global crops; every crop predicts the codes of the other global crops.

    Under torchrun the Sinkhorn-Knopp codes are those of the global batch (sums over samples
    all-reduced, as the official distributed Sinkhorn), the queue holds the features of every rank
    (the same on every rank; its rows join the codes' problem once, on rank 0), and BatchNorm is
    synchronised (the official code's SyncBN).
    """

    name = "swav"
    title = "SwAV"
    family = "clustering"
    description = ("Each crop predicts which prototype another crop of the same image was assigned to.\n"
                   "Sinkhorn-Knopp balances the assignments over the prototypes, so they cannot all be the same.")
    Params = SwAVParams
    honours = frozenset({"no_projector"})
    recipe = OptimRecipe(optimizer="lars", lr=0.6, weight_decay=1e-6)  # solo-learn CIFAR (paper: LARS 4.8 at B=4096, wd 1e-6)
    batch_exchange = "global statistics"
    sync_batchnorm = True
    has_projector = True
    metric_specs = {"prototypes_used": MetricSpec("Prototypes some code picks", "prototypes", "codes")}

    def __init__(self, backbone, params: SwAVParams, context):
        super().__init__(backbone, params, context)
        dim = self.build_projector(params.proj_hidden, params.proj_dim, num_layers=2)
        self.prototypes = nn.Linear(dim, params.num_prototypes, bias=False)
        self.normalize_prototypes()
        self.register_buffer("queue", torch.zeros(self.num_global_views, params.queue_size, dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    @property
    def num_local_views(self) -> int:
        return self.params.local_crops

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def project(self, x):
        return F.normalize(super().project(x), dim=1)

    def prototypes_frozen(self, progress: float) -> bool:
        return progress < self.params.freeze_prototypes

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        self.normalize_prototypes()  # the paper projects the prototypes back onto the sphere every step
        n_global = self.num_global_views
        z = forward_crops(self.project, batch.views, self.backbone)
        w = self.prototypes.weight.detach() if self.prototypes_frozen(progress) else self.prototypes.weight
        scores = [F.linear(zi, w) for zi in z]
        bsz = z[0].shape[0]
        use_queue = self.params.queue_size > 0 and progress >= self.params.queue_start and int(self.queue_filled) >= self.params.queue_size
        codes = []
        with torch.no_grad():
            for i in range(n_global):
                s = scores[i].detach().float()
                if use_queue and distributed.rank() == 0:  # the queue is every rank's: its rows count once
                    s = torch.cat([s, self.queue[i].float() @ w.detach().float().T])
                codes.append(sinkhorn_knopp(s, self.params.epsilon, self.params.sinkhorn_iterations, across_ranks=True)[:bsz])
        loss = swav_swapped_loss(scores, codes, self.params.temperature)
        if self.params.queue_size > 0:
            self._pending = torch.stack([distributed.gather_no_grad(zi.detach().float()) for zi in z[:n_global]])
        with torch.no_grad():
            used = torch.cat([c.argmax(1) for c in codes]).unique().numel()
        return StepOutput(loss, {"prototypes_used": float(used)})

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self._pending is None:
            return
        size = self.params.queue_size
        new = self._pending[:, -size:].to(self.queue.dtype)
        n = new.shape[1]
        self.queue.copy_(torch.cat([new, self.queue[:, : size - n]], dim=1))  # newest first, oldest dropped
        self.queue_filled.fill_(min(size, int(self.queue_filled) + n))
        self._pending = None
