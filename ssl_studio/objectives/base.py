"""The objective contract every SSL method implements.

An objective owns its networks (backbone, heads, target copies) and turns a batch
of views into a loss.  It declares what the lab needs to show it without any
per-method code elsewhere: its family and description for the picker, its
hyper-parameters as a dataclass (the GUI form and the validation come from it),
the ablation switches it honours, and the optimiser its paper recommends.

The trainer owns everything around the step: data, views, optimiser, schedule,
precision, checkpoints, probes and events (see ``ssl_studio.engine.trainer``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from ssl_studio.models.heads import build_projector
from ssl_studio.objectives import collectives as distributed
from ssl_studio.params import from_mapping

# Learned tokens are positions in the sequence, not weights: decaying them pulls them to zero
# (timm's and DINOv2's no_weight_decay lists the same ones).
NO_DECAY_TOKENS = ("pos_embed", "cls_token", "register_tokens", "mask_token")

# How an objective's batch-level quantities cross processes under torchrun (``Objective.batch_exchange``).
EXCHANGES = {
    "none": "per-sample loss: DDP's gradient averaging is all it needs",
    "gathered negatives": "the other ranks' embeddings gathered with gradient as negatives",
    "global statistics": "statistics over the global batch, all-reduced (with gradient where it flows)",
    "global queue": "a queue filled with the keys of every rank",
}

# Ablation switches the engine implements for every objective (the views and the batch size are the trainer's):
# an objective never lists them in ``honours``; ``Objective.ablation_switches`` adds them.
ENGINE_ABLATIONS = frozenset({"no_augmentation", "tiny_batch"})

FAMILIES = {
    "contrastive": "Contrastive",
    "negative-free": "Negative-free",
    "clustering": "Clustering",
    "masked": "Masked modelling",
    "predictive": "Predictive",
    "cross-modal": "Cross-modal",
    "supervised": "Supervised",
}


@dataclass
class Batch:
    """One training step's input, already on the training device."""

    views: list[torch.Tensor]  # normalised float views: global views first, then local crops
    images: torch.Tensor  # the uint8 originals, B×3×H×W
    indices: torch.Tensor  # positions in the ImageSet
    labels: torch.Tensor | None = None
    captions: list[str] | None = None
    plain: torch.Tensor | None = None  # normalised, un-augmented images (masked objectives use these)


@dataclass
class StepOutput:
    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)


@dataclass
class ObjectiveContext:
    """What an objective may know about the run when it builds its networks."""

    image_size: int
    num_classes: int = 0
    class_names: list[str] | None = None
    captions: list[str] | None = None
    ablations: frozenset[str] = frozenset()
    batch_size: int = 256
    mean: tuple[float, ...] | None = None  # the data's per-channel normalisation, to show images in [0, 1]
    std: tuple[float, ...] | None = None
    prompt_templates: tuple[str, ...] | None = None  # how the data's captions are phrased, for class prompts (CLIP)


@dataclass(frozen=True)
class OptimRecipe:
    """The optimiser an objective's paper uses, adapted to short CPU runs (see each objective)."""

    optimizer: str = "sgd"
    lr: float = 0.3  # per 256 images
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class BackboneRecipe:
    """What an objective needs on a backbone its paper's recipe does not suit.

    ``params`` replace the ``Params`` defaults and ``optim`` the objective's ``recipe``
    wherever the user left them unset (the window shows them as the form's values).
    """

    params: Mapping[str, Any]
    optim: OptimRecipe
    why: str


@dataclass(frozen=True)
class MetricSpec:
    """How the window plots one of an objective's step metrics (a key of ``StepOutput.metrics``).

    Metrics of one ``group`` share a plot; ``unit`` is shown on its axis ("" for a plain number).
    """

    title: str
    unit: str = ""
    group: str = "terms"


# The step metric every momentum objective that reports its schedule shares (``MomentumObjective.momentum``).
MOMENTUM_METRIC = {"momentum": MetricSpec("Target momentum", "", "momentum")}
# How often a query's nearest key is its own positive (``losses.contrastive_accuracy``): SimCLR, MoCo.
CONTRASTIVE_ACCURACY = MetricSpec("Positive found first", "", "accuracy")


class Objective(nn.Module):
    """Base class: subclasses set the class attributes and implement ``training_step``."""

    name: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str]  # two lines for the UI
    Params: ClassVar[type]
    honours: ClassVar[frozenset[str]] = frozenset()  # the switches the objective itself implements (see ablation_switches)
    needs_labels: ClassVar[bool] = False
    needs_captions: ClassVar[bool] = False
    modality: ClassVar[str] = "images"  # the data it trains on: "images", or "text" (token windows, see objectives/text_lm.py)
    backbones: ClassVar[tuple[str, ...] | None] = None  # None: every backbone
    recipe: ClassVar[OptimRecipe] = OptimRecipe()
    # Backbone name -> the settings that learn there when the paper's do not (DINO: its ViT
    # recipe on the ConvNet); see ``recipe_for`` and ``param_defaults_for``.
    backbone_recipes: ClassVar[dict[str, BackboneRecipe]] = {}
    # Backbone name -> roughly how many optimiser steps the objective needs there before its curves show
    # learning (from the lab's studies, docs/studies/); the window warns before Start when a minutes
    # budget gives far fewer on this device.  Absent: no warning.
    min_steps: ClassVar[dict[str, int]] = {}
    num_global_views: ClassVar[int] = 2
    # Augmentation settings of the method's paper, used wherever the user left the lab's default
    # (e.g. MAE: crops and flips only).  Keys are AugmentConfig fields.
    augment_defaults: ClassVar[dict[str, Any]] = {}
    # -- scale-out (torchrun): how the batch-level quantities cross processes ------------------
    # One of EXCHANGES: what the objective's loss needs from the other ranks' samples so that N
    # processes compute the loss of the global batch (the collectives are ssl_studio.objectives.collectives).
    batch_exchange: ClassVar[str] = "none"
    # Whether the method's published recipe synchronises BatchNorm over all devices; the trainer
    # then turns every BatchNorm into one over the global batch (``distributed.GlobalBatchNorm``).
    sync_batchnorm: ClassVar[bool] = False
    # Step metrics the objective reports beside its loss (key of StepOutput.metrics -> how to plot it);
    # the window's step-metrics panel is built from these, never from a key looked up by name.
    metric_specs: ClassVar[dict[str, MetricSpec]] = {}
    # -- capabilities the engine and the window read (never probed with hasattr) -----------------
    # Whether the loss sees a projection head (``build_projector``): ``projector_embed`` then returns what it
    # sees, even under ``no_projector`` (the backbone's features), for the projector-rank diagnostic.
    has_projector: ClassVar[bool] = False
    # An image-text model: ``encode_image``, ``encode_text``, ``zeroshot_scoring``, ``unknown_words`` and a
    # ``text_snapshot`` are implemented (CLIP); zero-shot evaluation and the zero-shot panel need one.
    has_text_tower: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, params: Any, context: ObjectiveContext):
        super().__init__()
        self.backbone = backbone
        self.params = params
        self.context = context
        # Per-sample random draws of the step (masks, templates, word drops): the trainer sets a generator
        # seeded the same on every rank, and ``draw_global`` draws for the global batch and keeps this
        # rank's rows, so N processes draw what one process draws (None: the global generator).
        self.draw_generator: torch.Generator | None = None
        self.projector: nn.Module | None = None  # set by ``build_projector``

    # -- declaration helpers -------------------------------------------------------------

    @classmethod
    def recipe_for(cls, backbone: str | None) -> OptimRecipe:
        """The optimiser recipe on ``backbone``: its own entry in ``backbone_recipes``, else ``recipe``."""
        entry = cls.backbone_recipes.get(backbone or "")
        return entry.optim if entry is not None else cls.recipe

    @classmethod
    def params_for(cls, given: Mapping[str, Any], backbone: str | None) -> Any:
        """Validated ``Params``: the ``given`` values over the defaults for ``backbone``."""
        return cls.parse_params({**cls.param_defaults_for(backbone), **given})

    @classmethod
    def check_params(cls, params: Any, backbone: str) -> None:
        """Refuse, with a ConfigError naming the field, settings that cannot work together or on ``backbone``."""

    @classmethod
    def param_defaults_for(cls, backbone: str | None) -> dict[str, Any]:
        """``Params`` values that differ from the declared defaults on ``backbone`` ({} for most)."""
        entry = cls.backbone_recipes.get(backbone or "")
        return dict(entry.params) if entry is not None else {}

    @classmethod
    def parse_params(cls, mapping: Mapping[str, Any] | Any) -> Any:
        """Validated ``Params`` from a TOML table (or pass an instance through)."""
        if dataclasses.is_dataclass(mapping) and not isinstance(mapping, type):
            return mapping
        return from_mapping(cls.Params, dict(mapping or {}), "objective")

    @classmethod
    def ablation_switches(cls) -> frozenset[str]:
        """Every ablation switch a run of this objective accepts: its own ``honours`` and the engine's."""
        return cls.honours | ENGINE_ABLATIONS

    def ablated(self, switch: str) -> bool:
        return switch in self.context.ablations

    @property
    def num_local_views(self) -> int:
        return 0

    @classmethod
    def check_distributed(cls, params: Any, world_size: int) -> None:
        """Refuse, with a ConfigError naming the setting, what cannot yet run on ``world_size`` > 1 processes."""

    def draw_global(self, local_rows: int, draw):
        """``draw(global_rows, generator)`` for the global batch, then this rank's rows of it.

        ``draw`` returns a tensor (rows first) or anything with a ``rows(slice)`` method.
        """
        out = draw(distributed.global_rows(local_rows), self.draw_generator)
        if distributed.world_size() == 1:
            return out
        rows = distributed.my_rows(local_rows)
        return out[rows] if isinstance(out, torch.Tensor) else out.rows(rows)

    # -- the contract ------------------------------------------------------------------

    def forward(self, batch: Batch, progress: float) -> StepOutput:
        """What DistributedDataParallel calls: the training step."""
        return self.training_step(batch, progress)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:  # pragma: no cover - abstract
        """Loss for one batch; ``progress`` is the share of the budget done, in [0, 1]."""
        raise NotImplementedError

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features used by every probe and evaluation."""
        return self.backbone(images)

    def projector_embed(self, images: torch.Tensor) -> torch.Tensor | None:
        """The embedding the loss sees (after the projector), for spectrum diagnostics; None if same as embed."""
        return self.project(images) if self.has_projector else None

    @property
    def attention_backbone(self) -> nn.Module:
        """The network whose attention the panels show and the attention diagnostics measure (I-JEPA: its target encoder)."""
        return self.backbone

    # -- the projection head -------------------------------------------------------------

    def build_projector(self, hidden_dim: int, out_dim: int, num_layers: int = 2, **head_options: Any) -> int:
        """``self.projector`` (an ``MLPHead`` with ``head_options``), or None under ``no_projector``; returns
        the width of what the loss sees (``out_dim``, or the backbone's ``feature_dim`` without a projector)."""
        if self.ablated("no_projector"):
            self.projector = None
            return self.backbone.feature_dim
        self.projector = build_projector(self.backbone.feature_dim, hidden_dim, out_dim, num_layers, **head_options)
        return out_dim

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone, then the projector when there is one."""
        h = self.backbone(x)
        return h if self.projector is None else self.projector(h)

    # -- image-text objectives (``has_text_tower``) ----------------------------------------

    text_snapshot: Any = None  # a CPU copy of the text tower that the window's prompt scorer reads

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint-space image embeddings."""
        raise NotImplementedError(f"{self.title} has no text tower")

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised joint-space text embeddings."""
        raise NotImplementedError(f"{self.title} has no text tower")

    def zeroshot_scoring(self) -> tuple[str, float, float | None]:
        """(loss kind, logit scale, logit bias) that turn image-text similarities into zero-shot probabilities."""
        raise NotImplementedError(f"{self.title} has no text tower")

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` the text tower has no token for."""
        raise NotImplementedError(f"{self.title} has no text tower")

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Momentum updates, queues, centres: run after the optimiser step."""

    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        """Optional pictures for the panels (reconstructions, attention maps, zero-shot scores)."""
        return None

    @torch.no_grad()
    def visual_request(self, images: torch.Tensor, request: dict[str, Any]) -> dict[str, Any] | None:
        """Pictures asked for from the GUI between steps (``request`` carries e.g. ``kind``, ``mask_ratio``,
        ``seed``); objectives whose panels have controls override this."""
        return self.visuals(images)

    def extra_state(self) -> dict[str, Any]:
        """Anything outside ``state_dict`` the objective needs for exact resume."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def artifacts(self) -> dict[str, str]:
        """Text files written into the run folder at the start (e.g. a tokenizer's vocabulary)."""
        return {}

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Trainable parameters, with biases and norm weights excluded from decay and LARS adaptation."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim <= 1 or name.endswith(".bias") or any(token in name for token in NO_DECAY_TOKENS):
                no_decay.append(p)
            else:
                decay.append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
        return groups


class ProjectedObjective(Objective):
    """An objective whose loss sees a projection head on the backbone (SimCLR, Barlow Twins, VICReg).

    Under the ``no_projector`` ablation the loss sees the backbone's features directly.
    """

    has_projector = True


class MomentumObjective(Objective):
    """An objective with momentum (EMA) copies of some of its networks: BYOL, MoCo, DINO, I-JEPA.

    ``momentum_targets`` names each (online network, its target copy) pair by attribute; the target names are
    the state dict's (checkpoints), so each method keeps its paper's word (target, key, teacher).  The base
    builds the frozen copies (``build_momentum_targets``, after the online networks), keeps the momentum of
    the current step in ``self.momentum`` on the schedule of ``momentum_schedule`` (BYOL's cosine from
    ``params.base_momentum`` to ``params.final_momentum`` unless overridden) and updates every target
    after the optimiser step (``after_step``), as solo-learn's ``BaseMomentumMethod.momentum_pairs``.
    """

    momentum_targets: ClassVar[tuple[tuple[str, str], ...]] = ()

    def build_momentum_targets(self, enabled: bool = True) -> None:
        """A frozen copy of each online network of ``momentum_targets`` (None where the network is None), or
        no copies at all when not ``enabled`` (``no_ema``: the online network serves as its own target)."""
        for online, target in self.momentum_targets:
            module = getattr(self, online)
            setattr(self, target, ema_copy(module) if enabled and module is not None else None)
        self.uses_momentum_target = enabled
        self.momentum = self.momentum_schedule()[0] if enabled else 0.0

    def momentum_schedule(self) -> tuple[float, float]:
        """(momentum at the start, at the end of the budget); a cosine schedule joins them."""
        return self.params.base_momentum, self.params.final_momentum

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) for every target that exists."""
        pairs = [(getattr(self, online), getattr(self, target)) for online, target in self.momentum_targets]
        return [(o, t) for o, t in pairs if t is not None]

    @torch.no_grad()
    def update_targets(self, progress: float) -> None:
        """Move every target towards its online network by the momentum the schedule gives at ``progress``."""
        if not self.uses_momentum_target:
            return
        base, final = self.momentum_schedule()
        self.momentum = cosine_momentum(base, progress, final)
        for online, target in self.momentum_pairs():
            ema_update(target, online, self.momentum)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.update_targets(progress)


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen copy used as a momentum target (BYOL, MoCo, DINO)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target = momentum * target + (1 - momentum) * online, parameters and float buffers."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers()):
        if tb.dtype.is_floating_point:
            tb.mul_(momentum).add_(ob.detach(), alpha=1.0 - momentum)
        else:
            tb.copy_(ob)


def cosine_momentum(base: float, progress: float, final: float = 1.0) -> float:
    """BYOL's schedule (Grill et al. 2020, §3.2): tau = 1 - (1 - tau_base)(cos(pi k/K) + 1)/2."""
    import math

    progress = min(max(progress, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
