"""The denoising autoencoder (Vincent et al. 2008): corrupt the image, reconstruct the clean one.

The ancestor of masked prediction: an autoencoder that must undo a corruption cannot copy its
input, so its code has to capture what the corruption destroys.  Two corruptions from the paper's
line of work: Gaussian noise added to every pixel (``strength`` = its standard deviation, in units
of the data's per-channel std) and masking noise (``strength`` = the share of pixel locations set
to the data mean, all channels together).  The encoder is the lab backbone.  The decoder reads
either its spatial code (``spatial``: the last feature map, or the ViT's patch tokens, each
location decoded to the pixels it covers by a per-location MLP) or its pooled feature
(``pooled``: an MLP to every pixel).  The loss is the mean squared error against the clean,
normalised image.

Its broken twin is the ``no_noise`` ablation: no corruption, and an autoencoder whose code can
carry the image (``decoder = spatial`` on the ViT: its patch tokens hold more numbers than the
image) learns to copy; the pooled feature is too small to copy through.  ``reconstruction_errors`` measures that: the error on clean inputs, and on
corrupted inputs against the clean image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.objectives.base import Batch, MetricSpec, Objective, OptimRecipe, StepOutput
from ssl_studio.params import param

PROBE_NOISE_SEED = 0  # the same corruption of the probe images at every visuals step


@dataclass
class DAEParams:
    """Vincent et al. 2008 (masking noise, their main corruption) and Vincent et al. 2010 (Gaussian noise)."""

    noise: str = param("masking", help="Corruption: masking (pixels set to the mean) or gaussian (noise added).",
                       choices=("masking", "gaussian"))
    strength: float = param(0.5, help="Masking: share of pixels hidden; Gaussian: noise std in units of the data's std.",
                            min=0.0, max=3.0)
    decoder: str = param("pooled", help="What the decoder reads: the backbone's spatial code (last feature map or patch "
                         "tokens) or its pooled feature.", choices=("spatial", "pooled"))
    decoder_hidden: int = param(512, help="Hidden width of the MLP decoder.", min=16, max=8192)


def noise_draw(noise: str, rows: int, shape: tuple[int, int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """The random numbers of one corruption of ``rows`` images of ``shape`` (C, S, S): uniforms per pixel
    location (masking) or standard normals per value (Gaussian)."""
    c, h, w = shape
    if noise == "masking":
        return torch.rand(rows, 1, h, w, generator=generator)
    return torch.randn(rows, c, h, w, generator=generator)


def apply_noise(x: torch.Tensor, noise: str, strength: float, draw: torch.Tensor) -> torch.Tensor:
    """``x`` (normalised B×C×S×S) corrupted with ``draw`` (from ``noise_draw``): masking noise sets a ``strength``
    share of pixel locations to 0 (the data mean) in every channel, Gaussian noise adds N(0, strength²) to every value."""
    if strength <= 0:
        return x
    draw = draw.to(device=x.device, dtype=x.dtype)
    if noise == "masking":
        return x * (draw >= strength).to(x.dtype)
    return x + strength * draw


def corrupt(x: torch.Tensor, noise: str, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` corrupted by a fresh draw (see ``apply_noise``)."""
    if strength <= 0:
        return x
    return apply_noise(x, noise, strength, noise_draw(noise, x.shape[0], tuple(x.shape[1:]), generator))


def spatial_code(backbone, x: torch.Tensor) -> torch.Tensor:
    """The backbone's code before pooling, B×C×h×w: its last feature map, or the ViT's patch tokens on their grid."""
    if hasattr(backbone, "forward_tokens"):
        tokens = backbone.forward_tokens(x)[:, 1:]
        g = backbone.grid_size
        return tokens.transpose(1, 2).reshape(x.shape[0], tokens.shape[-1], g, g)
    return backbone.forward_map(x)


def spatial_code_shape(backbone, channels: int, size: int) -> tuple[int, int] | None:
    """(channels, grid side) of ``spatial_code`` for ``size``-px images; None when the backbone has no
    square spatial code whose grid divides the image (the decoder then reads the pooled feature)."""
    if not (hasattr(backbone, "forward_tokens") or hasattr(backbone, "forward_map")):
        return None
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            code = spatial_code(backbone, torch.zeros(1, channels, size, size))
    finally:
        backbone.train(was_training)
    if code.dim() != 4 or code.shape[-1] != code.shape[-2] or size % code.shape[-1]:
        return None
    return int(code.shape[1]), int(code.shape[-1])


class DenoisingAE(Objective):
    name = "denoising-ae"
    title = "Denoising autoencoder"
    family = "masked"
    description = ("Corrupt the image (masking or Gaussian noise) and reconstruct the clean one from the backbone's feature.\n"
                   "The ancestor of masked prediction (Vincent et al. 2008); with no noise it can simply copy.")
    Params = DAEParams
    honours = frozenset({"no_noise"})
    num_global_views = 1
    recipe = OptimRecipe(optimizer="adamw", lr=2e-3, weight_decay=0.05)
    augment_defaults = {"jitter_p": 0.0, "grayscale_p": 0.0}  # crops and flips; the corruption is the task
    metric_specs = {"noisy_mse": MetricSpec("MSE of the corrupted input", "", "reconstruction")}

    def __init__(self, backbone, params: DAEParams, context):
        super().__init__(backbone, params, context)
        size = context.image_size
        channels = getattr(backbone, "in_channels", 3)
        self.out_shape = (channels, size, size)
        self.spatial = params.decoder == "spatial" and spatial_code_shape(backbone, channels, size) is not None
        if self.spatial:
            code_channels, grid = spatial_code_shape(backbone, channels, size)
            self.scale = size // grid
            self.decoder = nn.Sequential(nn.Conv2d(code_channels, params.decoder_hidden, 1), nn.GELU(),
                                         nn.Conv2d(params.decoder_hidden, channels * self.scale ** 2, 1))
        else:
            self.decoder = nn.Sequential(nn.Linear(backbone.feature_dim, params.decoder_hidden), nn.GELU(),
                                         nn.Linear(params.decoder_hidden, channels * size * size))

    @property
    def strength(self) -> float:
        return 0.0 if self.ablated("no_noise") else self.params.strength

    def reconstruct_from(self, noisy: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            return F.pixel_shuffle(self.decoder(spatial_code(self.backbone, noisy)), self.scale)
        return self.decoder(self.backbone(noisy)).view(noisy.shape[0], *self.out_shape)

    @torch.no_grad()
    def reconstruction_errors(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, float]:
        """MSE against the clean images ``x`` of: the corrupted input itself, the reconstruction of the
        corrupted input, and the reconstruction of the clean input (near zero and equal to the first for a copier)."""
        noisy = corrupt(x, self.params.noise, self.params.strength, generator)
        return {"noisy_input": float(F.mse_loss(noisy.float(), x.float())),
                "from_noisy": float(F.mse_loss(self.reconstruct_from(noisy).float(), x.float())),
                "from_clean": float(F.mse_loss(self.reconstruct_from(x).float(), x.float()))}

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        clean = batch.views[0]
        kind, shape = self.params.noise, tuple(clean.shape[1:])
        draw = self.draw_global(clean.shape[0], lambda rows, g: noise_draw(kind, rows, shape, g))  # the same on 1 or N processes
        noisy = apply_noise(clean, kind, self.strength, draw)
        recon = self.reconstruct_from(noisy).float()
        loss = F.mse_loss(recon, clean.float())
        return StepOutput(loss, {"noisy_mse": F.mse_loss(noisy.float(), clean.float()).detach()})

    @torch.no_grad()
    def visuals(self, images: torch.Tensor) -> dict[str, Any] | None:
        """The reconstruction panel's payload: clean / corrupted input / reconstruction (twice: no patches to paste back)."""
        from ssl_studio.objectives.mae import to_display

        was_training = self.training
        self.eval()
        try:
            g = torch.Generator().manual_seed(PROBE_NOISE_SEED)
            x = images.float()
            noisy = corrupt(x, self.params.noise, self.strength, g)
            recon = self.reconstruct_from(noisy).float()
            show = lambda t: to_display(t, self.context.mean, self.context.std)  # noqa: E731
            original, rec = show(x), show(recon)
            return {"reconstruction": {
                "original": original.cpu().numpy(), "masked": show(noisy).cpu().numpy(), "reconstruction": rec.cpu().numpy(),
                "pasted": rec.cpu().numpy(), "mask_ratio": self.strength, "seed": PROBE_NOISE_SEED, "grid": 1,
                "masked_mse": float(((rec - original) ** 2).mean()), "noise": self.params.noise,
            }}
        finally:
            self.train(was_training)


__all__ = ["DAEParams", "DenoisingAE", "apply_noise", "corrupt", "noise_draw"]
