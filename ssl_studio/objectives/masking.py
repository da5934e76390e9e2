"""Which patches an encoder sees: MAE's random masking, I-JEPA's multi-block masks, iBOT's blockwise masks.

Both samplers work on the ViT's patch grid (row-major patch indices, as in
``ViT.patchify``) and return *indices*, because ``ViT.forward_tokens(x, keep)``
takes the visible set as ``B x n`` indices: the dropped patches never enter the
encoder, which is the whole point (and the whole saving) of MAE.

Randomness comes from an explicit ``torch.Generator`` when one is given, so a
fixed seed draws the same masks on every call (the reconstruction panel's
"same mask, later model" view) and the tests are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


# --------------------------------------------------------------------------- MAE


@dataclass
class PatchMask:
    """One random masking of a batch.

    keep: ``B x n_keep`` visible patch indices, ascending (the encoder's input order).
    masked: ``B x n_mask`` hidden patch indices, ascending.
    mask: ``B x N`` bool, True where a patch is hidden (MAE's convention: 1 = removed).
    restore: ``B x N``; ``cat([visible tokens, mask tokens])[restore]`` puts every
        token back at its patch position (MAE's ``ids_restore``).
    """

    keep: torch.Tensor
    masked: torch.Tensor
    mask: torch.Tensor
    restore: torch.Tensor

    @property
    def ratio(self) -> float:
        return self.masked.shape[1] / self.mask.shape[1]

    def rows(self, index: slice) -> "PatchMask":
        """The masks of some images of the batch (a rank's share of a mask drawn for the global batch)."""
        return PatchMask(keep=self.keep[index], masked=self.masked[index], mask=self.mask[index], restore=self.restore[index])


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """round(ratio x N), kept in [0, N - 1]: the encoder always sees at least one patch."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return min(num_patches - 1, max(0, int(round(mask_ratio * num_patches))))


def random_patch_mask(batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> PatchMask:
    """Per-sample uniform random masking of exactly ``num_masked(N, ratio)`` patches (He et al. 2022, sec. 3).

    As MAE's ``random_masking``: argsort of uniform noise is a uniform random
    permutation per sample; its first ``n_keep`` entries are the visible set.
    Unlike the reference code the kept indices are sorted, so visible tokens
    enter the encoder in raster order (attention is permutation-equivariant,
    so this changes nothing but makes the indices easy to read).
    """
    n_mask = num_masked(num_patches, mask_ratio)
    n_keep = num_patches - n_mask
    noise = _rand((batch, num_patches), generator, device)
    shuffle = torch.argsort(noise, dim=1)
    keep = torch.sort(shuffle[:, :n_keep], dim=1).values
    masked = torch.sort(shuffle[:, n_keep:], dim=1).values
    order = torch.cat([keep, masked], dim=1)  # token j of [visible, mask] sits at patch order[j]
    restore = torch.argsort(order, dim=1)
    mask = torch.ones(batch, num_patches, dtype=torch.bool, device=keep.device)
    mask.scatter_(1, keep, False)
    return PatchMask(keep=keep, masked=masked, mask=mask, restore=restore)


# --------------------------------------------------------------------------- I-JEPA


@dataclass
class MultiBlockMasks:
    """I-JEPA's masks for one batch.

    context: ``B x n_ctx`` patch indices the context encoder sees (ascending).
    targets: ``B x T x n_tgt`` patch indices of each target block (ascending).
    context_mask: ``B x N`` bool, True on context patches (after truncation).
    target_masks: ``B x T x N`` bool, True on each target block's patches.
    block_shapes: the (rows, cols) of the context block and of the target blocks
        drawn for this batch (one size per batch, as in the official collator).
    """

    context: torch.Tensor
    targets: torch.Tensor
    context_mask: torch.Tensor
    target_masks: torch.Tensor
    block_shapes: dict[str, tuple[int, int]]

    def rows(self, index: slice) -> "MultiBlockMasks":
        """The masks of some images of the batch (a rank's share of masks drawn for the global batch)."""
        return MultiBlockMasks(context=self.context[index], targets=self.targets[index], context_mask=self.context_mask[index],
                               target_masks=self.target_masks[index], block_shapes=self.block_shapes)


def block_candidates(grid: int, scale: tuple[float, float], aspect: tuple[float, float]) -> list[tuple[int, int]]:
    """Every (rows, cols) block on a ``grid x grid`` patch grid whose area share and aspect
    (rows / cols, as ``h / w`` in the I-JEPA code) fall inside the ranges."""
    n = grid * grid
    out = []
    for h in range(1, grid + 1):
        for w in range(1, grid + 1):
            s, a = h * w / n, h / w
            if scale[0] - 1e-9 <= s <= scale[1] + 1e-9 and aspect[0] - 1e-9 <= a <= aspect[1] + 1e-9:
                out.append((h, w))
    return out


def block_shape(grid: int, scale: tuple[float, float], aspect: tuple[float, float], u_scale: float, u_aspect: float) -> tuple[int, int]:
    """A block size for a draw (u_scale, u_aspect) in [0, 1)^2, on the patch grid.

    The official sampler draws ``s ~ U(scale)``, ``a ~ U(aspect)`` and rounds
    ``h = round(sqrt(s N a))``, ``w = round(sqrt(s N / a))``; on a 14x14 grid
    the rounding is small, on the lab's 8x8 grid it can leave both ranges (a
    0.15 share of 64 patches at aspect 0.75 rounds to 3x3 = 0.14).  So the
    continuous draw is kept but snapped to the nearest block (in log area and
    log aspect) that lies *inside* both ranges; only when no block on the grid
    does (tiny grids) is the nearest block of any size taken.
    """
    n = grid * grid
    s = scale[0] + (scale[1] - scale[0]) * u_scale
    a = aspect[0] + (aspect[1] - aspect[0]) * u_aspect
    pool = block_candidates(grid, scale, aspect)
    if not pool:
        pool = [(h, w) for h in range(1, grid + 1) for w in range(1, grid + 1)]

    def distance(hw: tuple[int, int]) -> float:
        h, w = hw
        return math.log(h * w / n / s) ** 2 + math.log(h / w / a) ** 2

    return min(pool, key=distance)


class MultiBlockSampler:
    """One context block and ``num_targets`` target blocks per image (Assran et al. 2023, sec. 3).

    Published ranges: targets cover 15-20 % of the image each, aspect 0.75-1.5;
    the context block 85-100 %, aspect 1; target patches are removed from the
    context so the predictor cannot copy them.  As in the official
    ``MaskCollator``, block *sizes* are drawn once per batch (so every image has
    target blocks of the same length) and *positions* per image, and each
    image's context is cut to the smallest context in the batch so that the
    batch stays rectangular.  The official code cuts the sorted index list
    (dropping the bottom rows first); here a random subset is dropped instead,
    which keeps the context spatially unbiased.

    ``min_keep``: an image whose context keeps fewer patches after the targets
    are removed draws new target positions (official: up to 20 tries, then the
    requirement is relaxed; same here).
    """

    def __init__(self, grid: int, num_targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                 target_aspect: tuple[float, float] = (0.75, 1.5), context_scale: tuple[float, float] = (0.85, 1.0),
                 context_aspect: tuple[float, float] = (1.0, 1.0), min_keep: int = 4, tries: int = 20):
        if num_targets < 1:
            raise ValueError(f"num_targets must be >= 1, got {num_targets}")
        self.grid = grid
        self.num_targets = num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect
        self.min_keep = min_keep
        self.tries = tries

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def _place(self, hw: tuple[int, int], u: torch.Tensor) -> torch.Tensor:
        """``... x N`` bool blocks of size ``hw`` at positions drawn from uniforms ``u`` (``... x 2``)."""
        h, w = hw
        g = self.grid
        top = (u[..., 0] * (g - h + 1)).long().clamp(max=g - h)
        left = (u[..., 1] * (g - w + 1)).long().clamp(max=g - w)
        idx = torch.arange(g)
        rows = (idx >= top[..., None]) & (idx < top[..., None] + h)  # ... x g
        cols = (idx >= left[..., None]) & (idx < left[..., None] + w)
        return (rows[..., :, None] & cols[..., None, :]).flatten(-2)

    def __call__(self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None) -> MultiBlockMasks:
        # A few scalar draws per image on a 64-patch grid: done on the CPU, vectorised over the batch.
        u = _rand((4,), generator, "cpu")
        t_hw = block_shape(self.grid, self.target_scale, self.target_aspect, float(u[0]), float(u[1]))
        c_hw = block_shape(self.grid, self.context_scale, self.context_aspect, float(u[2]), float(u[3]))
        n = self.num_patches
        target_masks = torch.zeros(batch, self.num_targets, n, dtype=torch.bool)
        context_masks = torch.zeros(batch, n, dtype=torch.bool)
        todo = torch.arange(batch)
        for attempt in range(self.tries):
            draws = _rand((len(todo), self.num_targets + 1, 2), generator, "cpu")
            blocks = self._place(t_hw, draws[:, :-1])  # m x T x N
            context = self._place(c_hw, draws[:, -1]) & ~blocks.any(1)  # m x N
            ok = context.sum(1) >= self.min_keep
            if attempt == self.tries - 1:
                ok[:] = True
            target_masks[todo[ok]] = blocks[ok]
            context_masks[todo[ok]] = context[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                break
        empty = context_masks.sum(1) == 0
        if empty.any():  # only on degenerate grids (targets cover everything): keep one patch outside the targets
            outside = ~target_masks[empty].any(1)
            first = torch.where(outside.any(1), outside.float().argmax(1), torch.zeros(int(empty.sum()), dtype=torch.long))
            fix = torch.zeros(int(empty.sum()), n, dtype=torch.bool)
            fix[torch.arange(len(first)), first] = True
            context_masks[empty] = fix
        n_ctx = int(context_masks.sum(1).min())
        noise = _rand((batch, n), generator, "cpu")
        noise = torch.where(context_masks, noise, torch.full_like(noise, 2.0))  # non-context patches sort last
        kept = torch.sort(torch.argsort(noise, dim=1)[:, :n_ctx], dim=1).values
        context_masks = torch.zeros_like(context_masks).scatter_(1, kept, True)
        n_tgt = t_hw[0] * t_hw[1]
        targets = target_masks.reshape(batch * self.num_targets, n).nonzero()[:, 1].reshape(batch, self.num_targets, n_tgt)
        return MultiBlockMasks(
            context=kept.to(device) if device is not None else kept,
            targets=targets.to(device) if device is not None else targets,
            context_mask=context_masks.to(device) if device is not None else context_masks,
            target_masks=target_masks.to(device) if device is not None else target_masks,
            block_shapes={"context": c_hw, "target": t_hw},
        )


# --------------------------------------------------------------------------- iBOT


def blockwise_patch_mask(ratios: list[float], grid: int, min_block: int = 4, aspect: tuple[float, float] = (0.3, 1 / 0.3),
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """``len(ratios) x N`` bool, True on the hidden patches: BEiT's blockwise masking (Bao et al. 2022, alg. 1).

    iBOT (Zhou et al. 2022) hides patches this way rather than one by one: a hidden patch
    whose neighbours are visible can be filled in from them, a hidden block has to be
    inferred from the object around it.  For each image, rectangles of at least
    ``min_block`` patches (area uniform up to what is still to hide, aspect log-uniform in
    ``aspect``, as the BEiT/iBOT generator) are added while they hide only new patches and
    do not overshoot; on the lab's 8x8 grid the last few patches may not fit a block, so
    single random patches make up the rest and every image hides exactly
    ``num_masked(N, ratio)`` patches (0 for a ratio of 0).
    """
    n = grid * grid
    out = torch.zeros(len(ratios), n, dtype=torch.bool)
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for i, ratio in enumerate(ratios):
        target = num_masked(n, float(ratio))
        hidden = out[i].view(grid, grid)
        count = 0
        for _ in range(10 * target):
            room = target - count
            if room <= 0:
                break
            u = _rand((4,), generator, "cpu").tolist()
            area = min_block + (max(room, min_block) - min_block) * u[0]
            ar = math.exp(log_lo + (log_hi - log_lo) * u[1])
            h, w = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
            if not (1 <= h <= grid and 1 <= w <= grid):
                continue
            top, left = min(int(u[2] * (grid - h + 1)), grid - h), min(int(u[3] * (grid - w + 1)), grid - w)
            block = hidden[top:top + h, left:left + w]
            new = int((~block).sum())
            if 0 < new <= room:
                block.fill_(True)
                count += new
        if count < target:
            free = (~out[i]).nonzero().flatten()
            out[i, free[torch.argsort(_rand((len(free),), generator, "cpu"))[: target - count]]] = True
    return out


__all__ = ["MultiBlockMasks", "MultiBlockSampler", "PatchMask", "block_candidates", "block_shape", "blockwise_patch_mask", "num_masked",
           "random_patch_mask"]
