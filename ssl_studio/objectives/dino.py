"""DINO: a student matches the centred, sharpened outputs of its own moving-average teacher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.objectives import collectives as distributed
from ssl_studio.objectives.base import MOMENTUM_METRIC, BackboneRecipe, Batch, MetricSpec, MomentumObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import dino_center_update, dino_cross_entropy, dino_loss, dino_sinkhorn_targets, ibot_patch_loss, koleo_loss
from ssl_studio.objectives.masking import blockwise_patch_mask
from ssl_studio.objectives.multicrop import forward_crops
from ssl_studio.params import ConfigError, param


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each probability vector along the last dimension."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


class DINOHead(nn.Module):
    """3-layer MLP (GELU, no BN) to a bottleneck, L2 normalisation, weight-normalised last layer.

    As in the official code's ``DINOHead``: the last layer's weight is
    ``g * v / ||v||`` per output unit.  With ``norm_last_layer`` the gain ``g`` is
    fixed at 1 (the paper found it steadier for ViT-B); without it ``g`` is
    learned (the official choice for ViT-S, "better performance").  Written
    without ``torch.nn.utils.weight_norm`` so that deep copies and EMA updates see
    plain parameters.
    """

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, num_layers: int = 3,
                 norm_last_layer: bool = True, use_bn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_v = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_v, std=0.02)
        self.last_g = nn.Parameter(torch.ones(out_dim), requires_grad=not norm_last_layer)  # 1-D: a gain, kept out of weight decay
        self.freeze_last = False  # set by DINO while the prototypes get no gradient (``freeze_last_layer``)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # run folders written before the gain existed hold the fixed-gain head: g = 1
        state_dict.setdefault(prefix + "last_g", torch.ones_like(self.last_g))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        v, g = (self.last_v.detach(), self.last_g.detach()) if self.freeze_last else (self.last_v, self.last_g)
        return F.linear(x, g[:, None] * F.normalize(v, dim=1))


@dataclass
class DINOParams:
    """Caron et al. 2021 ("Emerging Properties in Self-Supervised Vision Transformers").

    Published: head 2048 wide, bottleneck 256, 65,536 outputs; student temperature 0.1; teacher
    temperature 0.04 -> 0.07 over the first 30 epochs; centre momentum 0.9; teacher momentum 0.996 -> 1
    (cosine); 2 global + 10 local crops.  Kept: the temperatures, the centre and the teacher schedule.
    Adapted to a 2-core CPU: a 512-wide head, 1024 outputs (65,536 would make the head the whole cost),
    2 local crops, warm-up over the first 30 % of the budget.

    These are the paper's ViT recipe; on the ConvNet they do not learn shapes in 3 CPU-minutes (nearly
    uniform teacher targets), so the ConvNet and ResNet-18 get ``DINO.backbone_recipes`` (BN in the
    head, 128 outputs, no local crops, momentum 0.9, LARS), each part measured:
    docs/studies/dino-on-convnet.md.

    Options from the official code, all off by default: ``teacher_centering = "sinkhorn"`` (DINOv2,
    Oquab et al. 2023), ``freeze_last_layer``, ``use_bn_in_head``, ``koleo_loss_weight`` (DINOv2's
    KoLeo on the student's [CLS] features), and ``ibot_loss_weight > 0`` for iBOT's masked-patch
    self-distillation on the ViT (Zhou et al. 2022: blockwise-masked student patches match the
    teacher's through the shared head, with a centre of their own).  What they do on shapes:
    docs/studies/dino-on-vit.md.
    """

    out_dim: int = param(1024, help="Output dimensions of the DINO head (paper: 65536).", min=2, max=262144)
    hidden_dim: int = param(512, help="Hidden width of the head's MLP (paper: 2048).", min=8, max=8192)
    bottleneck_dim: int = param(256, help="Bottleneck width before the weight-normalised layer (paper: 256).", min=2, max=4096)
    student_temp: float = param(0.1, help="Student softmax temperature.", min=0.0, min_exclusive=True, max=10.0)
    teacher_temp: float = param(0.07, help="Teacher softmax temperature after warm-up (sharpening: lower than the student's).", min=0.0, min_exclusive=True, max=10.0)
    warmup_teacher_temp: float = param(0.04, help="Teacher temperature at the start of the warm-up.", min=0.0, min_exclusive=True, max=10.0)
    teacher_temp_warmup: float = param(0.3, help="Share of the budget over which the teacher temperature rises linearly.", min=0.0, max=1.0)
    center_momentum: float = param(0.9, help="Momentum of the centre subtracted from the teacher's outputs.", min=0.0, max=1.0)
    base_momentum: float = param(0.996, help="Teacher momentum at the start; cosine schedule to final_momentum (paper: 0.996).", min=0.0, max=1.0)
    final_momentum: float = param(1.0, help="Teacher momentum at the end of the budget.", min=0.0, max=1.0)
    local_crops: int = param(2, help="Small local crops per image, seen by the student only (paper: 10).", min=0, max=12)
    teacher_centering: str = param("centre", help="How the teacher's outputs are balanced: subtract a moving centre (DINO) or Sinkhorn-Knopp "
                                   "equipartition over the batch's global crops (DINOv2, Oquab et al. 2023).", choices=("centre", "sinkhorn"))
    sinkhorn_iterations: int = param(3, help="Sinkhorn-Knopp iterations when teacher_centering is sinkhorn (DINOv2: 3).", min=1, max=100)
    freeze_last_layer: float = param(0.0, help="Share of the budget during which the head's last (prototype) layer gets no gradient "
                                     "(official main_dino.py: the first epoch of 100-800; 0 = off).", min=0.0, max=1.0)
    use_bn_in_head: bool = param(False, help="BatchNorm after each hidden layer of the head (official main_dino.py --use_bn_in_head, default off).")
    norm_last_layer: bool = param(True, help="Fix the gain of the head's weight-normalised last layer at 1 (official code: True for ViT-B, False for ViT-S).")
    ibot_loss_weight: float = param(0.0, help="ViT only: weight of iBOT's masked-patch self-distillation beside the [CLS] loss (Zhou et al. 2022: 1; "
                                    "DINOv2 keeps it); 0 = DINO alone.", min=0.0, max=10.0)
    ibot_mask_probability: float = param(0.5, help="Share of the student's global crops that get hidden patches (iBOT, DINOv2: 0.5).", min=0.0, max=1.0)
    ibot_mask_ratio_min: float = param(0.1, help="Smallest share of a masked crop's patches hidden (iBOT: 0.1).", min=0.0, max=0.9)
    ibot_mask_ratio_max: float = param(0.5, help="Largest share of a masked crop's patches hidden (iBOT: 0.5).", min=0.0, max=0.9)
    koleo_loss_weight: float = param(0.0, help="Weight of the KoLeo term that spreads the student's [CLS] features within a batch "
                                     "(DINOv2, Oquab et al. 2023: 0.1); 0 = off.", min=0.0, max=10.0)


class DINO(MomentumObjective):
    """Student = backbone + DINO head; teacher = EMA of both, fed the global crops only.

    Ablations: ``no_centering`` neither subtracts nor updates the centre;
    ``no_sharpening`` sets the teacher temperature to the student's; ``no_ema`` uses
    the student itself (detached) as the teacher.
    """

    name = "dino"
    title = "DINO"
    family = "negative-free"
    description = ("A student network matches the output distribution of a moving-average teacher across crops.\n"
                   "Centring stops one output dominating, sharpening stops them going uniform.")
    Params = DINOParams
    honours = frozenset({"no_centering", "no_sharpening", "no_ema"})
    recipe = OptimRecipe(optimizer="adamw", lr=5e-4, weight_decay=0.04)  # paper ViT recipe (its wd rises 0.04 -> 0.4; kept at 0.04)
    # docs/studies/masked-shapes-5min.md: 123-137 steps on the ViT leave the attention no better than at
    # initialisation on one seed of two; masked-shapes-20min.md: 640-780 steps move it on both.
    min_steps = {"vit": 600}
    # Under torchrun: the centres (DINO's and iBOT's) are means over the global batch, the Sinkhorn teacher
    # sums over every rank's samples (DINOv2), KoLeo's neighbours are searched in the global batch (DINOv2:
    # per GPU; global here so N processes compute what one does), iBOT's masks are drawn for the global batch,
    # and BatchNorm (the head's, the ConvNet's) is synchronised, as main_dino.py converts student and teacher.
    batch_exchange = "global statistics"
    sync_batchnorm = True
    momentum_targets = (("backbone", "teacher_backbone"), ("head", "teacher_head"))
    metric_specs = {
        **MOMENTUM_METRIC,
        "teacher_temp": MetricSpec("Teacher temperature", "", "temperature"),
        "teacher_entropy": MetricSpec("Teacher entropy", "nats", "entropy"),
        "student_entropy": MetricSpec("Student entropy", "nats", "entropy"),
        "teacher_info": MetricSpec("Teacher information (H(mean) - mean H)", "nats", "entropy"),
        "center_norm": MetricSpec("Centre norm", "", "teacher"),
        "common_mode": MetricSpec("Common mode of the teacher", "", "teacher"),
        "img_std": MetricSpec("Teacher output spread between images", "", "teacher"),
        "teacher_view_agree": MetricSpec("Global crops with the same teacher argmax", "", "teacher"),
        "protos_used": MetricSpec("Outputs some image picks", "outputs", "outputs"),
        "cls_loss": MetricSpec("[CLS] loss", "", "terms"),
        "patch_loss": MetricSpec("iBOT patch loss", "", "terms"),
        "masked_patches": MetricSpec("Hidden patches per crop", "", "masking"),
        "distillation_loss": MetricSpec("Distillation loss", "", "terms"),
        "koleo_loss": MetricSpec("KoLeo term", "", "terms"),
    }
    backbone_recipes = {
        backbone: BackboneRecipe(
            params={"use_bn_in_head": True, "out_dim": 128, "local_crops": 0, "base_momentum": 0.9},
            optim=OptimRecipe(optimizer="lars", lr=0.3, weight_decay=1e-6),
            why="the paper's ViT settings do not learn on a ConvNet in a few CPU minutes (shapes, 3 minutes: "
                "k-NN 0.17 against 0.35 with these); the optimiser is solo-learn's for DINO on CIFAR with a ResNet-18",
        )
        for backbone in ("convnet", "resnet18")
    }

    def __init__(self, backbone, params: DINOParams, context):
        super().__init__(backbone, params, context)
        self.head = DINOHead(backbone.feature_dim, params.hidden_dim, params.bottleneck_dim, params.out_dim,
                             norm_last_layer=params.norm_last_layer, use_bn=params.use_bn_in_head)
        self.build_momentum_targets(enabled=not self.ablated("no_ema"))
        self.register_buffer("center", torch.zeros(1, params.out_dim))
        self._pending: list[torch.Tensor] | None = None
        self._pending_patches: torch.Tensor | None = None
        self._any_hidden = False  # whether any crop of the global batch hid a patch this step
        self.check_params(params, "vit" if backbone.has_attention else type(backbone).__name__.lower())
        if params.ibot_loss_weight > 0:
            # What a hidden patch enters as (zeros at the start, as iBOT's masked_embed); learned, no decay.
            self.mask_token = nn.Parameter(torch.zeros(backbone.embed_dim))
            self.register_buffer("patch_center", torch.zeros(1, params.out_dim))

    @classmethod
    def check_params(cls, params: DINOParams, backbone: str) -> None:
        if params.ibot_loss_weight > 0 and backbone != "vit":
            raise ConfigError("objective.ibot_loss_weight", f"needs a ViT (its patch tokens are what iBOT distils), but model.backbone "
                              f"is {backbone!r}; set it to 0 or choose vit.")
        if params.ibot_mask_ratio_min > params.ibot_mask_ratio_max:
            raise ConfigError("objective.ibot_mask_ratio_min", f"must be <= objective.ibot_mask_ratio_max "
                              f"({params.ibot_mask_ratio_max:g}), got {params.ibot_mask_ratio_min:g}")

    @property
    def uses_ibot(self) -> bool:
        return self.params.ibot_loss_weight > 0

    @property
    def num_local_views(self) -> int:
        return self.params.local_crops

    def teacher_temperature(self, progress: float) -> float:
        p = self.params
        if self.ablated("no_sharpening"):
            return p.student_temp
        if p.teacher_temp_warmup > 0 and progress < p.teacher_temp_warmup:
            return p.warmup_teacher_temp + (p.teacher_temp - p.warmup_teacher_temp) * progress / p.teacher_temp_warmup
        return p.teacher_temp

    def student(self, x):
        return self.head(self.backbone(x))

    def _student_with_features(self, x):
        features = self.backbone(x)
        return features, self.head(features)

    @torch.no_grad()
    def teacher(self, x):
        if self.teacher_backbone is None:
            return self.student(x)
        return self.teacher_head(self.teacher_backbone(x))

    def projector_embed(self, images):
        return self.head.mlp(self.backbone(images))  # the bottleneck: the last space of real dimension

    def _teacher_networks(self) -> tuple[nn.Module, nn.Module]:
        if self.teacher_backbone is None:  # no_ema: the student itself, without gradient
            return self.backbone, self.head
        return self.teacher_backbone, self.teacher_head

    def _draw_patch_masks(self, crops: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``crops x N`` bool: which patches each global crop hides from the student (iBOT's sampler)."""
        p = self.params
        masked = torch.rand(crops, generator=generator) < p.ibot_mask_probability
        ratios = p.ibot_mask_ratio_min + (p.ibot_mask_ratio_max - p.ibot_mask_ratio_min) * torch.rand(crops, generator=generator)
        return blockwise_patch_mask((ratios * masked).tolist(), self.backbone.grid_size, generator=generator)

    def _draw_global_patch_masks(self, local_rows: int) -> tuple[torch.Tensor, bool]:
        """The masks of this rank's global crops, drawn for the global batch (crop-major, as one process),
        and whether any crop of the global batch hides a patch (every rank then runs the patch head)."""
        n_global, ws = self.num_global_views, distributed.world_size()
        mask = self._draw_patch_masks(n_global * local_rows * ws, self.draw_generator)
        if int(mask.sum()) < 2:  # nothing (or one patch, which a BN head cannot take) to distil this step
            mask[:] = False
        rows = distributed.my_rows(local_rows)
        return torch.cat([crop[rows] for crop in mask.chunk(n_global)]), bool(mask.any())

    def _ibot_forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                                                                 torch.Tensor, torch.Tensor, torch.Tensor]:
        """Student [CLS] features and outputs and teacher [CLS] outputs of the global crops, and both outputs of the hidden patches.

        The student sees each global crop with its hidden patches replaced by the mask token;
        the teacher sees it whole.  Returns (student [CLS] feature per crop, student [CLS] output
        per crop, teacher [CLS] output per crop, student patch logits M×K, teacher patch logits
        M×K, the crop each patch belongs to).
        """
        n_global = self.num_global_views
        x = torch.cat(views[:n_global])
        mask, any_hidden = self._draw_global_patch_masks(views[0].shape[0])
        mask, self._any_hidden = mask.to(x.device), any_hidden
        tokens = self.backbone.forward_tokens(x, mask=mask, mask_token=self.mask_token)
        s_features = list(tokens[:, 0].chunk(n_global))
        s_cls = list(self.head(tokens[:, 0]).chunk(n_global))
        with torch.no_grad():
            t_backbone, t_head = self._teacher_networks()
            t_tokens = t_backbone.forward_tokens(x)
            t_cls = [c.detach() for c in t_head(t_tokens[:, 0]).chunk(n_global)]
        if any_hidden:  # on every rank alike: the head's BN may be synchronised
            s_patch = self.head(tokens[:, 1:][mask])
            with torch.no_grad():
                t_patch = t_head(t_tokens[:, 1:][mask]).detach()
        else:
            s_patch = t_patch = tokens.new_zeros(0, self.params.out_dim)
        owner = mask.nonzero()[:, 0]
        return s_features, s_cls, t_cls, s_patch, t_patch, owner

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        n_global = self.num_global_views
        self.head.freeze_last = progress < self.params.freeze_last_layer
        if self.uses_ibot:
            s_features, s_global, t, s_patch, t_patch, owner = self._ibot_forward(batch.views)
            s = s_global + forward_crops(self.student, batch.views[n_global:], self.backbone)
        else:
            features_and_outputs = forward_crops(self._student_with_features, batch.views, self.backbone)
            s_features = [f for f, _ in features_and_outputs[:n_global]]
            s = [out for _, out in features_and_outputs]
            t = [x.detach() for x in forward_crops(self.teacher, batch.views[:n_global], self.backbone)]
        center = None if self.ablated("no_centering") else self.center
        tt = self.teacher_temperature(progress)
        sinkhorn = self.params.teacher_centering == "sinkhorn" and center is not None
        targets = None
        if sinkhorn:
            targets = dino_sinkhorn_targets(t, tt, self.params.sinkhorn_iterations, across_ranks=True)
            loss = dino_cross_entropy(s, targets, self.params.student_temp)
        else:
            loss = dino_loss(s, t, center, self.params.student_temp, tt)
        self._pending = t
        term_metrics: dict[str, Any] = {}
        if self.uses_ibot:
            if sinkhorn:
                patch_targets = (dino_sinkhorn_targets([t_patch], tt, self.params.sinkhorn_iterations, across_ranks=True)[0]
                                 if self._any_hidden else t_patch)
            else:
                shift = 0 if center is None else self.patch_center
                patch_targets = F.softmax((t_patch.float() - shift) / tt, dim=1)
            crops = n_global * batch.views[0].shape[0]
            patch_loss = ibot_patch_loss(s_patch, patch_targets, owner, crops, self.params.student_temp)
            term_metrics = {"cls_loss": loss.detach(), "patch_loss": patch_loss.detach(), "masked_patches": float(len(owner)) / crops}
            loss = loss + self.params.ibot_loss_weight * patch_loss
            self._pending_patches = t_patch if self._any_hidden else None
        if self.params.koleo_loss_weight > 0:
            # DINOv2 sums the term over the global crops, each crop's batch on its own.
            koleo = sum(koleo_loss(f, across_ranks=True) for f in s_features)
            term_metrics["distillation_loss"] = loss.detach()
            term_metrics["koleo_loss"] = koleo.detach()
            loss = loss + self.params.koleo_loss_weight * koleo
        with torch.no_grad():
            raw = torch.cat(t).float()
            centred = raw - (0 if center is None else center)
            probs = F.softmax(centred / tt, dim=1) if targets is None else torch.cat(targets)
            entropy = _entropy(probs).mean()
            # what the targets say about the image: H(mean target) - mean H(target); 0 for both collapses
            info = _entropy(probs.mean(0)) - entropy
            metrics = {"teacher_temp": tt, "teacher_entropy": entropy, "teacher_info": info, "momentum": self.momentum}
            metrics.update(self._diagnostics(raw, centred, s))
            metrics.update(term_metrics)
        return StepOutput(loss, metrics)

    @torch.no_grad()
    def _diagnostics(self, raw: torch.Tensor, centred: torch.Tensor, student: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Why the teacher is flat or sharp, in five numbers.

        ``common_mode``: the share of the teacher's output every image has in common (1 = all
        images alike; the centre removes it); ``img_std``: how much one output differs between
        images (compare with the teacher temperature: that difference over τ_t is the targets'
        spread); ``protos_used``: outputs that are some image's argmax; ``teacher_view_agree``:
        how often the two global crops of an image get the same argmax (targets the student can
        learn); ``student_entropy`` beside ``teacher_entropy``.
        """
        mean = raw.mean(0, keepdim=True)
        sp = F.softmax(student[0].detach().float() / self.params.student_temp, dim=1)
        b = student[0].shape[0]
        t_arg = centred.argmax(1)
        out = {
            "center_norm": self.center.float().norm(),
            "common_mode": mean.pow(2).sum() / raw.pow(2).sum(1).mean().clamp_min(1e-12),
            "img_std": (raw - mean).std(0).mean(),
            "protos_used": float(t_arg.unique().numel()),
            "student_entropy": _entropy(sp).mean(),
        }
        if centred.shape[0] >= 2 * b:
            out["teacher_view_agree"] = (t_arg[:b] == t_arg[b:2 * b]).float().mean()
        return out

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self._pending is not None and not self.ablated("no_centering"):
            self.center.copy_(dino_center_update(self.center, self._pending, self.params.center_momentum, across_ranks=True))
            if self._pending_patches is not None:  # iBOT's second centre, over the hidden patches (as DINOv2's iBOT loss)
                self.patch_center.copy_(dino_center_update(self.patch_center, [self._pending_patches], self.params.center_momentum,
                                                           across_ranks=True))
        self._pending = self._pending_patches = None
        self.update_targets(progress)

    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        """The last layer's [CLS] attention over the patches, per head, when the backbone is a ViT."""
        if not self.backbone.has_attention:
            return None
        maps = self.backbone.attention_maps(images)
        if not maps:
            return None
        last = maps[-1].float()  # B x H x (1+N) x (1+N)
        cls = last[:, :, 0, 1:]
        g = int(round(cls.shape[-1] ** 0.5))
        if g * g != cls.shape[-1]:
            return None
        return {"attention": {"maps": cls.reshape(cls.shape[0], cls.shape[1], g, g).cpu(), "grid": g, "layer": len(maps) - 1}}
