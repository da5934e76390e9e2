"""A small Vision Transformer with the hooks masked and predictive objectives need.

Architecture (Dosovitskiy et al. 2021): non-overlapping patches, a linear patch embedding, a [CLS]
token, pre-norm Transformer blocks (LayerNorm -> attention -> residual, LayerNorm -> GELU MLP ->
residual), a final LayerNorm; the [CLS] token after it is the feature (``feature_dim = embed_dim``).
Sizes: patch ``image_size // 8`` (an 8x8 grid; ``model.patch_size`` sets another), embed ``3 x width``,
depth 6, 3 heads, MLP ratio 4.
Default width 32 (embed 96, half ViT-Tiny): 2.4x ViT-Tiny's training speed on a CPU core, and at a
few hundred steps steps matter more than width (docs/studies/vit-on-shapes.md, also for what a ViT
learns on shapes in CPU-minutes, and why no convolutional stem).

Registers (``registers``, off by default; Darcet et al. 2024): learned tokens after [CLS], with no
position embedding, dropped at the output and from ``attention_maps``.  On shapes they slowed DINO's
drift onto the background but did not reverse it, at 15 % of a step.

Position embeddings are fixed 2-D sine-cosine (MAE, He et al. 2022; I-JEPA, Assran et al. 2023):
meaningful from step 0, unchanged for any subset of patches, and a decoder or predictor rebuilds the
same table with :func:`sincos_pos_embed`.  [CLS] gets none.

Hooks: ``patchify`` / ``unpatchify`` (images <-> ``B x N x (p*p*C)`` pixel patches, MAE's target, an
exact round trip); ``forward_tokens(x, keep)`` (final-normed ``B x (1+n) x D`` tokens of only the
patches in ``keep``: MAE's visible set, I-JEPA's context block); ``attention_maps(x)`` (every layer's
attention probabilities for DINO's heat-maps; the normal forward uses fused
``F.scaled_dot_product_attention``, except under bf16 on a CPU, where explicit attention is faster).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_studio.models.base import Backbone


DEFAULT_DEPTH = 6  # Transformer blocks when model.depth is 0


def default_patch_size(image_size: int) -> int:
    """``image_size // 8`` (at least 2), moved to the nearest divisor of ``image_size``.

    ``image_size // 8`` keeps the grid near 8x8 at any resolution; when it does
    not divide the image (28 // 8 = 3), the divisor closest to ``image_size / 8``
    is taken (28 -> 4, a 7x7 grid), preferring the larger patch on ties (fewer
    tokens, cheaper).
    """
    target = max(2, image_size // 8)
    if image_size % target == 0:
        return target
    divisors = [p for p in range(2, image_size + 1) if image_size % p == 0 and p < image_size]
    if not divisors:
        raise ValueError(
            f"ViT cannot split a {image_size}x{image_size} image into equal patches of at least 2 px; "
            f"choose a data.resolution with a divisor between 2 and {image_size - 1} (e.g. 32)."
        )
    return min(divisors, key=lambda p: (abs(p - image_size / 8), -p))


def sincos_pos_embed(embed_dim: int, grid_size: int, extent: int | None = None) -> Tensor:
    """Fixed 2-D sine-cosine position embeddings, ``grid_size**2 x embed_dim`` (row-major).

    Half of the channels encode the row, half the column, each with the 1-D
    sin/cos frequencies of Vaswani et al. (2017); layout as in MAE's reference
    code (He et al. 2022).  ``embed_dim`` must be divisible by 4.

    ``extent``: the grid the positions are defined on, when ``grid_size`` is a
    coarser grid spread over the same span (positions ``0 .. extent - 1`` sampled
    at ``grid_size`` evenly spaced points).  This is the fixed-table form of
    DINO's ``interpolate_pos_encoding`` (Caron et al. 2021): a small local crop
    enters the ViT at its own size, covering the whole position range, instead of
    being upsampled to the full image first.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"sincos position embeddings need embed_dim divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    if extent is None or extent == grid_size or grid_size < 2:
        coords = torch.arange(grid_size, dtype=torch.float64)
    else:
        coords = torch.linspace(0.0, extent - 1.0, grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed_1d(pos: Tensor) -> Tensor:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # MAE uses the width coordinate for the first half.
    return torch.cat([embed_1d(cols), embed_1d(rows)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention; fused SDPA unless the probabilities are wanted."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each B x H x N x Dh
        attn: Tensor | None = None
        if return_attention or (q.device.type == "cpu" and q.dtype == torch.bfloat16):
            # Explicit attention (softmax in float32): on a CPU core under bf16 autocast it is about twice as fast,
            # forward and backward, as PyTorch's fused CPU kernel for the lab's short sequences (docs/studies/recipes.md).
            scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
            probs = scores.float().softmax(dim=-1)
            out = probs.to(v.dtype) @ v
            attn = probs if return_attention else None
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm Transformer block (Dosovitskiy et al. 2021, eq. 2-3)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, return_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class ViT(Backbone):
    """Small ViT; see the module docstring for the sizes and the hooks.

    Args:
        image_size: side of the square input.
        in_channels: image channels.
        width: base width; ``embed_dim = 3 x width`` (so 3 heads of ``width``; 64 is ViT-Tiny).
        depth: number of Transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        patch_size: override the default ``image_size // 8``.
        registers: extra learnable tokens that join the sequence and are dropped at the
            output (Darcet et al. 2024); 0 = none.  See the module docstring.
    """

    has_attention = True

    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        width: int = 32,
        depth: int = DEFAULT_DEPTH,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        registers: int = 0,
    ) -> None:
        super().__init__(image_size, in_channels)
        p = patch_size if patch_size is not None else default_patch_size(image_size)
        if image_size % p != 0:
            raise ValueError(f"ViT patch size {p} does not divide image size {image_size}")
        d = embed_dim if embed_dim is not None else 3 * int(width)
        # Heads must split D evenly and sincos needs D % 4 == 0: round down to fit.
        step = math.lcm(4, num_heads)
        d = max(step, (d // step) * step)
        self.patch_size = p
        self.grid_size = image_size // p
        self.num_patches = self.grid_size**2
        self.embed_dim = d
        self.depth = depth
        self.num_heads = num_heads
        self.feature_dim = d
        # A stride-p conv is the linear patch embedding of Dosovitskiy et al. on patchified pixels.
        self.patch_embed = nn.Conv2d(in_channels, d, kernel_size=p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.num_registers = int(registers)
        self.register_tokens = nn.Parameter(torch.zeros(1, self.num_registers, d)) if self.num_registers else None
        self.register_buffer("pos_embed", sincos_pos_embed(d, self.grid_size).unsqueeze(0), persistent=False)
        self._coarse_pos: dict[int, Tensor] = {}  # tables for smaller inputs (local crops), made on first use
        self.blocks = nn.ModuleList(Block(d, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        # Truncated normal 0.02 for linear layers and the [CLS] token, as in
        # the ViT/DeiT/MAE reference code; the patch embedding is initialised
        # like a linear layer on flattened patches (xavier, as MAE).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.register_tokens is not None:
            nn.init.trunc_normal_(self.register_tokens, std=0.02)  # as the [CLS] token: each starts different

    def describe(self) -> str:
        """The sizes a study table should state, e.g. "ViT, embed 96, depth 6, 3 heads, 4-px patches (8x8)"."""
        registers = f", {self.num_registers} registers" if self.num_registers else ""
        return (f"ViT, embed {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, "
                f"{self.patch_size}-px patches ({self.grid_size}x{self.grid_size}){registers}")

    # ---- pixels <-> patches -------------------------------------------------
    def patchify(self, x: Tensor) -> Tensor:
        """``B x C x S x S`` -> ``B x N x (p*p*C)``, patches row-major, pixels (row, col, channel)."""
        b, c, h, w = x.shape
        p, g = self.patch_size, self.grid_size
        if h != g * p or w != g * p:
            raise ValueError(f"patchify expects {g * p}x{g * p} images, got {h}x{w}")
        x = x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1)  # B g g p p C
        return x.reshape(b, g * g, p * p * c)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """Inverse of :meth:`patchify`."""
        b, n, k = patches.shape
        p, g = self.patch_size, self.grid_size
        c = k // (p * p)
        if n != g * g or c * p * p != k:
            raise ValueError(f"unpatchify expects B x {g * g} x (p*p*C) with p={p}, got {tuple(patches.shape)}")
        x = patches.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)  # B C g p g p
        return x.reshape(b, c, g * p, g * p)

    # ---- encoder --------------------------------------------------------------
    def accepts(self, size: int) -> bool:
        """Whether ``size`` x ``size`` images can enter as they are: any whole number of patches.

        Images other than ``image_size`` (DINO's and SwAV's local crops) get the
        position table spread over their coarser grid (see :func:`sincos_pos_embed`).
        """
        return size >= self.patch_size and size % self.patch_size == 0

    def _pos_embed_for(self, grid: int, like: Tensor) -> Tensor:
        if grid == self.grid_size:
            return self.pos_embed.to(like.dtype)
        table = self._coarse_pos.get(grid)
        if table is None or table.device != like.device:
            table = sincos_pos_embed(self.embed_dim, grid, extent=self.grid_size).unsqueeze(0).to(like.device)
            self._coarse_pos[grid] = table
        return table.to(like.dtype)

    def embed_patches(self, x: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None) -> Tensor:
        """Patch tokens with position embeddings, ``B x N x D`` (no [CLS], no blocks).

        With ``mask`` (``B x N`` bool) the patches marked True are replaced by ``mask_token``
        (``D`` values, owned by the caller) before the position embedding is added, so the
        network knows where a hidden patch is but not what it holds (BEiT's and iBOT's masked
        image modelling; unlike ``keep``, the hidden patches stay in the sequence).
        """
        if x.shape[-1] != x.shape[-2] or not self.accepts(x.shape[-1]):
            raise ValueError(f"ViT with {self.patch_size}-px patches cannot take {x.shape[-2]}x{x.shape[-1]} images; "
                             f"use square images whose side is a multiple of {self.patch_size}")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # B N D
        if mask is not None:
            if mask_token is None or mask.shape != tokens.shape[:2]:
                raise ValueError(f"mask must be B x N = {tuple(tokens.shape[:2])} booleans with a mask_token, got {tuple(mask.shape)}")
            tokens = torch.where(mask.to(tokens.device).unsqueeze(-1), mask_token.reshape(1, 1, -1).to(tokens.dtype), tokens)
        return tokens + self._pos_embed_for(x.shape[-1] // self.patch_size, tokens)

    def _encode(self, x: Tensor, keep: Tensor | None, return_attention: bool,
                mask: Tensor | None = None, mask_token: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        tokens = self.embed_patches(x, mask, mask_token)
        if keep is not None:
            if keep.dim() != 2 or keep.shape[0] != tokens.shape[0]:
                raise ValueError(f"keep must be B x n patch indices, got shape {tuple(keep.shape)} for batch {tokens.shape[0]}")
            index = keep.to(device=tokens.device, dtype=torch.long).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, index)
        lead = [self.cls_token] if self.register_tokens is None else [self.cls_token, self.register_tokens]
        h = torch.cat([t.to(tokens.dtype).expand(tokens.shape[0], -1, -1) for t in lead] + [tokens], dim=1)
        # Registers sit after [CLS]; the tokens and maps given out hold [CLS] and the patches only.
        shown = None
        if self.register_tokens is not None:
            shown = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1 + self.num_registers, h.shape[1])]).to(h.device)
        maps: list[Tensor] = []
        for block in self.blocks:
            h, attn = block(h, return_attention)
            if attn is not None:
                maps.append(attn if shown is None else attn.index_select(-2, shown).index_select(-1, shown))
        if shown is not None:
            h = h.index_select(1, shown)
        return self.norm(h), maps

    def forward_tokens(self, x: Tensor, keep: Tensor | None = None, mask: Tensor | None = None,
                       mask_token: Tensor | None = None) -> Tensor:
        """Final-normed tokens ``B x (1+n) x D``: [CLS] then the kept patches in ``keep``'s order.

        With ``keep`` (``B x n`` indices into the ``num_patches`` patches) the
        dropped patches never enter the encoder: their pixels cannot affect
        the result (MAE, He et al. 2022).  With ``mask`` and ``mask_token`` the
        hidden patches enter as the mask token instead (see :meth:`embed_patches`).
        """
        return self._encode(x, keep, False, mask, mask_token)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_tokens(x)[:, 0]

    def attention_maps(self, x: Tensor, keep: Tensor | None = None) -> list[Tensor]:
        """Softmax attention of each layer: ``depth`` tensors ``B x H x (1+n) x (1+n)`` (float32).

        With registers, their rows and columns are left out, so a row sums to one minus the
        mass it gave the registers; readers renormalise over the patches (DINO's figures do).
        """
        return self._encode(x, keep, True)[1]

    def forward_with_attention(self, x: Tensor, keep: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Tokens and attention maps from one pass (for visuals that need both)."""
        return self._encode(x, keep, True)


__all__ = ["ViT", "default_patch_size", "sincos_pos_embed"]
