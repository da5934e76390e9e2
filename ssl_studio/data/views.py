"""Batched, vectorised augmentation on the device: one independent random draw per sample.

Every objective sees each image two or more times per step through different random
augmentations, so augmentation is on the hot path.  Here every transform is a few tensor
operations over the whole batch, the per-sample randomness held in ``B``-long parameter
tensors: no Python loop over samples, no PIL (39x the views/s of torchvision.transforms.v2 per sample on a
CPU; ``ssl-studio bench``).

One view follows SimCLR (Chen et al. 2020, appendix A, B.9) and BYOL (Grill et al. 2020, table 6)
with torchvision's semantics: random resized crop + flip (one bilinear ``grid_sample``), an
optional random orthogonal colour map (:func:`colour_mix`, off by default), colour jitter
(per-sample factors in a per-sample random order, clamped after each step), grayscale, Gaussian
blur, solarisation, normalisation.

Why it is fast: all but the crop, blur and solarisation are per-sample 3x3 colour matrices plus a
bias; they are composed lazily into one pending map and applied in one batched ``bmm`` only where a
clamp or non-linearity forces it.  Crop and blur commute with that map (non-negative weights summing
to one), so the deferral is exact.  On CPU the pixel buffers are kept between calls.

Deliberate differences from torchvision: hue is a rotation of the chroma plane in YIQ (keeps luma,
where HSV keeps value: saturated primaries come out darker); crops are resampled without
antialiasing (matters only for local crops cut from large images); the crop grid is built directly
rather than with ``F.affine_grid`` (identical values, ~10x cheaper on CPU; see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_studio.config import AugmentConfig

# ITU-R 601 luma weights exactly as torchvision's rgb_to_grayscale uses them.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# RGB -> YIQ (FCC NTSC).  Hue rotation acts on the (I, Q) plane.
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.5959, -0.2746, -0.3213),
    (0.2115, -0.5227, 0.3112),
)

# torchvision's RandomResizedCrop tries this many (scale, ratio) draws before
# falling back to a centre crop.
CROP_ATTEMPTS = 10

# Columns of the one uniform draw a view consumes: every random number of a view
# comes from a single ``torch.rand`` call so a seed reproduces it exactly.
_U_SCALE = slice(0, CROP_ATTEMPTS)
_U_RATIO = slice(CROP_ATTEMPTS, 2 * CROP_ATTEMPTS)
_U_TOP = 2 * CROP_ATTEMPTS
_U_LEFT = _U_TOP + 1
_U_FLIP = _U_LEFT + 1
_U_JITTER = _U_FLIP + 1
_U_FACTORS = slice(_U_JITTER + 1, _U_JITTER + 5)  # brightness, contrast, saturation, hue
_U_ORDER = slice(_U_JITTER + 5, _U_JITTER + 9)
_U_GRAY = _U_JITTER + 9
_U_BLUR = _U_GRAY + 1
_U_SIGMA = _U_BLUR + 1
_U_SOLARIZE = _U_SIGMA + 1
_N_UNIFORMS = _U_SOLARIZE + 1
# The colour mix draws its own uniforms (apply flag, three for the rotation, reflection flag),
# only when it is on, so switching it on leaves every other random number of a seed as it was.
_N_MIX_UNIFORMS = 5


@dataclass(frozen=True)
class ViewSpec:
    """What one view is: its size, crop area range and the per-view probabilities.

    Global views and local (multi-crop) views differ only in these numbers.
    """

    size: int
    scale: tuple[float, float]
    blur_p: float
    solarize_p: float


# Supplies a kept float32 scratch tensor of a given name and shape (see ViewMaker._buffer).
Buffers = Callable[[str, tuple[int, ...]], torch.Tensor]



def _accelerated(x: torch.Tensor) -> bool:
    """Whether ``x`` lives on an accelerator, where masks beat gathers and grouped convs are fast.

    CPU and accelerators take different, numerically equivalent paths in a few places
    (blur, solarisation, buffers); the tests flip this to check both on CPU.
    """
    return x.device.type != "cpu"


# --------------------------------------------------------------------------- random draws


def _uniforms(n: int, batch: int, device: torch.device, generator: torch.Generator | None,
              columns: int = _N_UNIFORMS) -> torch.Tensor:
    """``n × batch × columns`` uniforms on ``device``, drawn on the generator's device.

    Drawing on the generator's own device lets a CPU generator drive CUDA images
    (the numbers are then identical across devices), and a CUDA generator drive them
    without a transfer.
    """
    if generator is None:
        return torch.rand(n, batch, columns, device=device)
    u = torch.rand(n, batch, columns, device=generator.device, generator=generator)
    return u.to(device, non_blocking=True)


# --------------------------------------------------------------------------- crop + flip


def crop_boxes(
    u: torch.Tensor, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> torch.Tensor:
    """Per-sample crop boxes ``(top, left, h, w)`` in pixels, drawn like torchvision.

    ``RandomResizedCrop.get_params`` draws an area share uniformly in ``scale`` and a
    log-uniform aspect ratio, rounds to whole pixels, retries up to 10 times until the
    box fits, and otherwise falls back to the largest centre crop within ``ratio``.
    Here the 10 attempts are drawn at once and the first that fits is taken.
    """
    area = float(height * width)
    s = scale[0] + (scale[1] - scale[0]) * u[:, _U_SCALE]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, _U_RATIO])
    target = area * s
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting attempt
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    found = fits.any(dim=1)

    # torchvision's fallback: centre crop, the whole image clipped to the ratio range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))

    # torch.randint(0, H - h + 1) per sample, as a floor of a uniform.
    top = torch.floor(u[:, _U_TOP] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, _U_LEFT] * (width - w + 1)).clamp_(max=width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack((top, left, h, w), dim=1)


def crop_theta(boxes: torch.Tensor, height: int, width: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """The ``B×2×3`` affine matrices (``F.affine_grid`` convention) that map a view onto its box.

    With ``align_corners=False`` this reproduces a half-pixel-centre bilinear resize
    of the box exactly; a flip negates the x scale, mirroring within the box.
    """
    top, left, h, w = boxes.unbind(1)
    sx = w / width
    sy = h / height
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    cx = (2 * left + w) / width - 1
    cy = (2 * top + h) / height - 1
    theta = torch.zeros(boxes.shape[0], 2, 3, device=boxes.device, dtype=torch.float32)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    return theta


def crop_grid(theta: torch.Tensor, size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, size, size), align_corners=False)`` for axis-aligned ``theta``.

    Crops never rotate or shear, so x depends only on the output column and y only on
    the row; building the grid as two outer sums avoids affine_grid's per-pixel matrix
    product (about 10× cheaper on CPU, identical values).
    """
    b = theta.shape[0]
    base = (torch.arange(size, device=theta.device, dtype=torch.float32) * 2 + 1) / size - 1
    grid = torch.empty(b, size, size, 2, device=theta.device, dtype=torch.float32) if out is None else out
    grid[..., 0] = (theta[:, 0, 0, None] * base + theta[:, 0, 2, None])[:, None, :]
    grid[..., 1] = (theta[:, 1, 1, None] * base + theta[:, 1, 2, None])[:, :, None]
    return grid


def resized_crop(
    images: torch.Tensor,
    theta: torch.Tensor,
    size: int,
    grid_out: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample every image's box at ``size × size``: one bilinear grid_sample for the batch.

    Border padding reproduces torchvision's resize at the crop's edges (source
    coordinates are clamped to the image); ``grid_out``/``out`` let the caller reuse
    buffers between steps.
    """
    grid = crop_grid(theta, size, grid_out)
    if out is None or _accelerated(images):
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # F.grid_sample has no out=; the aten op does (modes: 0 = bilinear, 1 = border).
    return torch.ops.aten.grid_sampler_2d.out(images, grid, 0, 1, False, out=out)


# --------------------------------------------------------------------------- colour maps


class _Colour:
    """Constant colour matrices on one device, built once per ViewMaker and device."""

    def __init__(self, device: torch.device):
        f64 = torch.float64
        w = torch.tensor(GRAY_WEIGHTS, dtype=f64)
        self.eye = torch.eye(3, dtype=torch.float32, device=device)
        self.gray = torch.ones(3, 1, dtype=f64).mul(w).to(torch.float32).to(device)  # every row = weights
        self.weights = w.to(torch.float32).to(device)
        yiq = torch.tensor(_RGB_TO_YIQ, dtype=f64)
        inv = torch.linalg.inv(yiq)
        # Hue rotation by θ in the (I, Q) plane, R(θ) = [[1, 0, 0], [0, cos, sin], [0, -sin, cos]]
        # (clockwise: red -> green -> blue runs that way in YIQ), split by cos and sin terms.
        r0 = torch.zeros(3, 3, dtype=f64)
        r0[0, 0] = 1
        r1 = torch.zeros(3, 3, dtype=f64)
        r1[1, 1] = r1[2, 2] = 1
        r2 = torch.zeros(3, 3, dtype=f64)
        r2[1, 2], r2[2, 1] = 1, -1
        self.hue_a0, self.hue_a1, self.hue_a2 = ((inv @ r @ yiq).to(torch.float32).to(device) for r in (r0, r1, r2))


def hue_matrices(hue: torch.Tensor, c: _Colour) -> torch.Tensor:
    """Per-sample ``B×3×3`` RGB maps rotating hue by ``hue`` turns (of the colour wheel).

    Positive ``hue`` moves red towards green and green towards blue, the direction of
    an HSV hue increase (torchvision's ``adjust_hue``); luma (Y) is unchanged.  The
    rotation ``T⁻¹ R(θ) T`` is expanded as ``A₀ + cos θ·A₁ + sin θ·A₂`` with constant
    ``A``s, so a batch of matrices costs three small tensor operations.
    """
    angle = hue * (2 * math.pi)
    cos = torch.cos(angle)[:, None, None]
    sin = torch.sin(angle)[:, None, None]
    return torch.addcmul(torch.addcmul(c.hue_a0, cos, c.hue_a1), sin, c.hue_a2)


def random_rotations(u: torch.Tensor) -> torch.Tensor:
    """``B×3×3`` rotations, uniform (Haar) on SO(3), from ``B×3`` uniforms.

    Shoemake's subgroup algorithm (Graphics Gems III, 1992): a unit quaternion from three
    uniforms is uniform on the 3-sphere, and its rotation matrix uniform on SO(3).
    """
    u1, u2, u3 = u.unbind(-1)
    a, b = torch.sqrt(1 - u1), torch.sqrt(u1)
    t2, t3 = 2 * math.pi * u2, 2 * math.pi * u3
    x, y, z, w = a * torch.sin(t2), a * torch.cos(t2), b * torch.sin(t3), b * torch.cos(t3)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


# The colour mix shrinks colours towards mid-grey by this factor so that a turned cube stays
# inside [0, 1]^3 (its half-diagonal is sqrt(3)/2): no colour is clipped, none merges with another.
COLOUR_MIX_CONTRAST = 1 / math.sqrt(3)


def colour_mix(um: torch.Tensor, p: float, c: _Colour) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample affine maps ``x -> k·Q (x - ½) + ½`` with ``Q`` random orthogonal, applied with probability ``p``.

    ``Q`` is a uniform rotation of the RGB cube about its grey centre, and a reflection through
    the centre (the colour negative) half of the time, so every colour *and* the luma order of
    two colours can change between views; distances between colours shrink by the one factor
    ``k`` (:data:`COLOUR_MIX_CONTRAST`), so the edges and the shapes they outline stay.  It is
    RandConv's random 1x1 convolution (Xu et al. 2021, "Robust and Generalizable Visual
    Representation Learning via Random Convolutions"), which pushes a network towards shape,
    restricted to orthogonal maps so that no two colours of an image collapse into one.
    It composes into the pending colour matrix, so it adds no pass over the pixels (4 % fewer views/s;
    docs/studies/cpu-speed.md).  On shapes it lifts SimCLR's shape k-NN and makes DINO collapse (the
    ``simclr-colour-mix`` preset; docs/studies/masked-shapes-20min.md, stop 18).

    ``um``: ``B×5`` uniforms (apply flag, three for the rotation, reflection flag).
    Returns ``B×3×3`` matrices and ``B×3`` offsets (the identity where the sample is not mixed).
    """
    q = random_rotations(um[:, 1:4])
    q = q * torch.where(um[:, 4] < 0.5, -1.0, 1.0)[:, None, None]
    m = torch.where((um[:, 0] < p)[:, None, None], q * COLOUR_MIX_CONTRAST, c.eye)
    offset = 0.5 * (1 - m.sum(-1))  # ½ - m·(½, ½, ½)
    return m, offset


class _Pending:
    """A per-sample affine colour map ``x -> M x + q`` not yet applied to the pixels.

    Linear colour steps compose into it for free (3×3 products on ``B`` matrices);
    :meth:`apply` runs it over the pixels in one matrix pass.  ``q`` is ``None``
    while the map has no offset, which saves the bias pass in most jitter steps.
    """

    def __init__(self, batch: int, scale: float, c: _Colour, spare: torch.Tensor | None = None):
        self.batch = batch
        self.c = c
        self.m = (c.eye * scale).expand(batch, 3, 3)
        self.q: torch.Tensor | None = None
        self.identity = scale == 1.0
        self.spare = spare  # a free pixel buffer to write the next pass into

    def then(self, m: torch.Tensor, q: torch.Tensor | None = None) -> None:
        """Compose ``x -> m x + q`` after the pending map."""
        self.m = m @ self.m
        if self.q is not None:
            self.q = (m @ self.q.unsqueeze(-1)).squeeze(-1)
            if q is not None:
                self.q = self.q + q
        elif q is not None:
            self.q = q.expand(self.batch, 3)
        self.identity = False

    def mean_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample mean colour of the image the map would produce, without producing it."""
        mean = (self.m @ x.mean(dim=(2, 3)).unsqueeze(-1)).squeeze(-1)
        return mean if self.q is None else mean + self.q

    def apply(self, x: torch.Tensor, clamp: bool, fresh: bool = False) -> torch.Tensor:
        """Apply the map to ``x`` (B×3×H×W, consumed), optionally clamp to [0, 1], reset to identity.

        Passes ping-pong between ``x`` and one spare buffer so that a chain of jitter
        steps allocates once; ``fresh`` asks for a new tensor (the view handed out).
        """
        if not self.identity:
            b, _, h, w = x.shape
            out = self.spare
            if fresh or out is None or out.shape != x.shape:
                out = torch.empty_like(x, memory_format=torch.contiguous_format)
            torch.bmm(self.m.contiguous(), x.reshape(b, 3, h * w), out=out.view(b, 3, h * w))
            if self.q is not None:
                out.add_(self.q[:, :, None, None])
            self.spare = None if fresh else x
            x = out
        if clamp:
            x = x.clamp_(0.0, 1.0)
        self.m = self.c.eye.expand(self.batch, 3, 3)
        self.q = None
        self.identity = True
        return x


def _jitter_ranges(cfg: AugmentConfig) -> list[tuple[int, float, float]]:
    """(op index, low, high) of every active jitter op, in torchvision's ranges.

    ``ColorJitter(b, c, s, h)`` draws brightness, contrast and saturation factors from
    ``[max(0, 1 - v), 1 + v]`` and hue from ``[-h, h]``; a strength of 0 switches the
    op off (torchvision stores ``None`` and skips it).
    """
    ops = []
    for k, v in enumerate((cfg.brightness, cfg.contrast, cfg.saturation)):
        if v > 0:
            ops.append((k, max(0.0, 1.0 - v), 1.0 + v))
    if cfg.hue > 0:
        ops.append((3, -cfg.hue, cfg.hue))
    return ops


def colour_jitter(x: torch.Tensor, pending: _Pending, u: torch.Tensor, cfg: AugmentConfig, c: _Colour) -> torch.Tensor:
    """Torchvision's ``RandomApply([ColorJitter(...)], p)`` for the whole batch at once.

    Each sample draws its own factors, its own apply flag and its own order of the
    active ops (a random permutation, as ``ColorJitter`` draws ``randperm(4)``).
    Step ``k`` applies, to every sample, the op that sample put at position ``k``
    (or the identity when the sample is not jittered).  Every op is a 3×3 matrix:
    brightness ``b·I``; contrast ``c·I`` plus ``(1 - c)`` times the image's mean gray
    level; saturation ``s·I + (1 - s)·gray``; hue a YIQ rotation.  Torchvision clamps
    to [0, 1] after every op, so each step is one matrix pass and one clamp.
    """
    ops = _jitter_ranges(cfg)
    if not ops or cfg.jitter_p <= 0:
        return x
    b = x.shape[0]
    applied = u[:, _U_JITTER] < cfg.jitter_p
    n = len(ops)
    lo = torch.tensor([op[1] for op in ops], device=x.device)
    hi = torch.tensor([op[2] for op in ops], device=x.device)
    f = torch.addcmul(lo, hi - lo, u[:, _U_FACTORS][:, [op[0] for op in ops]])  # B×n factors
    mats = []
    contrast_slot = -1
    for slot, (k, _, _) in enumerate(ops):
        fk = f[:, slot, None, None]
        if k in (0, 1):  # brightness: multiply; contrast: f·x + (1 - f)·mean gray (offset added per step)
            mats.append(fk * c.eye)
            if k == 1:
                contrast_slot = slot
        elif k == 2:  # saturation: blend with the per-pixel gray image
            mats.append(torch.lerp(c.gray, c.eye, fk))
        else:  # hue
            mats.append(hue_matrices(f[:, slot], c))
    mats_t = torch.stack(mats, dim=1)  # B×n×3×3, slot order
    order = torch.argsort(u[:, _U_ORDER][:, :n], dim=1)  # per-sample random permutation of slots
    # The matrix each sample applies at each step; samples not jittered take the identity.
    steps = mats_t[torch.arange(b, device=x.device)[:, None], order]
    steps = torch.where(applied[:, None, None, None], steps, c.eye)
    if contrast_slot >= 0:
        # (1 - c), at the step where a jittered sample does its contrast, else 0
        gamma = torch.where(applied[:, None] & (order == contrast_slot), 1 - f[:, contrast_slot, None], 0.0)
    for step in range(n):
        q = None
        if contrast_slot >= 0:
            q = (gamma[:, step] * (pending.mean_rgb(x) @ c.weights))[:, None]
        pending.then(steps[:, step], q)
        x = pending.apply(x, clamp=True)
    return x


# --------------------------------------------------------------------------- blur, solarize


def blur_kernel_size(sigma_max_px: float, size: int) -> int:
    """Odd kernel covering ±3 sigma at the largest sigma, at least 3, at most what reflect padding allows."""
    radius = max(1, math.ceil(3 * sigma_max_px))
    radius = min(radius, size - 1)
    return 2 * radius + 1


def gaussian_kernels(sigma: torch.Tensor, ksize: int) -> torch.Tensor:
    """``B×ksize`` normalised 1-D Gaussians, one per sample (torchvision's kernel formula)."""
    half = (ksize - 1) / 2
    t = torch.linspace(-half, half, ksize, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None].clamp_min(1e-6)) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(
    x: torch.Tensor,
    sigma: torch.Tensor,
    ksize: int,
    grouped: bool | None = None,
    buffers: Buffers | None = None,
) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, reflect padding like torchvision's ``GaussianBlur``.

    On accelerators the batch's ``B×3`` planes become the channels of one image and each
    gets its own kernel in one grouped convolution per direction (``groups = B·3``).
    On CPU that grouped convolution is about 10× slower than ``ksize`` shifted
    multiply-adds with per-sample weights, so the CPU takes the shifted sums
    (``grouped`` forces either path; the results agree to float rounding).  ``buffers``
    supplies kept scratch tensors for the CPU path (see ``ViewMaker._buffer``).
    """
    b, ch, h, w = x.shape
    pad = ksize // 2
    k = gaussian_kernels(sigma, ksize)  # B×K
    if grouped is None:
        grouped = _accelerated(x)
    if not grouped:
        y = _shifted_blur(x, k, pad, 3, buffers, "blur_w")
        return _shifted_blur(y, k, pad, 2, buffers, "blur_h")
    kk = k.repeat_interleave(ch, dim=0)  # (B·3)×K
    planes = x.reshape(1, b * ch, h, w)
    planes = F.conv2d(F.pad(planes, (pad, pad, 0, 0), mode="reflect"), kk.view(b * ch, 1, 1, ksize), groups=b * ch)
    planes = F.conv2d(F.pad(planes, (0, 0, pad, pad), mode="reflect"), kk.view(b * ch, 1, ksize, 1), groups=b * ch)
    return planes.view(b, ch, h, w)


def _shifted_blur(
    x: torch.Tensor, k: torch.Tensor, pad: int, dim: int, buffers: Buffers | None = None, name: str = ""
) -> torch.Tensor:
    """One 1-D pass of :func:`gaussian_blur` along ``dim`` (2 = rows, 3 = columns) as shifted sums."""
    n = x.shape[dim]
    padding = [pad, pad, 0, 0] if dim == 3 else [0, 0, pad, pad]
    weights = k[:, :, None, None, None]  # B×K×1×1×1
    if buffers is None:
        xp = F.pad(x, padding, mode="reflect")
        y = xp.narrow(dim, 0, n) * weights[:, 0]
    else:
        padded = list(x.shape)
        padded[dim] += 2 * pad
        xp = torch.ops.aten.reflection_pad2d.out(x, padding, out=buffers(name + "_pad", tuple(padded)))
        y = torch.mul(xp.narrow(dim, 0, n), weights[:, 0], out=buffers(name, tuple(x.shape)))
    for t in range(1, k.shape[1]):
        y.addcmul_(xp.narrow(dim, t, n), weights[:, t])
    return y


def random_blur(
    x: torch.Tensor,
    u: torch.Tensor,
    p: float,
    sigma_range: tuple[float, float],
    ksize: int,
    buffers: Buffers | None = None,
) -> torch.Tensor:
    """Blur the samples whose draw falls under ``p``; the rest pass through untouched.

    On CPU only the chosen samples are gathered and blurred (BYOL's second view blurs
    one in ten); elsewhere every sample is convolved and the unchosen ones get a
    delta kernel, which avoids a device-to-host sync.
    """
    if p <= 0:
        return x
    chosen = u[:, _U_BLUR] < p
    sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u[:, _U_SIGMA]
    if p >= 1:
        return gaussian_blur(x, sigma, ksize, buffers=None if _accelerated(x) else buffers)
    if not _accelerated(x):
        idx = chosen.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        return x.index_copy(0, idx, gaussian_blur(x.index_select(0, idx), sigma.index_select(0, idx), ksize))
    # A tiny sigma makes the kernel a delta at the centre tap: blur becomes identity.
    sigma = torch.where(chosen, sigma, torch.full_like(sigma, 1e-6))
    return gaussian_blur(x, sigma, ksize)


def random_solarize(x: torch.Tensor, u: torch.Tensor, p: float, threshold: float = 0.5) -> torch.Tensor:
    """Torchvision's ``RandomSolarize(threshold, p)``: pixels at or above ``threshold`` become ``1 - x``.

    Works in place on ``x`` (an intermediate the caller owns).  On CPU only the chosen
    samples are touched (BYOL solarises one view in five); elsewhere a mask avoids the
    device-to-host sync.
    """
    if p <= 0:
        return x
    chosen = u[:, _U_SOLARIZE] < p
    if not _accelerated(x):
        idx = chosen.nonzero().squeeze(1)
        if idx.numel():
            sub = x.index_select(0, idx)
            x.index_copy_(0, idx, torch.where(sub >= threshold, 1.0 - sub, sub))
        return x
    flip = (x >= threshold).logical_and_(chosen[:, None, None, None])
    return torch.where(flip, 1.0 - x, x, out=x)


# --------------------------------------------------------------------------- the view maker


class ViewMaker:
    """Turns a uint8 batch into augmented, normalised float32 views, all on the batch's device.

    The configuration's defaults are SimCLR's CIFAR-10 recipe; BYOL's asymmetric views
    come from ``blur_p = [1.0, 0.1]`` and ``solarize_p = [0.0, 0.2]``; multi-crop
    (SwAV, DINO) from ``local_crops``.

    One ViewMaker per thread: on CPU it keeps scratch buffers between calls.  The
    views it returns are always fresh tensors owned by the caller.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        out_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ):
        self.cfg = cfg
        self.out_size = int(out_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std must have three values (R, G, B), got {mean!r} and {std!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {std!r}")
        self._colour: dict[torch.device, _Colour] = {}
        self._workspace: dict[tuple, torch.Tensor] = {}
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- helpers

    # Scratch buffers larger than this are allocated per call rather than kept.
    WORKSPACE_LIMIT_BYTES = 64 * 2**20

    def _buffer(self, name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """A float32 scratch tensor kept between calls on CPU.

        On CPU, fresh multi-megabyte tensors come from mmap and pay a page fault per
        4 KiB on first touch; with a handful of sizes interleaved (input, grid, pixels)
        that cost more than the arithmetic.  Keeping the intermediates (never the
        returned views) removes it.  CUDA's caching allocator already does this.
        """
        numel = math.prod(shape)
        if device.type != "cpu" or numel * 4 > self.WORKSPACE_LIMIT_BYTES:
            return torch.empty(shape, device=device, dtype=torch.float32)
        key = (name, shape)
        buf = self._workspace.get(key)
        if buf is None:
            if len(self._workspace) > 32:  # the shapes changed (new batch size): start over
                self._workspace.clear()
            buf = self._workspace[key] = torch.empty(shape, dtype=torch.float32)
        return buf

    def _cpu_buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return self._buffer(name, shape, torch.device("cpu"))

    def _consts(self, device: torch.device) -> tuple[_Colour, torch.Tensor, torch.Tensor]:
        if device not in self._colour:
            self._colour[device] = _Colour(device)
            inv_std = torch.tensor([1.0 / s for s in self.std], device=device)
            self._norm[device] = (torch.diag(inv_std), torch.tensor(self.mean, device=device) * inv_std)
        return self._colour[device], *self._norm[device]

    def view_specs(self, n_global: int, n_local: int) -> list[ViewSpec]:
        """Global view ``i`` takes ``blur_p[min(i, 1)]`` and ``solarize_p[min(i, 1)]``.

        Local crops take the mean of the two blur probabilities and no solarisation:
        DINO blurs its local crops with p = 0.5 (its globals use 1.0 and 0.1, mean 0.55)
        and SwAV applies the same colour distortion to every crop.
        """
        cfg = self.cfg
        specs = [
            ViewSpec(
                self.out_size,
                (cfg.crop_scale_min, cfg.crop_scale_max),
                float(cfg.blur_p[min(i, 1)]),
                float(cfg.solarize_p[min(i, 1)]),
            )
            for i in range(n_global)
        ]
        local_blur = float(sum(cfg.blur_p)) / max(1, len(cfg.blur_p))
        specs += [
            ViewSpec(cfg.local_size, (cfg.local_scale_min, cfg.local_scale_max), local_blur, 0.0)
            for _ in range(n_local)
        ]
        return specs

    def _as_rgb_float(self, images: torch.Tensor, reuse: bool = True) -> tuple[torch.Tensor, float]:
        """The batch as float32 B×3×H×W and the factor that brings it to [0, 1].

        uint8 stays on the 0..255 scale here: the 1/255 is folded into the first colour
        matrix, saving a pass.  One-channel images are broadcast to three.  ``reuse``
        writes into the kept input buffer (only :meth:`__call__` does).
        """
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be a B×3×H×W (or B×1×H×W) tensor, got shape {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"images must be uint8 (0..255) or floating point (0..1), got {images.dtype}")
        scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
        b, _, h, w = images.shape
        if reuse:
            x = self._buffer("input", (b, 3, h, w), images.device)
        else:
            x = torch.empty(b, 3, h, w, device=images.device, dtype=torch.float32)
        x.copy_(images.expand(-1, 3, -1, -1))
        return x, scale

    def _view(self, x: torch.Tensor, scale: float, u: torch.Tensor, spec: ViewSpec,
              um: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        c, norm_m, norm_q = self._consts(x.device)
        b, _, height, width = x.shape
        boxes = crop_boxes(u, height, width, spec.scale, (cfg.crop_ratio_min, cfg.crop_ratio_max))
        flip = u[:, _U_FLIP] < cfg.flip_p
        s = spec.size
        theta = crop_theta(boxes, height, width, flip)
        grid = self._buffer("grid", (b, s, s, 2), x.device)
        v = resized_crop(x, theta, s, grid_out=grid, out=self._buffer("pixels_a", (b, 3, s, s), x.device))

        pending = _Pending(b, scale, c, spare=self._buffer("pixels_b", (b, 3, s, s), x.device))
        if um is not None:
            pending.then(*colour_mix(um, cfg.colour_mix_p, c))
        v = colour_jitter(v, pending, u, cfg, c)

        if cfg.grayscale_p > 0:
            gray = (u[:, _U_GRAY] < cfg.grayscale_p)[:, None, None]
            pending.then(torch.where(gray, c.gray, c.eye))

        if spec.blur_p > 0:
            # sigma is given in pixels at 224 px (BYOL/SimCLR ImageNet); scale it to this view.
            px = spec.size / 224.0
            sig = (cfg.blur_sigma_min * px, cfg.blur_sigma_max * px)
            v = random_blur(v, u, spec.blur_p, sig, blur_kernel_size(sig[1], spec.size), buffers=self._cpu_buffer)

        if spec.solarize_p > 0:
            v = pending.apply(v, clamp=False)  # solarisation needs the actual [0, 1] values
            v = random_solarize(v, u, spec.solarize_p)

        # Normalisation is one more affine map: (x - mean) / std.
        pending.then(norm_m.expand(b, 3, 3), (-norm_q).expand(b, 3))
        return pending.apply(v, clamp=False, fresh=True)

    # ---- public API

    def __call__(
        self,
        images: torch.Tensor,
        n_global: int = 2,
        n_local: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Augmented views of a batch: ``n_global`` at ``out_size``, then ``n_local`` at ``local_size``.

        images: uint8 B×3×H×W (float in [0, 1] is accepted too) on any device.  Each view
        is float32 B×3×s×s, normalised, contiguous; every sample of every view has its
        own random draw.  The same ``generator`` state gives the same views; without
        one the global RNG of the images' device is used.
        """
        n_local = self.cfg.local_crops if n_local is None else int(n_local)
        specs = self.view_specs(int(n_global), n_local)
        if not specs:
            return []
        device = images.device
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            x, scale = self._as_rgb_float(images)
            u = _uniforms(len(specs), x.shape[0], device, generator)
            um = _uniforms(len(specs), x.shape[0], device, generator, _N_MIX_UNIFORMS) if self.cfg.colour_mix_p > 0 else None
            return [self._view(x, scale, u[i], spec, None if um is None else um[i]) for i, spec in enumerate(specs)]

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> normalised float32 without augmentation, resized to ``out_size`` if needed.

        Used for probes, evaluation and the 'no augmentation' ablation, so it must match
        the statistics of the augmented views (same normalisation) minus the randomness.
        """
        device = images.device
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            x, scale = self._as_rgb_float(images, reuse=False)
            if x.shape[-2:] != (self.out_size, self.out_size):
                x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False, antialias=True)
            _, norm_m, norm_q = self._consts(device)
            inv_std = norm_m.diagonal()
            return (x * (inv_std * scale)[None, :, None, None] - norm_q[None, :, None, None]).contiguous()

    def denormalize(self, x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Back to [0, 1] floats for display (clamped unless ``clamp=False``)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, device=x.device, dtype=torch.float32)[:, None, None]
        y = x.to(torch.float32) * std + mean
        return y.clamp_(0.0, 1.0) if clamp else y


__all__ = [
    "GRAY_WEIGHTS",
    "ViewMaker",
    "ViewSpec",
    "colour_jitter",
    "colour_mix",
    "crop_boxes",
    "crop_grid",
    "crop_theta",
    "gaussian_blur",
    "gaussian_kernels",
    "hue_matrices",
    "random_blur",
    "random_rotations",
    "random_solarize",
    "resized_crop",
]
