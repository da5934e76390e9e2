"""MoCo v2 and v3: a momentum key encoder supplies the keys a query must recognise.

v2 keeps a queue of keys from earlier batches as negatives, so the number of
negatives does not depend on the batch; v3 drops the queue, adds a predictor
and uses the other keys of the batch as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_studio.objectives import collectives as distributed
from ssl_studio.models import MLPHead
from ssl_studio.objectives.base import CONTRASTIVE_ACCURACY, MOMENTUM_METRIC, Batch, MomentumObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import contrastive_accuracy, infonce_with_queue, mocov3_loss
from ssl_studio.params import param


class _MomentumKeys:
    """Both MoCos' key encoder: the momentum copies of backbone and projector (the online ones under no_ema)."""

    @torch.no_grad()
    def key(self, x):
        if self.key_backbone is None:
            return self.project(x)
        h = self.key_backbone(x)
        return h if self.key_projector is None else self.key_projector(h)


@dataclass
class MoCoV2Params:
    """Chen, Fan, Girshick & He 2020 ("Improved Baselines with Momentum Contrastive Learning").

    Published: a 2048-wide MLP head to 128 dimensions, temperature 0.2, momentum
    0.999 and a queue of 65,536 keys.  Adapted to a 2-core CPU and runs of a few
    hundred steps: a 512-wide head, momentum 0.99 (0.999 makes the key encoder
    lag the query encoder by ~1000 steps, longer than the whole run; solo-learn's
    CIFAR recipe starts at 0.99 too) and a queue of 4096 keys (with ~10k training
    images, 65,536 keys would be several epochs old and come from a stale encoder).
    """

    temperature: float = param(0.2, help="Softmax temperature of InfoNCE.", min=0.0, min_exclusive=True, max=10.0)
    queue_size: int = param(4096, help="Keys from earlier batches kept as negatives (paper: 65536); any size works, a multiple of 2 x batch wastes no slot.", min=0, max=262144)
    momentum: float = param(0.99, help="Momentum of the key encoder (paper: 0.999).", min=0.0, max=1.0)
    proj_hidden: int = param(512, help="Hidden width of the MLP head (paper: 2048).", min=8, max=8192)
    proj_dim: int = param(128, help="Output width of the MLP head (paper: 128).", min=2, max=4096)


class MoCoV2(_MomentumKeys, MomentumObjective):
    """Query = backbone + head; key = EMA copy of both, no gradient; negatives from a queue.

    The loss is symmetrised (each view serves once as query and once as key), as in
    solo-learn's MoCo v2+ and MoCo v3: with small batches it doubles the signal per
    step.  Both views' keys are enqueued.  The queue is a registered buffer, so it
    is saved and resumed with the state dict; it starts filled with random unit
    vectors, as in the official code.  There is no shuffling BN: on one device the
    batch statistics leak little, and solo-learn trains MoCo v2+ without it too.
    ``no_temperature`` uses cosine logits with τ = 1 (plain dot products of
    un-normalised keys would let the queue's scale drift without bound).

    Under torchrun the keys of every rank enter the queue (gathered, no gradient), so the
    queue is the same on every rank and the same as one process's; BatchNorm stays per rank,
    as in the official code (which shuffles the batch across GPUs instead; not done here).
    """

    name = "mocov2"
    title = "MoCo v2"
    family = "contrastive"
    description = ("A query must find the key a slow momentum copy of the encoder makes of the other view.\n"
                   "Negatives come from a queue of earlier batches, so many are seen even with small batches.")
    Params = MoCoV2Params
    honours = frozenset({"no_projector", "no_temperature", "no_ema"})
    recipe = OptimRecipe(optimizer="sgd", lr=0.3, weight_decay=1e-4)  # solo-learn CIFAR (paper: SGD 0.03 at B=256, 800 epochs)
    batch_exchange = "global queue"
    has_projector = True
    momentum_targets = (("backbone", "key_backbone"), ("projector", "key_projector"))
    metric_specs = {"contrastive_acc": CONTRASTIVE_ACCURACY}

    def __init__(self, backbone, params: MoCoV2Params, context):
        super().__init__(backbone, params, context)
        dim = self.build_projector(params.proj_hidden, params.proj_dim, num_layers=2, batch_norm=False)
        self.build_momentum_targets(enabled=not self.ablated("no_ema"))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("queue", F.normalize(torch.randn(params.queue_size, dim, generator=g), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def momentum_schedule(self) -> tuple[float, float]:
        return self.params.momentum, self.params.momentum  # MoCo v2 keeps one momentum throughout

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        v = torch.cat([batch.views[0], batch.views[1]])
        q1, q2 = self.project(v).chunk(2)
        k1, k2 = self.key(v).detach().chunk(2)
        t = 1.0 if self.ablated("no_temperature") else self.params.temperature
        queue = self.queue.clone()  # a snapshot: the enqueue after the step must not touch the graph
        loss = 0.5 * (infonce_with_queue(q1, k2, queue, t) + infonce_with_queue(q2, k1, queue, t))
        self._pending = F.normalize(torch.cat([distributed.gather_no_grad(k1), distributed.gather_no_grad(k2)]).float(), dim=1)
        return StepOutput(loss, {"contrastive_acc": contrastive_accuracy(q1, k2)})

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys at the pointer, wrapping around: any queue size works with any batch."""
        size = self.queue.shape[0]
        if size == 0:
            return
        keys = keys[-size:].to(self.queue.dtype)
        n = keys.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=self.queue.device)) % size
        self.queue[idx] = keys
        self.queue_ptr.fill_(int((self.queue_ptr + n) % size))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.update_targets(progress)
        if self._pending is not None:
            self.enqueue(self._pending)
            self._pending = None


@dataclass
class MoCoV3Params:
    """Chen, Xie & He 2021 ("An Empirical Study of Training Self-Supervised Vision Transformers").

    Published: 3-layer projector and 2-layer predictor 4096 wide to 256, momentum
    0.99 raised to 1 by a cosine schedule, temperature 1.0 for ResNets and 0.2 for
    ViTs (the official code's default is 1.0; solo-learn's CIFAR recipe uses 0.2).
    Adapted: heads 1024 wide for a 2-core CPU, temperature 0.2, which learns
    faster from small batches with either backbone.
    """

    temperature: float = param(0.2, help="Softmax temperature (paper: 0.2 for ViT, 1.0 for ResNet).", min=0.0, min_exclusive=True, max=10.0)
    base_momentum: float = param(0.99, help="Key encoder momentum at the start; cosine schedule to final_momentum.", min=0.0, max=1.0)
    final_momentum: float = param(1.0, help="Key encoder momentum at the end of the budget.", min=0.0, max=1.0)
    proj_hidden: int = param(1024, help="Hidden width of the projector (paper: 4096).", min=8, max=8192)
    proj_dim: int = param(256, help="Output width of the projector and predictor (paper: 256).", min=2, max=4096)
    pred_hidden: int = param(1024, help="Hidden width of the predictor (paper: 4096).", min=8, max=8192)


class MoCoV3(_MomentumKeys, MomentumObjective):
    """Query = backbone + projector + predictor; key = EMA(backbone + projector); in-batch negatives.

    Loss: ctr(q1, k2) + ctr(q2, k1), each InfoNCE scaled by 2τ as in the paper's
    algorithm 1.  No queue: the paper found large batches make it unnecessary.
    Under torchrun the keys of every rank are the negatives (``concat_all_gather`` in
    the official code) and BatchNorm is synchronised (the official code's SyncBN).
    """

    name = "mocov3"
    title = "MoCo v3"
    family = "contrastive"
    description = ("A predicted query must find the momentum encoder's key of the other view among the batch.\n"
                   "No queue: the other images of the batch are the negatives; built to train ViTs stably.")
    Params = MoCoV3Params
    honours = frozenset({"no_projector", "no_predictor", "no_temperature", "no_ema"})
    recipe = OptimRecipe(optimizer="lars", lr=0.3, weight_decay=1e-5)  # solo-learn CIFAR (paper ResNet: LARS 0.3 x B/256, wd 1.5e-6)
    batch_exchange = "gathered negatives"
    sync_batchnorm = True
    has_projector = True
    momentum_targets = (("backbone", "key_backbone"), ("projector", "key_projector"))
    metric_specs = {"contrastive_acc": CONTRASTIVE_ACCURACY, **MOMENTUM_METRIC}

    def __init__(self, backbone, params: MoCoV3Params, context):
        super().__init__(backbone, params, context)
        dim = self.build_projector(params.proj_hidden, params.proj_dim, num_layers=3, last_batch_norm=True)
        self.predictor = None if self.ablated("no_predictor") else MLPHead(dim, params.pred_hidden, dim, num_layers=2, last_batch_norm=True)
        self.build_momentum_targets(enabled=not self.ablated("no_ema"))

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        v = torch.cat([batch.views[0], batch.views[1]])
        z = self.project(v)
        q = z if self.predictor is None else self.predictor(z)
        q1, q2 = q.chunk(2)
        k1, k2 = (z.detach() if self.key_backbone is None else self.key(v)).chunk(2)
        t = 1.0 if self.ablated("no_temperature") else self.params.temperature
        loss = mocov3_loss(q1, q2, k1, k2, t, across_ranks=True)
        return StepOutput(loss, {"contrastive_acc": contrastive_accuracy(q1, k2), "momentum": self.momentum})
