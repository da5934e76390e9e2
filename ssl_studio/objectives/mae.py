"""MAE: hide most patches of an image, encode the rest, and reconstruct the hidden pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssl_studio.models.vit import Block, sincos_pos_embed
from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.objectives.losses import mae_loss, patch_normalise
from ssl_studio.objectives.masking import PatchMask, random_patch_mask
from ssl_studio.params import param

# The seed of the mask drawn on the probe images at every visuals step: the same mask each
# time, so the panel shows one model getting better rather than a new puzzle each time.
PROBE_MASK_SEED = 0


@dataclass
class MAEParams:
    """He et al. 2022 ("Masked Autoencoders Are Scalable Vision Learners").

    Published: mask ratio 0.75, an 8-block 512-wide decoder (16 heads) with its
    own fixed sine-cosine position embeddings, per-patch normalised pixel targets
    (``norm_pix_loss``, their best setting), MSE on masked patches only.  Adapted to
    a 2-core CPU and an 8x8 patch grid: a 1-block, 64-wide decoder (the paper's
    table 1a-b: a depth-1 decoder still learns); the decoder sees all 65 tokens, the
    encoder 17, so a light one buys twice the steps (docs/studies/recipes.md, "The ViT").

    ``pool``: the feature every evaluation reads.  The reference linear-probe
    script reads the [CLS] token, its fine-tuning script the mean of the patch
    tokens (``global_pool``); the [CLS] token only learns through attention, so at
    lab budgets the mean of the patch tokens is the better feature and is the
    default here.
    """

    mask_ratio: float = param(0.75, help="Share of patches hidden from the encoder (paper: 0.75).", min=0.0, max=0.95)
    norm_pix_loss: bool = param(True, help="Reconstruct each patch normalised by its own mean and std (paper's best target).")
    decoder_dim: int = param(64, help="Width of the decoder (paper: 512).", min=8, max=4096)
    decoder_depth: int = param(1, help="Transformer blocks in the decoder (paper: 8).", min=1, max=24)
    decoder_heads: int = param(4, help="Attention heads in the decoder (paper: 16).", min=1, max=64)
    pool: str = param("mean", help="Evaluation feature: mean of the patch tokens or the [CLS] token of the full, unmasked encoder.",
                      choices=("mean", "cls"))


def to_display(x: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Normalised images back to [0, 1] with the data's per-channel ``mean``/``std``
    (min-max per image when they are not known)."""
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * s + m).clamp(0.0, 1.0)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


class MAEDecoder(nn.Module):
    """MAE's light decoder: project, add a shared mask token at every hidden position, add
    fixed position embeddings, a few Transformer blocks, predict the pixels of every patch."""

    def __init__(self, embed_dim: int, grid_size: int, patch_dim: int, dim: int, depth: int, heads: int):
        super().__init__()
        dim = max(4 * heads, (dim // (4 * heads)) * (4 * heads))  # heads split it evenly; sincos needs dim % 4 == 0
        self.dim = dim
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, grid_size).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # as the reference code
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """``tokens``: encoder output ``B x (1+n_keep) x D`` ([CLS] first); returns ``B x N x patch_dim``."""
        x = self.embed(tokens)
        b, n1, d = x.shape
        n = restore.shape[1]
        filled = torch.cat([x[:, 1:], self.mask_token.to(x.dtype).expand(b, n - (n1 - 1), -1)], dim=1)
        filled = torch.gather(filled, 1, restore.unsqueeze(-1).expand(-1, -1, d))
        filled = filled + self.pos_embed.to(x.dtype)
        h = torch.cat([x[:, :1], filled], dim=1)
        for block in self.blocks:
            h, _ = block(h)
        return self.pred(self.norm(h))[:, 1:]


class MAE(Objective):
    """The encoder is the lab's ViT fed only the visible patches (``forward_tokens(x, keep)``)."""

    name = "mae"
    title = "MAE"
    family = "masked"
    description = ("Three quarters of the patches are hidden; the encoder sees the rest and a light decoder paints the hidden ones back.\n"
                   "No negatives, no second view: the pixels themselves are the target.")
    Params = MAEParams
    backbones = ("vit",)
    num_global_views = 1
    # Paper (and reference code): AdamW, base lr 1.5e-4 per 256 images, wd 0.05, betas (0.9, 0.95), for
    # 800-1600 epochs with 40 warm-up epochs.  A lab run has a few hundred to a few thousand steps, so the
    # base lr is raised to 3e-3 per 256; wd and betas are the paper's (the lab's AdamW uses betas 0.9/0.95).
    # Measured on shapes, 5 minutes of one AVX-512 core, default ViT (embed 96), batch 128, hidden-patch MSE
    # of the probe reconstructions (mean-visible-colour fill: 0.0381): 1e-3 -> 0.0206 (442 steps),
    # 3e-3 -> 0.0150 (410), 6e-3 -> 0.0171 (350 steps, the other core busier).
    recipe = OptimRecipe(optimizer="adamw", lr=3e-3, weight_decay=0.05)
    # docs/studies/masked-shapes-5min.md: about 380-400 steps on the ViT bring the hidden-patch error to a
    # third of the mean-colour fill's, with the attention only just moving (2 standard errors on one seed).
    min_steps = {"vit": 400}
    # Under torchrun: a per-sample loss on a BN-free ViT; the masks are drawn for the global batch
    # (``draw_global``), so N processes hide the patches one process hides.
    batch_exchange = "none"
    metric_specs = {"mask_ratio": MetricSpec("Share of patches hidden", "", "masking"),
                    "visible_patches": MetricSpec("Visible patches", "patches", "masking")}
    # Paper: RandomResizedCrop(scale 0.2-1) + horizontal flip only; masking is the augmentation.
    augment_defaults = {"crop_scale_min": 0.2, "crop_scale_max": 1.0, "flip_p": 0.5, "jitter_p": 0.0, "grayscale_p": 0.0,
                        "blur_p": [0.0, 0.0], "solarize_p": [0.0, 0.0]}

    def __init__(self, backbone, params: MAEParams, context):
        super().__init__(backbone, params, context)
        if not backbone.has_attention:
            raise ValueError("MAE needs a ViT backbone (model.backbone = \"vit\")")
        p = backbone.patch_size
        self.decoder = MAEDecoder(backbone.embed_dim, backbone.grid_size, p * p * backbone.in_channels,
                                  params.decoder_dim, params.decoder_depth, params.decoder_heads)

    # -- the model ---------------------------------------------------------------------
    def forward_masked(self, x: torch.Tensor, mask: PatchMask) -> torch.Tensor:
        """Predicted pixels of every patch, ``B x N x (p*p*C)``, from the visible patches only."""
        tokens = self.backbone.forward_tokens(x, mask.keep)
        return self.decoder(tokens, mask.restore)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        x = batch.views[0]
        mask = self.draw_global(x.shape[0], lambda rows, g: random_patch_mask(rows, self.backbone.num_patches, self.params.mask_ratio,
                                                                              generator=g, device=x.device))
        pred = self.forward_masked(x, mask)
        target = self.backbone.patchify(x)
        loss = mae_loss(pred, target, mask.mask, norm_pix=self.params.norm_pix_loss)
        return StepOutput(loss, {"mask_ratio": mask.ratio, "visible_patches": float(mask.keep.shape[1])})

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.forward_tokens(images)  # the full, unmasked image
        return tokens[:, 0] if self.params.pool == "cls" else tokens[:, 1:].mean(1)

    # -- pictures ----------------------------------------------------------------------
    def _to_display(self, x: torch.Tensor) -> torch.Tensor:
        return to_display(x, self.context.mean, self.context.std)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: float | None = None, seed: int = PROBE_MASK_SEED) -> dict[str, Any]:
        """Reconstructions of ``images`` (normalised, ``B x C x S x S``) under a fresh mask.

        ``mask_ratio`` (default: the trained one) and ``seed`` fix the mask, so the
        same call always hides the same patches.  Returns the "reconstruction"
        visuals payload: ``original``, ``masked`` (hidden patches grey),
        ``reconstruction`` (every patch predicted) and ``pasted`` (visible patches
        pasted back over the prediction), float ``B x C x S x S`` in [0, 1];
        ``mask`` ``B x N`` (1 = hidden); and the scalars ``mask_ratio``, ``seed``,
        ``grid``, ``masked_mse`` (on the display scale [0, 1]).

        With ``norm_pix_loss`` the decoder predicts normalised patches; they are
        shown de-normalised with each target patch's own mean and std (as in the
        paper's figures), which uses the hidden patches' statistics - two numbers
        per patch - so a reconstruction there looks right but is a little better
        informed than the model alone.
        """
        was_training = self.training
        self.eval()
        try:
            ratio = self.params.mask_ratio if mask_ratio is None else float(mask_ratio)
            g = torch.Generator().manual_seed(int(seed))
            x = images.float()
            mask = random_patch_mask(x.shape[0], self.backbone.num_patches, ratio, generator=g, device=x.device)
            pred = self.forward_masked(x, mask).float()
            target = self.backbone.patchify(x)
            if self.params.norm_pix_loss:
                _, mean, std = patch_normalise(target)
                pred = pred * std + mean
            m = mask.mask.unsqueeze(-1).to(pred.dtype)
            pasted = pred * m + target * (1 - m)
            grey = torch.zeros_like(target) + self._grey_level(x)
            masked_in = grey * m + target * (1 - m)
            unpatch = self.backbone.unpatchify
            original = self._to_display(x)
            recon = self._to_display(unpatch(pred))
            err = ((recon - original) ** 2).mean(1, keepdim=True)  # B 1 S S
            err_patches = self.backbone.patchify(err).mean(-1)  # B N
            masked_mse = float((err_patches * mask.mask).sum() / mask.mask.sum().clamp_min(1))
            return {
                "original": original.cpu().numpy(),
                "masked": self._to_display(unpatch(masked_in)).cpu().numpy(),
                "reconstruction": recon.cpu().numpy(),
                "pasted": self._to_display(unpatch(pasted)).cpu().numpy(),
                "mask": mask.mask.cpu().numpy(),
                "mask_ratio": mask.ratio,
                "seed": int(seed),
                "grid": int(self.backbone.grid_size),
                "masked_mse": masked_mse,
            }
        finally:
            self.train(was_training)

    def _grey_level(self, x: torch.Tensor) -> torch.Tensor | float:
        """The normalised value of mid-grey (0.5 on the display scale), so hidden patches show grey."""
        c = self.context
        if c.mean is None or c.std is None:
            return 0.0
        mean = torch.tensor(c.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(c.std, dtype=x.dtype, device=x.device)
        p = self.backbone.patch_size
        per_channel = (0.5 - mean) / std  # C
        return per_channel.repeat(p * p)  # patch pixels are (row, col, channel): channel fastest

    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        return {"reconstruction": self.reconstruct(images, self.params.mask_ratio, PROBE_MASK_SEED)}

    @torch.no_grad()
    def visual_request(self, images: torch.Tensor, request: dict[str, Any]) -> dict[str, Any] | None:
        """The reconstruction panel's slider and "New mask" button: the same images under the asked-for mask."""
        payload = self.reconstruct(images, request.get("mask_ratio"), int(request.get("seed", PROBE_MASK_SEED)))
        payload["requested"] = True
        return {"reconstruction": payload}


__all__ = ["MAE", "MAEDecoder", "MAEParams", "to_display"]
