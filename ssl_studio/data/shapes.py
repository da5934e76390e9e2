"""Procedural shapes: a labelled data set made on the spot, deterministic from the seed.

Why a synthetic set: it needs no download, it renders in about a second, and every image comes with
known attributes (shape, colour, size, position, background), a caption and an exact object mask, so
the lab can show what a representation encodes, hold colour-shape pairs out of training, and train
CLIP on captions, all offline.

It is made hard for raw pixels but learnable by a view-invariant representation: a large object at a
random position, rotation, size and colour on a textured background whose two colours are close, so
pixel distance mostly measures colour and background (raw-pixel k-NN 0.218, chance 0.10) while within
one image the object is the salient thing.  Earlier versions (small objects on loud textures, or
distractors) left SimCLR's shape k-NN at chance: docs/studies/shapes-dataset.md.

Rendering is vectorised in torch: each shape is a signed-distance function evaluated on the pixel grid
for a batch of images at once, and the signed distance in pixels gives a one-pixel soft edge (analytic
anti-aliasing, no supersampling).  12,000 images at 32x32 take about 1 s (see ``generate`` for why
chunks are small).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch

from ssl_studio.data.imageset import DataError, RawImages

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "hexagon", "ring", "diamond", "crescent")

# Bright object colours; backgrounds are kept away from the object's colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (50, 185, 60),
    "blue": (45, 85, 225),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 195),
    "orange": (245, 140, 30),
    "cyan": (40, 205, 215),
    "white": (245, 245, 245),
    "pink": (245, 125, 180),
    "brown": (140, 90, 45),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

SIZES: tuple[str, ...] = ("small", "medium", "large")
SIZE_RADIUS = (0.3, 0.36, 0.42)  # object radius as a share of the image side: the shape must survive a random crop

# 3×3 grid of named positions: (name, phrase in a caption, x share, y share).
POSITIONS: tuple[tuple[str, str, float, float], ...] = (
    ("top left", "at the top left", 0.35, 0.35),
    ("top", "at the top", 0.5, 0.35),
    ("top right", "at the top right", 0.65, 0.35),
    ("left", "on the left", 0.35, 0.5),
    ("centre", "in the centre", 0.5, 0.5),
    ("right", "on the right", 0.65, 0.5),
    ("bottom left", "at the bottom left", 0.35, 0.65),
    ("bottom", "at the bottom", 0.5, 0.65),
    ("bottom right", "at the bottom right", 0.65, 0.65),
)

BACKGROUNDS: tuple[str, ...] = ("plain", "striped", "checkered", "noisy", "gradient", "dotted")

# Caption phrasings, one drawn per image (seeded): every one names all five attributes, in a
# different order and syntax, so that a text encoder has to read the words, not their slots.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {phrase} on a {background} background",
    "a {colour} {shape}, {size}, {position}, on a {background} background",
    "a {background} background with a {size} {colour} {shape} {phrase}",
    "a picture of a {size} {colour} {shape} {phrase}, {background} background",
    "a {size} {shape} in {colour} {phrase} against a {background} background",
)

# The augmentation this data set needs, used wherever the user kept the lab's default (an
# objective's own paper settings still win, e.g. MAE's 0.2).  The object covers 30-55 % of the
# frame, so a crop of 20 % of the area usually cuts it apart and the views share only colour and
# texture; SimCLR's 3-minute shape k-NN@20 rises from 0.247 at 0.2 to 0.510 at 0.85
# (docs/studies/shapes-dataset.md).
AUGMENT_DEFAULTS: dict[str, float] = {"crop_scale_min": 0.85}

NOISE_STD = 5.0  # grey levels of per-pixel sensor noise over everything
TEXTURE_CONTRAST = 70.0  # spread, in grey levels per channel, between a background's two colours
# ``fixed_background``: every background in these two greys (a plain one is the first), so that it carries no
# identity of its image.  Mid-grey keeps every palette colour visible on it.
FIXED_BACKGROUND_RGB = ((128.0, 128.0, 128.0), (58.0, 58.0, 58.0))


# ---------------------------------------------------------------------------
# Signed-distance functions in "unit" coordinates: the shape fits a circle of
# radius about 1 centred on the origin; negative inside.  Formulas follow
# Inigo Quilez's 2-D distance functions (iquilezles.org/articles/distfunctions2d).
# ---------------------------------------------------------------------------

def _length(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # d·rsqrt(d), not sqrt(d): torch.sqrt goes to MKL VML, which parallelises
    # from 2k values and spin-waits on a busy machine (see generate); the 1e-12
    # keeps rsqrt finite at d = 0 and moves distances by at most 1e-6.
    d = x * x
    d.addcmul_(y, y).add_(1e-12)
    return d.mul_(torch.rsqrt(d))


def _wave(u: torch.Tensor) -> torch.Tensor:
    """A triangle wave in [-1, 1] with period 1 (u > 0), in place; stands in for sin (VML, see _length)."""
    return u.frac_().mul_(2).sub_(1).abs_().mul_(2).sub_(1)


def _box(x: torch.Tensor, y: torch.Tensor, bx: float, by: float) -> torch.Tensor:
    dx = x.abs() - bx
    dy = y.abs() - by
    outside = _length(dx.clamp_min(0), dy.clamp_min(0))
    inside = torch.maximum(dx, dy).clamp_max(0)
    return outside + inside


def _sd_circle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _length(x, y) - 0.85


def _sd_square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _box(x, y, 0.72, 0.72)


def _sd_triangle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r = 0.9
    k = math.sqrt(3.0)
    y = -y  # image y points down; make the triangle point up at rotation 0
    px = x.abs() - r
    py = y + r / k
    flip = (px + k * py) > 0
    qx = torch.where(flip, (px - k * py) / 2, px)
    qy = torch.where(flip, (-k * px - py) / 2, py)
    qx = qx - qx.clamp(-2 * r, 0)
    return -_length(qx, qy) * torch.sign(qy)


def _sd_hexagon(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r = 0.8
    kx, ky, kz = -0.866025404, 0.5, 0.577350269
    px, py = x.abs(), y.abs()
    d = 2 * (kx * px + ky * py).clamp_max(0)
    px = px - d * kx
    py = py - d * ky
    px = px - px.clamp(-kz * r, kz * r)
    py = py - r
    return _length(px, py) * torch.sign(py)


def _sd_star(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r, rf = 1.0, 0.45
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    px, py = x.abs(), -y
    d = 2 * (k1x * px + k1y * py).clamp_min(0)
    px, py = px - d * k1x, py - d * k1y
    d = 2 * (k2x * px + k2y * py).clamp_min(0)
    px, py = px - d * k2x, py - d * k2y
    px = px.abs()
    py = py - r
    bax, bay = rf * -k1y, rf * k1x - 1.0
    h = ((px * bax + py * bay) / (bax * bax + bay * bay)).clamp(0, r)
    return _length(px - bax * h, py - bay * h) * torch.sign(py * bax - px * bay)


def _sd_cross(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95))


def _sd_heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s = 0.62
    px = (x * s).abs()
    py = -y * s + 0.55
    upper = (py + px) > 1.0
    d_upper = _length(px - 0.25, py - 0.75) - math.sqrt(2.0) / 4
    t = 0.5 * (px + py).clamp_min(0)
    d_lower = torch.minimum(_length(px, py - 1.0), _length(px - t, py - t)) * torch.sign(px - py)
    return torch.where(upper, d_upper, d_lower) / s


def _sd_ring(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (_length(x, y) - 0.68).abs() - 0.24


def _sd_diamond(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    bx, by = 0.62, 1.0
    px, py = x.abs(), y.abs()
    h = (((bx - 2 * px) * bx - (by - 2 * py) * by) / (bx * bx + by * by)).clamp(-1, 1)
    d = _length(px - 0.5 * bx * (1 - h), py - 0.5 * by * (1 + h))
    return d * torch.sign(px * by + py * bx - bx * by)


def _sd_crescent(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.maximum(_length(x, y) - 0.9, -(_length(x - 0.5, y + 0.1) - 0.72))


SDF: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "circle": _sd_circle,
    "square": _sd_square,
    "triangle": _sd_triangle,
    "star": _sd_star,
    "cross": _sd_cross,
    "heart": _sd_heart,
    "hexagon": _sd_hexagon,
    "ring": _sd_ring,
    "diamond": _sd_diamond,
    "crescent": _sd_crescent,
}
assert tuple(SDF) == SHAPES


def parse_held_out(names: Sequence[str]) -> set[tuple[int, int]]:
    """(colour index, shape index) pairs from names like "red-triangle"."""
    pairs: set[tuple[int, int]] = set()
    for name in names:
        text = str(name).strip().lower()
        colour, sep, shape = text.partition("-")
        if not sep or not colour or not shape:
            raise DataError("data.held_out", f"entry {name!r} is not a colour-shape pair; write it like red-triangle.")
        if colour not in PALETTE:
            raise DataError(
                "data.held_out",
                f"entry {name!r} names the unknown colour {colour!r}; colours are {', '.join(COLOURS)}.",
            )
        if shape not in SDF:
            raise DataError(
                "data.held_out",
                f"entry {name!r} names the unknown shape {shape!r}; shapes are {', '.join(SHAPES)}.",
            )
        pairs.add((COLOURS.index(colour), SHAPES.index(shape)))
    return pairs


def parse_backgrounds(names: Sequence[str]) -> list[int]:
    """Indices into BACKGROUNDS of the named textures, in BACKGROUNDS' order; empty means all of them."""
    chosen = set()
    for name in names:
        key = str(name).strip().lower()
        if key not in BACKGROUNDS:
            raise DataError("data.backgrounds", f"entry {name!r} is not a background; choose from {', '.join(BACKGROUNDS)}.")
        chosen.add(BACKGROUNDS.index(key))
    return sorted(chosen) if chosen else list(range(len(BACKGROUNDS)))


def held_out_mask(attributes: dict[str, list], names: Sequence[str]) -> torch.Tensor:
    """True for the images whose colour-shape pair is held out of training."""
    pairs = {(COLOURS[c], SHAPES[s]) for c, s in parse_held_out(names)}
    return torch.tensor([(c, s) in pairs for c, s in zip(attributes["colour"], attributes["shape"])], dtype=torch.bool)


def _runs(values: torch.Tensor) -> list[tuple[int, int, int]]:
    """(value, start, stop) for each run of equal consecutive values.

    Rows are rendered sorted by (class, background), so a chunk's images of one
    kind are a contiguous slice: slicing is a view, where boolean indexing
    would copy and run PyTorch's parallel index kernels.
    """
    out: list[tuple[int, int, int]] = []
    vals = values.tolist()
    start = 0
    for i in range(1, len(vals) + 1):
        if i == len(vals) or vals[i] != vals[start]:
            out.append((vals[start], start, i))
            start = i
    return out


def _upsampler(res: int, low: int) -> torch.Tensor:
    """R×low bilinear interpolation weights (rows sum to 1), for smooth blotches."""
    pos = ((torch.arange(res, dtype=torch.float32) + 0.5) / res * low - 0.5).clamp(0, low - 1)
    lo = pos.floor().long().clamp(max=low - 2)
    frac = pos - lo
    w = torch.zeros(res, low)
    w[torch.arange(res), lo] = 1 - frac
    w[torch.arange(res), lo + 1] = frac
    return w


BLOTCH = 6  # side of the random grid a "noisy" background's blotches are interpolated from


def _background(q: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, res: int, g: torch.Generator, up: torch.Tensor) -> torch.Tensor:
    """Mixing weight t in [0, 1] between a background's two colours, M×R×R.

    Coordinates arrive as 1×1×R and 1×R×1 so that per-image products stay small
    until the one operation that needs the full grid.
    """
    kind = q["background"]
    m = kind.shape[0]
    t = torch.zeros(m, res, res)
    for k, a, b in _runs(kind):
        ca, sa, period = q["bg_cos"][a:b], q["bg_sin"][a:b], q["bg_period"][a:b]
        phase, phase2 = q["bg_phase"][a:b], q["bg_phase2"][a:b]
        if k == 1:  # striped
            u = xs * (ca / period) + (ys * (sa / period) + phase)
            t[a:b] = _wave(u).mul_(1.5).add_(0.5).clamp_(0, 1)
        elif k == 2:  # checkered
            w = 0.5 / period
            u = xs * (ca * w) + (ys * (sa * w) + phase)
            v = xs * (-sa * w) + (ys * (ca * w) + phase2)
            t[a:b] = _wave(u).mul_(_wave(v)).mul_(3.0).add_(0.5).clamp_(0, 1)
        elif k == 3:  # noisy: smooth blotches plus grain
            # bilinear upsampling of a BLOTCH×BLOTCH grid, separably, as broadcast
            # products: a matmul here would start MKL's threads (see generate)
            low = torch.rand(b - a, BLOTCH, 1, BLOTCH, generator=g)
            rows = torch.zeros(b - a, res, BLOTCH)  # small: M×R×BLOTCH
            for i in range(BLOTCH):
                rows.addcmul_(low[:, i], up[:, i].view(1, res, 1))
            blot = torch.zeros(b - a, res, res)
            for j in range(BLOTCH):
                blot.addcmul_(rows[:, :, j : j + 1], up[:, j].view(1, 1, res))
            t[a:b] = torch.rand(b - a, res, res, generator=g).mul_(0.35).add_(blot, alpha=0.65).clamp_(0, 1)
        elif k == 4:  # gradient
            s = q["bg_slope"][a:b] / res
            c2, s2 = ca * ca - sa * sa, 2 * sa * ca  # direction 2·angle: all of 0..2π
            t[a:b] = ((xs - res / 2) * (c2 * s) + ((ys - res / 2) * (s2 * s) + 0.5)).clamp_(0, 1)
        elif k == 5:  # dotted
            p = period * 1.3
            u = (xs * (ca / p) + (ys * (sa / p) + phase)).frac_().sub_(0.5)
            v = (xs * (-sa / p) + (ys * (ca / p) + phase2)).frac_().sub_(0.5)
            t[a:b] = _length(u, v).mul_(p).sub_(0.3 * p).neg_().add_(0.5).clamp_(0, 1)
        # 0, plain: t stays 0
    return t


def _paint(img: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor) -> None:
    """Paint ``colour`` (M×3) over ``img`` (M×3×R×R) with coverage ``alpha`` (M×R×R), in place.

    One channel at a time, so that every operation stays under PyTorch's
    parallel grain and runs in the calling thread (see ``generate``).
    """
    m = img.shape[0]
    for ch in range(3):
        img[:, ch].lerp_(colour[:, ch].view(m, 1, 1).expand_as(alpha), alpha)


def _render_chunk(q: dict[str, torch.Tensor], res: int, g: torch.Generator, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one chunk: ``q`` holds each parameter's slice for these images.

    Each chunk has its own generator (seeded by seed and chunk number), so the
    result does not depend on which thread renders which chunk.
    """
    m = q["label"].shape[0]
    coords = torch.arange(res, dtype=torch.float32) + 0.5
    xs = coords.view(1, 1, res)
    ys = coords.view(1, res, 1)

    t = _background(q, xs, ys, res, g, up)
    bg = q["bg_rgb"]
    img = torch.empty(m, 3, res, res)
    for ch in range(3):
        c1 = bg[:, 0, ch].view(m, 1, 1)
        img[:, ch] = torch.addcmul(c1, t, bg[:, 1, ch].view(m, 1, 1) - c1)

    # The object: unit coordinates (rotated, scaled by the radius), then its class's SDF.
    r = q["radius"].view(m, 1, 1)
    cos_r = q["rot_cos"].view(m, 1, 1) / r
    sin_r = q["rot_sin"].view(m, 1, 1) / r
    dx = xs - q["centre"][:, 0].view(m, 1, 1)
    dy = ys - q["centre"][:, 1].view(m, 1, 1)
    u = dx * cos_r + dy * sin_r
    v = dy * cos_r - dx * sin_r
    dist = torch.empty(m, res, res)
    for ci, a, b in _runs(q["label"]):
        dist[a:b] = SDF[SHAPES[ci]](u[a:b], v[a:b]).mul_(r[a:b])
    alpha = dist.neg_().add_(0.5).clamp_(0, 1)
    _paint(img, q["obj_rgb"], alpha)
    # Grey sensor noise, uniform with std NOISE_STD (one plane for all channels:
    # a third of the random numbers); +0.5 so that the uint8 cast rounds.
    a = NOISE_STD * math.sqrt(3.0)
    noise = torch.rand(m, res, res, generator=g).mul_(2 * a).add_(0.5 - a)
    out = torch.empty(m, 3, res, res, dtype=torch.uint8)
    for ch in range(3):
        out[:, ch] = img[:, ch].add_(noise).clamp_(0, 255)
    return out, alpha >= 0.5


def _draw_params(n: int, res: int, seed: int, backgrounds: Sequence[int] | None = None, fixed_background: bool = False
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every per-image attribute and drawing parameter, drawn up front from one generator.

    ``backgrounds`` (indices into BACKGROUNDS) restricts the textures; all six, the default,
    draw exactly the numbers they always did, so the default data set never changes.
    ``fixed_background`` replaces the drawn background colours after every number is drawn, so
    the objects stay exactly those of the same seed with random backgrounds.
    """
    allowed = torch.tensor(list(backgrounds) if backgrounds else range(len(BACKGROUNDS)))
    g = torch.Generator()
    g.manual_seed(int(seed) * 7919 + 1)
    # Classes are balanced (a shuffled round-robin) so that accuracy numbers are
    # comparable across seeds; the other attributes are drawn independently.
    label = torch.arange(n) % len(SHAPES)
    label = label[torch.randperm(n, generator=g)]
    colour = torch.randint(len(COLOURS), (n,), generator=g)
    size = torch.randint(len(SIZES), (n,), generator=g)
    position = torch.randint(len(POSITIONS), (n,), generator=g)
    background = allowed[torch.randint(len(allowed), (n,), generator=g)]
    obj_rgb = torch.tensor([PALETTE[c] for c in COLOURS], dtype=torch.float32)[colour]
    obj_rgb = (obj_rgb + (torch.rand(n, 3, generator=g) - 0.5) * 24).clamp(0, 255)
    # The texture's two colours are close: the background varies a lot between images (raw pixels
    # stay a poor feature) but stays quieter than the object within one, so the shape is the salient
    # thing a view-invariant representation can latch onto (with strong contrast, instance
    # discrimination is solved by the background texture alone and shape k-NN stays at chance).
    base_rgb = torch.rand(n, 1, 3, generator=g) * 195 + 30
    # Keep the background visibly away from the object's colour (both texture colours move together).
    close = (base_rgb - obj_rgb[:, None, :]).norm(dim=-1, keepdim=True) < 110
    base_rgb = torch.where(close, torch.remainder(base_rgb + 128, 256).clamp(30, 225), base_rgb)
    bg_rgb = (base_rgb + (torch.rand(n, 2, 3, generator=g) - 0.5) * TEXTURE_CONTRAST).clamp(0, 255)
    if fixed_background:
        bg_rgb = torch.tensor(FIXED_BACKGROUND_RGB).expand(n, 2, 3).clone()
    rotation = torch.rand(n, generator=g) * 2 * math.pi
    bg_angle = torch.rand(n, 1, 1, generator=g) * math.pi
    attrs = {"colour": colour, "size": size, "position": position}
    params = {
        "label": label,
        "background": background,
        "rot_cos": torch.cos(rotation),
        "rot_sin": torch.sin(rotation),
        "radius": torch.tensor(SIZE_RADIUS)[size] * (0.92 + 0.16 * torch.rand(n, generator=g)) * res,
        "centre": (torch.tensor([[q[2], q[3]] for q in POSITIONS])[position] + (torch.rand(n, 2, generator=g) - 0.5) * 0.07) * res,
        "obj_rgb": obj_rgb,
        "bg_rgb": bg_rgb,
        "bg_cos": torch.cos(bg_angle),
        "bg_sin": torch.sin(bg_angle),
        "bg_period": (3.0 + torch.rand(n, 1, 1, generator=g) * 5.0) * (res / 32.0),
        # phases in periods; the offset keeps wave arguments positive for frac()
        "bg_phase": torch.rand(n, 1, 1, generator=g) + 1000.0,
        "bg_phase2": torch.rand(n, 1, 1, generator=g) + 1000.0,
        "bg_slope": 0.8 + torch.rand(n, 1, 1, generator=g) * 0.8,
    }
    return attrs, params


def generate(
    num_images: int,
    resolution: int = 32,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    backgrounds: Sequence[str] = (),
    fixed_background: bool = False,
) -> RawImages:
    """Render ``num_images`` shapes at ``resolution``; the same arguments give identical tensors.

    ``backgrounds`` names the textures to draw from (empty: all of BACKGROUNDS).  Fewer textures
    take the background out as a nuisance: with plain ones only, the object is the one
    structure in the image (see the masked study's notes on DINO's attention).  ``fixed_background``
    draws every background in the same greys (``FIXED_BACKGROUND_RGB``): with plain ones only, the
    object is the one thing that tells an image from another (there, DINO's attention finds it;
    with random backgrounds it settles on them: docs/studies/masked-shapes-20min.md, stop 20).
    """
    n, res = int(num_images), int(resolution)
    attrs, params = _draw_params(n, res, seed, parse_backgrounds(backgrounds), fixed_background)
    label, background = params["label"], params["background"]
    colour, size, position = attrs["colour"], attrs["size"], attrs["position"]

    # Render in order of (class, background), so that a chunk is mostly one
    # shape and one background, handled as slices (see _runs).  Parameters are
    # permuted into that order once, rendered into sorted buffers, and the
    # result permuted back once at the end.
    order = torch.argsort(label * len(BACKGROUNDS) + background, stable=True)
    sorted_params = {k: v[order].contiguous() for k, v in params.items()}
    images_sorted = torch.empty((n, 3, res, res), dtype=torch.uint8)
    masks_sorted = torch.empty((n, res, res), dtype=torch.bool)
    up = _upsampler(res, BLOTCH)
    # Every op on a chunk stays below PyTorch's parallel grain (32,768 values)
    # and avoids the MKL-VML functions (sqrt, sin), which parallelise from 2,048
    # values: each op then runs serially in its thread, in cache, and a thread
    # pool spreads chunks over the cores.  Nested OpenMP teams spin-wait, which
    # on a busy machine made rendering ten times slower.  Above 181 px one
    # image exceeds the grain, PyTorch parallelises, and one thread is used.
    chunk = max(1, 32767 // (res * res))
    starts = list(range(0, n, chunk))
    workers = max(1, min(len(starts), os.cpu_count() or 1)) if res * res <= 32767 else 1

    def work(j: int) -> int:
        a, b = starts[j], min(n, starts[j] + chunk)
        g = torch.Generator()
        g.manual_seed(int(seed) * 1_000_003 + j * 7 + 5)
        im, mk = _render_chunk({k: v[a:b] for k, v in sorted_params.items()}, res, g, up)
        images_sorted[a:b] = im
        masks_sorted[a:b] = mk
        return b - a

    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for count in pool.map(work, range(len(starts))):
            done += count
            if progress is not None and (done == n or done % (chunk * 16) < chunk):
                progress(done, n)
    images = torch.empty_like(images_sorted)
    images[order] = images_sorted
    masks = torch.empty_like(masks_sorted)
    masks[order] = masks_sorted

    colour_names = [COLOURS[i] for i in colour.tolist()]
    shape_names = [SHAPES[i] for i in label.tolist()]
    size_names = [SIZES[i] for i in size.tolist()]
    position_names = [POSITIONS[i][0] for i in position.tolist()]
    background_names = [BACKGROUNDS[i] for i in background.tolist()]
    phrases = [POSITIONS[i][1] for i in position.tolist()]
    # One phrasing per image, drawn from its own generator so that the images do not change.
    g_caption = torch.Generator()
    g_caption.manual_seed(int(seed) * 7919 + 3)
    template = torch.randint(len(CAPTION_TEMPLATES), (n,), generator=g_caption).tolist()
    captions = [
        CAPTION_TEMPLATES[t].format(size=sz, colour=co, shape=sh, phrase=ph, position=po, background=bg)
        for t, sz, co, sh, ph, po, bg in zip(template, size_names, colour_names, shape_names, phrases, position_names,
                                             background_names)
    ]
    return RawImages(
        name="shapes",
        images=images,
        labels=label.to(torch.int64),
        class_names=list(SHAPES),
        captions=captions,
        masks=masks,
        attributes={
            "colour": colour_names,
            "shape": shape_names,
            "size": size_names,
            "position": position_names,
            "background": background_names,
        },
    )


__all__ = ["BACKGROUNDS", "COLOURS", "PALETTE", "POSITIONS", "SHAPES", "SIZES", "generate", "held_out_mask", "parse_backgrounds",
           "parse_held_out"]
