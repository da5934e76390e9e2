"""The supervised baseline: the same backbone trained with labels, the ceiling SSL is measured against."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.params import param


@dataclass
class SupervisedParams:
    """Cross-entropy on one augmented view; label smoothing 0.1 as in Szegedy et al. 2016 is optional."""

    label_smoothing: float = param(0.0, help="Share of the target mass spread over the other classes.", min=0.0, max=0.5)


class Supervised(Objective):
    name = "supervised"
    title = "Supervised baseline"
    family = "supervised"
    description = ("Cross-entropy on the class labels with the same backbone and augmentations.\n"
                   "The reference every self-supervised method is compared against.")
    Params = SupervisedParams
    needs_labels = True
    num_global_views = 1
    recipe = OptimRecipe(optimizer="sgd", lr=0.1, weight_decay=5e-4)
    metric_specs = {"train_acc": MetricSpec("Training accuracy", "", "accuracy")}
    batch_exchange = "none"  # per-sample cross-entropy; BN per rank, as torchvision's reference DDP recipe by default

    def __init__(self, backbone, params: SupervisedParams, context):
        super().__init__(backbone, params, context)
        if context.num_classes < 2:
            raise ValueError("the supervised baseline needs labelled data with at least 2 classes")
        self.classifier = nn.Linear(backbone.feature_dim, context.num_classes)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        logits = self.classifier(self.backbone(batch.views[0])).float()
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.params.label_smoothing)
        acc = (logits.argmax(1) == batch.labels).float().mean()
        return StepOutput(loss, {"train_acc": acc})
