"""What a ViT attends to: [CLS] attention maps, the 60 %-mass masks of DINO's figures, their
overlap with the objects, and the mean attention distance per layer (no Qt).

Every objective trained on the lab's ViT gets these, whatever its loss: the
trainer calls :func:`attention_visuals` beside the objective's own visuals and
:func:`attention_overlap` in every probe (when the data has object masks).

Conventions:

- [CLS] attention is the last layer's softmax row of the [CLS] query over the
  patch keys, *renormalised over the patches* (the [CLS]->[CLS] entry dropped),
  as DINO's ``visualize_attention.py`` does before thresholding; so each map sums to 1.
- The thresholded mask keeps the smallest set of patches holding ``keep_mass``
  (60 %) of that attention (Caron et al. 2021, fig. 3 and table 7's Jaccard).
- IoU is measured on the *patch grid*: an object mask is downsampled to the grid,
  a patch counting as object when at least half its pixels are (area >= 0.5).
  The attention mask is patch-level to begin with, so comparing on the grid adds
  no invented detail; the cost is that objects smaller than half a patch vanish
  (such images are skipped: their IoU is NaN and left out of the mean).
- Mean attention distance (Dosovitskiy et al. 2021, fig. 7): for each layer and
  head, the attention-weighted average distance in *pixels* between a query
  patch's centre and the key patches' centres, over patch queries and keys only
  ([CLS] left out, rows renormalised), averaged over queries and images; then
  averaged over heads for the per-layer number.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ssl_studio.models.base import Backbone
from ssl_studio.objectives.mae import to_display


def has_attention(backbone: Any) -> bool:
    """Whether ``backbone`` has [CLS] attention over patches to show and measure (``Backbone.has_attention``)."""
    return isinstance(backbone, Backbone) and backbone.has_attention


@torch.no_grad()
def cls_attention(backbone, images: torch.Tensor) -> torch.Tensor:
    """Last layer's [CLS] -> patch attention, ``B x H x N`` (float32), each map summing to 1."""
    maps = backbone.attention_maps(images)
    last = maps[-1].float()  # B x H x (1+N) x (1+N)
    cls = last[:, :, 0, 1:]
    return cls / cls.sum(-1, keepdim=True).clamp_min(1e-12)


def attention_mask(attn: torch.Tensor, keep_mass: float = 0.6, dims: int = 1) -> torch.Tensor:
    """The smallest set of patches holding ``keep_mass`` of the attention, as a bool mask of ``attn``'s shape.

    The last ``dims`` dimensions index the patches (1 for ``... x N``, 2 for ``... x g x g``
    maps); each map is normalised to sum 1 first.  Ties at the boundary are broken by
    patch order (a stable sort), so the count is always the minimal one.
    """
    if not 0.0 < keep_mass <= 1.0:
        raise ValueError(f"keep_mass must be in (0, 1], got {keep_mass}")
    shape = attn.shape
    flat = attn.reshape(*shape[: len(shape) - dims], -1).float().clamp_min(0)
    total = flat.sum(-1, keepdim=True).clamp_min(1e-12)
    vals, order = torch.sort(flat / total, dim=-1, descending=True, stable=True)
    before = torch.cumsum(vals, dim=-1) - vals  # mass of the patches ranked above each one
    keep_sorted = before < keep_mass - 1e-6  # keep until the running mass reaches keep_mass
    mask = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return mask.reshape(shape)


def object_share_on_grid(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """``B x H x W`` bool object masks -> ``B x grid x grid`` float: the share of each patch's pixels that are object."""
    return F.adaptive_avg_pool2d(masks.float().unsqueeze(1), grid)[:, 0]


def object_masks_on_grid(masks: torch.Tensor, grid: int) -> torch.Tensor:
    """``B x H x W`` bool object masks -> ``B x grid x grid`` bool: a patch is object when >= half its pixels are."""
    return object_share_on_grid(masks, grid) >= 0.5


def mask_iou(mask_patches: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
    """Per-image IoU ``B`` (float, NaN where both masks are empty) between ``B x g x g`` patch masks
    and ``B x H x W`` pixel object masks (downsampled to the grid, see the module docstring)."""
    g = mask_patches.shape[-1]
    obj = object_masks if object_masks.shape[-2:] == mask_patches.shape[-2:] else object_masks_on_grid(object_masks, g)
    a = mask_patches.reshape(mask_patches.shape[0], -1).bool().cpu()
    b = obj.reshape(obj.shape[0], -1).bool().cpu()
    inter = (a & b).sum(-1).float()
    union = (a | b).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))


REGIONS = ("inside", "outline", "background")


def attention_by_region(attn: torch.Tensor, object_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the attention goes: its mass on patches wholly inside the object, on patches the
    object's outline crosses, and on pure background, per image; with each region's share of the
    patches (what a uniform map would put there).

    ``attn``: ``B x g x g`` (or ``B x N``) maps, each normalised to sum 1 here; ``object_masks``:
    ``B x H x W`` pixel masks.  Returns ``{region: B}`` masses and ``{region + "_share": B}``
    patch shares.  Why beside the IoU: the IoU counts a patch as object only when half of it is,
    so a map on the object's outline (where a shape's identity is, at 4-px patches) and a map on
    the background both score low; the masses tell them apart.
    """
    b = attn.shape[0]
    g = attn.shape[-1] if attn.dim() == 3 else int(round(attn.shape[-1] ** 0.5))
    a = attn.reshape(b, -1).float().clamp_min(0).cpu()
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    cover = object_share_on_grid(object_masks.cpu(), g).reshape(b, -1)
    regions = {"inside": cover >= 1.0 - 1e-6, "outline": (cover > 1e-6) & (cover < 1.0 - 1e-6), "background": cover <= 1e-6}
    out: dict[str, torch.Tensor] = {}
    for name, cells in regions.items():
        out[name] = (a * cells).sum(-1)
        out[name + "_share"] = cells.float().mean(-1)
    return out


def object_background_auc(attn: torch.Tensor, object_masks: torch.Tensor) -> torch.Tensor:
    """Per image, how well the attention ranks the object's patches above the background's: ``B`` floats.

    The ROC-AUC (Mann-Whitney U / pairs) of the attention as a score separating patches that are
    object (>= half their pixels, as the IoU counts them) from patches with no object pixel; ties
    count half; NaN where an image lacks either kind.  1 = every object patch gets more attention
    than every background patch; 0 = the reverse, a clean figure-ground map whose mass is on the
    ground; 0.5 = no separation.  Why beside the IoU: the 60 %-mass mask only rewards maps that put
    their mass *on* the object, so "looks nowhere in particular" and "outlines the object exactly,
    from the background's side" both score low there; this tells them apart.  (Measured: DINO on
    shapes ends near 0, SimCLR with the colour mix near 1; docs/studies/masked-shapes-20min.md.)
    """
    b = attn.shape[0]
    g = attn.shape[-1] if attn.dim() == 3 else int(round(attn.shape[-1] ** 0.5))
    a = attn.reshape(b, -1).float().cpu().contiguous()  # searchsorted wants contiguous rows
    share = object_share_on_grid(object_masks.cpu(), g).reshape(b, -1)
    obj, ground = share >= 0.5, share <= 1e-6
    # Mann-Whitney by sorting, not by all pairs (B x N x N would not fit for fine patch grids): for each
    # object patch, the background patches below it and those tied with it, found by binary search in
    # the image's sorted background values (+inf pads the other patches to the end, out of reach).
    ground_sorted = torch.where(ground, a, torch.full_like(a, float("inf"))).sort(dim=1).values
    below = torch.searchsorted(ground_sorted, a, side="left").float()
    tied = torch.searchsorted(ground_sorted, a, side="right").float() - below
    wins = ((below + 0.5 * tied) * obj).sum(1)
    count = obj.sum(1).float() * ground.sum(1).float()
    return torch.where(count > 0, wins / count.clamp_min(1), torch.full_like(count, float("nan")))


@torch.no_grad()
def mean_attention_distance(backbone, images: torch.Tensor, per_head: bool = False) -> list[float] | list[list[float]]:
    """Per layer, the attention-weighted mean pixel distance between query and key patches (heads averaged;
    ``per_head=True`` gives each layer's list of heads instead)."""
    maps = backbone.attention_maps(images)
    g, p = backbone.grid_size, backbone.patch_size
    coords = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij"), -1).reshape(-1, 2).float() * p
    dist = torch.cdist(coords, coords)  # N x N, pixels between patch centres
    out: list = []
    for attn in maps:
        a = attn.float()[:, :, 1:, 1:].cpu()
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
        per = (a * dist).sum(-1).mean(dim=(0, 2))  # H
        out.append([float(v) for v in per] if per_head else float(per.mean()))
    return out


@torch.no_grad()
def attention_visuals(backbone, images: torch.Tensor, object_masks: torch.Tensor | None = None,
                      keep_mass: float = 0.6, mean=None, std=None) -> dict[str, Any] | None:
    """The "attention" visuals payload: ``image`` (B x 3 x S x S in [0, 1]: de-normalised with the
    data's ``mean``/``std``, else min-max per image),
    ``heads`` (B x H x g x g), ``mean`` (B x g x g, heads averaged), ``mask`` (B x g x g bool, the
    ``keep_mass`` set of the mean), ``object`` (B x g x g bool, when masks are given), and the
    scalars ``iou`` (mean over images, or None), ``keep_mass``, ``grid``, ``layer``.
    None when the backbone has no attention maps."""
    if not has_attention(backbone):
        return None
    g = backbone.grid_size
    heads = cls_attention(backbone, images)  # B x H x N
    b, h, n = heads.shape
    if n != g * g:
        return None
    avg = heads.mean(1)
    mask = attention_mask(avg, keep_mass)
    shown = to_display(images.float(), mean, std)
    payload: dict[str, Any] = {
        "image": shown.cpu().numpy(),
        "heads": heads.reshape(b, h, g, g).cpu().numpy(),
        "mean": avg.reshape(b, g, g).cpu().numpy(),
        "mask": mask.reshape(b, g, g).cpu().numpy(),
        "iou": None,
        "keep_mass": keep_mass,
        "grid": int(g),
        "layer": int(backbone.depth) - 1,
    }
    if object_masks is not None:
        obj = object_masks_on_grid(object_masks.to(mask.device), g)
        payload["object"] = obj.cpu().numpy()
        iou = mask_iou(mask.reshape(b, g, g), obj)
        payload["iou"] = nanmean(iou)
    return payload


@torch.no_grad()
def attention_overlap(backbone, images: torch.Tensor, object_masks: torch.Tensor, keep_mass: float = 0.6) -> dict[str, float | None] | None:
    """How the heads-averaged [CLS] attention meets the objects, from one forward pass: ``iou``, the mean IoU
    of its ``keep_mass`` mask with them, and ``auc``, the mean :func:`object_background_auc`."""
    if not has_attention(backbone) or object_masks is None:
        return None
    g = backbone.grid_size
    mean = cls_attention(backbone, images).mean(1)
    if mean.shape[-1] != g * g:
        return None
    mask = attention_mask(mean, keep_mass).reshape(-1, g, g)
    return {"iou": nanmean(mask_iou(mask, object_masks)), "auc": nanmean(object_background_auc(mean, object_masks))}


def nanmean(values: torch.Tensor) -> float | None:
    """Mean over the finite entries (IoU is NaN where an image has neither mask); None when there are none."""
    v = values[torch.isfinite(values)]
    return float(v.mean()) if v.numel() else None


# ----------------------------------------------------------------------------- pictures (numpy; the panels and the study figure)

TILE_SCALE = 3  # 32-px probe images drawn at 96 px, nearest-neighbour (patches stay crisp)
GAP = 4
BACKGROUND = 255


def to_hwc_uint8(image: np.ndarray) -> np.ndarray:
    """``C x H x W`` (or ``H x W``) float in [0, 1] or uint8 -> ``H x W x 3`` uint8."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def upscale(tile: np.ndarray, factor: int = TILE_SCALE) -> np.ndarray:
    return tile.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else tile


def grid_to_pixels(values: np.ndarray, size: int) -> np.ndarray:
    """A ``g x g`` patch map -> ``size x size`` by repeating each patch (nearest)."""
    g = values.shape[-1]
    r = max(1, size // g)
    return np.asarray(values).repeat(r, axis=-2).repeat(r, axis=-1)


def montage(rows: Sequence[Sequence[np.ndarray]], gap: int = GAP, background: int = BACKGROUND) -> np.ndarray:
    """Tiles (``H x W x 3`` uint8, all one size) laid out row by row into one picture."""
    rows = [list(r) for r in rows if len(r)]
    if not rows:
        return np.full((1, 1, 3), background, np.uint8)
    th, tw = rows[0][0].shape[:2]
    ncols = max(len(r) for r in rows)
    out = np.full((len(rows) * (th + gap) - gap, ncols * (tw + gap) - gap, 3), background, np.uint8)
    for i, r in enumerate(rows):
        for j, tile in enumerate(r):
            y, x = i * (th + gap), j * (tw + gap)
            out[y:y + th, x:x + tw] = tile[:th, :tw]
    return out


def _lut(name: str = "inferno") -> np.ndarray:
    """A 256 x 3 uint8 colour table: 'inferno' as black -> purple -> orange -> pale yellow (piecewise linear
    through six of matplotlib's inferno stops), anything else a grey ramp."""
    x = np.linspace(0.0, 1.0, 256)
    if name == "inferno":
        stops = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        colours = np.array([(0, 0, 4), (50, 10, 94), (120, 28, 109), (188, 55, 84), (241, 120, 23), (252, 255, 164)], float)
        return np.stack([np.interp(x, stops, colours[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)
    ramp = (x * 255).round().astype(np.uint8)
    return np.stack([ramp, ramp, ramp], axis=1)


_LUTS: dict[str, np.ndarray] = {}


def heat_overlay(image_hwc: np.ndarray, heat: np.ndarray, alpha: float = 0.6, cmap: str = "inferno") -> np.ndarray:
    """The image with a ``g x g`` heat map blended over it, the map stretched to its own [min, max]
    (as DINO's figures): near-uniform attention then still shows where it leans; the numbers
    (mask size, IoU, distance) say how strongly."""
    lut = _LUTS.setdefault(cmap, _lut(cmap))
    h = np.nan_to_num(np.asarray(heat, dtype=np.float32))
    lo, hi = (float(h.min()), float(h.max())) if h.size else (0.0, 0.0)
    h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    big = grid_to_pixels(h, image_hwc.shape[0])
    colour = lut[np.clip((big * 255).astype(np.int64), 0, 255)]
    return (image_hwc * (1 - alpha) + colour * alpha).astype(np.uint8)


def dim_outside(image_hwc: np.ndarray, keep: np.ndarray, factor: float = 0.25) -> np.ndarray:
    """The image with the patches outside the ``g x g`` bool ``keep`` mask darkened."""
    big = grid_to_pixels(np.asarray(keep, bool), image_hwc.shape[0])[:, :, None]
    return np.where(big, image_hwc, (image_hwc * factor).astype(np.uint8)).astype(np.uint8)


def outline(image_hwc: np.ndarray, cells: np.ndarray, colour: tuple[int, int, int], width: int = 1) -> np.ndarray:
    """Draw the outer boundary of the ``g x g`` bool region ``cells`` (image already upscaled or not)."""
    cells = np.asarray(cells, bool)
    g = cells.shape[-1]
    out = image_hwc.copy()
    size = image_hwc.shape[0]
    r = size // g
    pad = np.pad(cells, 1)
    for i in range(g):
        for j in range(g):
            if not cells[i, j]:
                continue
            y0, x0 = i * r, j * r
            if not pad[i, j + 1]:  # neighbour above
                out[y0:y0 + width, x0:x0 + r] = colour
            if not pad[i + 2, j + 1]:
                out[y0 + r - width:y0 + r, x0:x0 + r] = colour
            if not pad[i + 1, j]:
                out[y0:y0 + r, x0:x0 + width] = colour
            if not pad[i + 1, j + 2]:
                out[y0:y0 + r, x0 + r - width:x0 + r] = colour
    return out



__all__ = ["BACKGROUND", "GAP", "TILE_SCALE", "dim_outside", "grid_to_pixels", "heat_overlay", "montage", "outline", "to_hwc_uint8",
           "upscale",
           "REGIONS", "attention_by_region", "attention_overlap", "attention_mask", "attention_visuals", "cls_attention",
           "has_attention", "mask_iou", "mean_attention_distance", "nanmean", "object_masks_on_grid", "object_share_on_grid"]
