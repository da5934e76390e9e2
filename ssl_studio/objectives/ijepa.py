"""I-JEPA: from one large context block, predict the *embeddings* of several hidden target blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.models.vit import Block, sincos_pos_embed
from ssl_studio.objectives.base import MOMENTUM_METRIC, Batch, MetricSpec, MomentumObjective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import ijepa_loss
from ssl_studio.objectives.mae import to_display
from ssl_studio.objectives.masking import MultiBlockMasks, MultiBlockSampler
from ssl_studio.params import ConfigError, param

PROBE_MASK_SEED = 0


@dataclass
class IJEPAParams:
    """Assran et al. 2023 ("Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture").

    Published: 4 target blocks of 15-20 % of the image each, aspect 0.75-1.5; one
    context block of 85-100 %, aspect 1, with the target patches removed; a
    narrow ViT predictor (384 wide for ViT-H's 1280, 12 blocks) fed the context
    tokens and a mask token at each target position; targets are the EMA target
    encoder's layer-normalised patch embeddings of the full image; momentum
    0.996 -> 1 (linear in the code; the lab's cosine schedule here, as BYOL/DINO);
    smooth-L1 loss in the official code (the paper writes L2).  Kept: all the
    block ranges (snapped to the 8x8 patch grid: see ``masking.block_shape``),
    the momentum, the loss.  Adapted to a 2-core CPU: a predictor half the
    encoder's width and 3 blocks deep (``predictor_dim = 0`` means half).
    """

    num_targets: int = param(4, help="Target blocks per image (paper: 4).", min=1, max=16)
    target_scale_min: float = param(0.15, help="Smallest area share of a target block.", min=0.01, max=1.0)
    target_scale_max: float = param(0.2, help="Largest area share of a target block.", min=0.01, max=1.0)
    target_aspect_min: float = param(0.75, help="Smallest aspect (rows / columns) of a target block.", min=0.1, max=10.0)
    target_aspect_max: float = param(1.5, help="Largest aspect (rows / columns) of a target block.", min=0.1, max=10.0)
    context_scale_min: float = param(0.85, help="Smallest area share of the context block (before targets are removed).", min=0.01, max=1.0)
    context_scale_max: float = param(1.0, help="Largest area share of the context block.", min=0.01, max=1.0)
    min_context: int = param(4, help="Fewest context patches left after removing the targets (official: 10 of 196).", min=1, max=4096)
    predictor_dim: int = param(0, help="Predictor width; 0 = half the encoder's embedding width.", min=0, max=4096)
    predictor_depth: int = param(3, help="Transformer blocks in the predictor (paper: 6-12).", min=1, max=24)
    base_momentum: float = param(0.996, help="Target-encoder momentum at the start; cosine schedule to final_momentum (paper: 0.996).",
                                 min=0.0, max=1.0)
    final_momentum: float = param(1.0, help="Target-encoder momentum at the end of the budget.", min=0.0, max=1.0)
    loss: str = param("smooth_l1", help="Distance between predicted and target embeddings (official code: smooth L1; paper: L2).",
                      choices=("smooth_l1", "mse"))


class IJEPAPredictor(nn.Module):
    """A narrow ViT: context tokens plus one mask token per target patch, each with its position."""

    def __init__(self, embed_dim: int, grid_size: int, dim: int, depth: int, heads: int):
        super().__init__()
        step = 4 * heads
        dim = max(step, (dim // step) * step)
        self.dim = dim
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, grid_size).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def _pos(self, index: torch.Tensor, dtype) -> torch.Tensor:
        pos = self.pos_embed[0].to(dtype)  # N x d
        return pos[index]

    def forward(self, context_tokens: torch.Tensor, context_index: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
        """``context_tokens`` ``B x n_ctx x D``, ``context_index`` ``B x n_ctx``, ``target_index`` ``B x T x m``
        -> predicted target embeddings ``B x T x m x D``.  One predictor pass per target block
        (the context repeated T times), as the official code does."""
        b, t, m = target_index.shape
        x = self.embed(context_tokens)
        x = x + self._pos(context_index, x.dtype)
        x = x.repeat_interleave(t, dim=0)  # (B T) x n_ctx x d
        q = self.mask_token.to(x.dtype) + self._pos(target_index.reshape(b * t, m), x.dtype)
        h = torch.cat([x, q], dim=1)
        for block in self.blocks:
            h, _ = block(h)
        out = self.proj(self.norm(h[:, -m:]))
        return out.reshape(b, t, m, -1)


class IJEPA(MomentumObjective):
    """Context encoder = the lab's ViT fed the context patches; target encoder = its EMA over the full image.

    Ablation ``no_ema``: the target encoder is the context encoder itself (detached),
    so nothing slow anchors the targets and the representation can collapse.
    """

    name = "ijepa"
    title = "I-JEPA"
    family = "predictive"
    description = ("From one large block of an image, a predictor guesses the embeddings of four hidden blocks.\n"
                   "Prediction in feature space, not pixels; a moving-average target encoder gives the targets.")
    Params = IJEPAParams
    honours = frozenset({"no_ema"})
    backbones = ("vit",)
    num_global_views = 1
    # Paper: AdamW, lr 1e-4 -> 1e-3 warm-up then cosine at batch 2048 (1.25e-4 per 256), wd 0.04 -> 0.4, for
    # 300 epochs.  Lab runs are ~1000x shorter: 1e-3 per 256, wd kept at 0.04.
    recipe = OptimRecipe(optimizer="adamw", lr=1e-3, weight_decay=0.04)
    # docs/studies/masked-shapes-5min.md: 311 steps on the ViT move the attention 8.5 standard errors.
    min_steps = {"vit": 300}
    # Under torchrun: a per-sample loss on a BN-free ViT; block sizes and positions are drawn for the
    # global batch (``draw_global``: the same sizes, the same truncated context, as one process).
    batch_exchange = "none"
    momentum_targets = (("backbone", "target_encoder"),)
    metric_specs = {**MOMENTUM_METRIC, "pred_cosine": MetricSpec("Predicted vs target embedding (cosine)", "", "prediction"),
                    "context_patches": MetricSpec("Context patches", "patches", "masking")}
    # Official configs: random resized crop (scale 0.3-1), no flip, no colour distortion, no blur.
    augment_defaults = {"crop_scale_min": 0.3, "crop_scale_max": 1.0, "flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0,
                        "blur_p": [0.0, 0.0], "solarize_p": [0.0, 0.0]}

    def __init__(self, backbone, params: IJEPAParams, context):
        super().__init__(backbone, params, context)
        if not backbone.has_attention:
            raise ValueError("I-JEPA needs a ViT backbone (model.backbone = \"vit\")")
        p = self.parse_params(params)
        self.sampler = MultiBlockSampler(
            backbone.grid_size, num_targets=p.num_targets, target_scale=(p.target_scale_min, p.target_scale_max),
            target_aspect=(p.target_aspect_min, p.target_aspect_max), context_scale=(p.context_scale_min, p.context_scale_max),
            context_aspect=(1.0, 1.0), min_keep=p.min_context)
        dim = p.predictor_dim or backbone.embed_dim // 2
        self.predictor = IJEPAPredictor(backbone.embed_dim, backbone.grid_size, dim, p.predictor_depth, backbone.num_heads)
        self.build_momentum_targets(enabled=not self.ablated("no_ema"))

    @classmethod
    def parse_params(cls, mapping):
        """The dataclass's own checks, then min <= max for every block range (so the form flags it, not the run)."""
        p = super().parse_params(mapping)
        for lo, hi in (("target_scale_min", "target_scale_max"), ("target_aspect_min", "target_aspect_max"),
                       ("context_scale_min", "context_scale_max")):
            if getattr(p, lo) > getattr(p, hi):
                raise ConfigError(f"objective.{lo}", f"must be <= objective.{hi} ({getattr(p, hi):g}), got {getattr(p, lo):g}")
        return p

    @property
    def attention_backbone(self) -> nn.Module:
        """The encoder evaluation reads (the paper evaluates the target encoder): its attention is what the panels show."""
        return self.target_encoder if self.target_encoder is not None else self.backbone

    # -- the model ---------------------------------------------------------------------
    @torch.no_grad()
    def targets(self, x: torch.Tensor, masks: MultiBlockMasks) -> torch.Tensor:
        """Layer-normalised target-encoder patch embeddings at the target blocks, ``B x T x m x D``."""
        h = self.attention_backbone.forward_tokens(x)[:, 1:]
        h = F.layer_norm(h.float(), (h.shape[-1],)).to(h.dtype)
        b, t, m = masks.targets.shape
        idx = masks.targets.reshape(b, t * m, 1).expand(-1, -1, h.shape[-1])
        return torch.gather(h, 1, idx).reshape(b, t, m, -1)

    def predict(self, x: torch.Tensor, masks: MultiBlockMasks) -> torch.Tensor:
        ctx = self.backbone.forward_tokens(x, masks.context)[:, 1:]
        return self.predictor(ctx, masks.context, masks.targets)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        x = batch.views[0]
        masks = self.draw_global(x.shape[0], lambda rows, g: self.sampler(rows, generator=g, device=x.device))
        target = self.targets(x, masks).detach()
        pred = self.predict(x, masks)
        loss = ijepa_loss(pred, target, self.params.loss)
        with torch.no_grad():
            cos = F.cosine_similarity(pred.float(), target.float(), dim=-1).mean()
        return StepOutput(loss, {"pred_cosine": cos, "context_patches": float(masks.context.shape[1]), "momentum": self.momentum})

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Average-pooled patch embeddings of the target encoder (the paper's evaluation feature)."""
        return self.attention_backbone.forward_tokens(images)[:, 1:].mean(1)

    # -- pictures ----------------------------------------------------------------------
    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        """Context and target blocks on the probe images (same seed every time) and how well they are predicted.

        ``cosine`` (``B x T``): mean cosine between predicted and actual target embeddings
        per block; ``shuffled_cosine``: the same predictions against *another* image's
        targets at the same positions - the part of the score that position alone explains.
        """
        was_training = self.training
        self.eval()
        try:
            x = images.float()
            g = torch.Generator().manual_seed(PROBE_MASK_SEED)
            masks = self.sampler(x.shape[0], generator=g, device=x.device)
            pred = self.predict(x, masks).float()
            target = self.targets(x, masks).float()
            cos = F.cosine_similarity(pred, target, dim=-1).mean(-1)  # B x T
            shuffled = F.cosine_similarity(pred, target.roll(1, dims=0), dim=-1).mean(-1) if x.shape[0] > 1 else cos
            return {"ijepa": {
                "image": to_display(x, self.context.mean, self.context.std).cpu().numpy(),
                "context_mask": masks.context_mask.cpu().numpy(),
                "target_masks": masks.target_masks.cpu().numpy(),
                "cosine": cos.cpu().numpy(),
                "mean_cosine": float(cos.mean()),
                "shuffled_cosine": float(shuffled.mean()),
                "grid": int(self.backbone.grid_size),
                "context_block": list(masks.block_shapes["context"]),
                "target_block": list(masks.block_shapes["target"]),
            }}
        finally:
            self.train(was_training)


__all__ = ["IJEPA", "IJEPAParams", "IJEPAPredictor"]
