"""Batched augmentation: shapes, reproducibility, per-sample independence and torchvision semantics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ssl_studio.config import AugmentConfig
from ssl_studio.data import views as V
from ssl_studio.data.views import ViewMaker

MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)

# Every augmentation off: views are the (resized) image itself.
OFF = AugmentConfig(
    crop_scale_min=1.0, crop_scale_max=1.0, crop_ratio_min=1.0, crop_ratio_max=1.0,
    flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=[0.0, 0.0], solarize_p=[0.0, 0.0],
)
BYOL = AugmentConfig(blur_p=[1.0, 0.1], solarize_p=[0.0, 0.2])


def images(b: int = 8, size: int = 32, seed: int = 0, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, size, size), dtype=torch.uint8, generator=g)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normalised(x: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(MEAN)[:, None, None]
    s = torch.tensor(STD)[:, None, None]
    return (x.float() / 255 - m) / s


def test_shapes_dtype_and_layout_global_and_local():
    cfg = dataclasses.replace(BYOL, local_crops=3, local_size=12)
    vm = ViewMaker(cfg, 24, MEAN, STD)
    views = vm(images(5, 32), generator=gen())
    assert [tuple(v.shape) for v in views] == [(5, 3, 24, 24)] * 2 + [(5, 3, 12, 12)] * 3
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in views)
    assert len(vm(images(5), n_global=1, n_local=0)) == 1


def test_values_stay_in_range_after_denormalising():
    cfg = dataclasses.replace(BYOL, local_crops=2, local_size=16, grayscale_p=0.5, jitter_p=1.0, hue=0.5, brightness=1.0)
    vm = ViewMaker(cfg, 32, MEAN, STD)
    for v in vm(images(16), generator=gen(1)):
        d = vm.denormalize(v, clamp=False)
        assert d.min() >= -1e-5 and d.max() <= 1 + 1e-5
        assert torch.isfinite(v).all()


def test_same_seed_same_views_other_seed_other_views():
    vm = ViewMaker(dataclasses.replace(BYOL, local_crops=2), 32, MEAN, STD)
    x = images(6)
    a, b, c = vm(x, generator=gen(3)), vm(x, generator=gen(3)), vm(x, generator=gen(4))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(5)
    d = vm(x)
    torch.manual_seed(5)
    assert all(torch.equal(p, q) for p, q in zip(d, vm(x)))


def test_samples_get_independent_draws():
    vm = ViewMaker(AugmentConfig(), 32, MEAN, STD)
    x = images(1).expand(12, -1, -1, -1).contiguous()
    v1, v2 = vm(x, generator=gen(0))
    flat = v1.flatten(1)
    assert torch.unique(flat, dim=0).shape[0] == 12  # every copy got its own crop and colours
    assert not torch.equal(v1, v2)  # and the two views differ
    # crops alone differ too (colour off): geometry is drawn per sample
    geo = ViewMaker(dataclasses.replace(OFF, crop_scale_min=0.2, crop_ratio_min=0.75, crop_ratio_max=4 / 3), 32, MEAN, STD)
    assert torch.unique(geo(x, n_global=1, generator=gen(0))[0].flatten(1), dim=0).shape[0] == 12


def test_flip_without_crop_is_an_exact_mirror():
    vm = ViewMaker(dataclasses.replace(OFF, flip_p=1.0), 32, MEAN, STD)
    x = images(4)
    (v,) = vm(x, n_global=1, generator=gen())
    torch.testing.assert_close(v, normalised(x).flip(-1), atol=1e-5, rtol=0)


def test_everything_off_gives_the_resized_original():
    x = images(4, 16)
    vm = ViewMaker(OFF, 32, MEAN, STD)
    (v,) = vm(x, n_global=1, generator=gen())
    ref = F.interpolate(x.float() / 255, size=32, mode="bilinear", align_corners=False)
    torch.testing.assert_close(vm.denormalize(v, clamp=False), ref, atol=1e-5, rtol=0)
    same = ViewMaker(OFF, 16, MEAN, STD)(x, n_global=2, generator=gen())
    for s in same:
        torch.testing.assert_close(s, normalised(x), atol=1e-5, rtol=0)


def test_crop_grid_matches_affine_grid():
    u = torch.rand(7, V._N_UNIFORMS, generator=gen())
    boxes = V.crop_boxes(u, 20, 30, (0.1, 1.0), (0.5, 2.0))
    theta = V.crop_theta(boxes, 20, 30, flip=torch.rand(7, generator=gen(1)) < 0.5)
    ref = F.affine_grid(theta, (7, 3, 11, 11), align_corners=False)
    torch.testing.assert_close(V.crop_grid(theta, 11), ref, atol=1e-6, rtol=0)


def test_crop_boxes_follow_torchvision_ranges_and_fallback():
    u = torch.rand(4000, V._N_UNIFORMS, generator=gen())
    top, left, h, w = V.crop_boxes(u, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3)).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024
    assert area.min() >= 0.2 * 0.85 and area.max() <= 1.0  # rounding to whole pixels allows a little under
    assert ((w / h) >= 0.7).all() and ((w / h) <= 1.45).all()
    assert len(torch.unique(top)) > 5 and len(torch.unique(w)) > 5
    # Impossible ratio for a tall strip: torchvision's centre-crop fallback (w = W, h = W / min ratio).
    fb = V.crop_boxes(u[:3], 40, 8, (1.0, 1.0), (1.0, 1.0))
    assert fb.tolist() == [[16.0, 0.0, 8.0, 8.0]] * 3


def _jitter_only(**strengths: float) -> AugmentConfig:
    base = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    base.update(strengths)
    return dataclasses.replace(OFF, jitter_p=1.0, **base)


def _run_jitter(cfg: AugmentConfig, x01: torch.Tensor, factor_u: list[float], order_u: list[float]) -> torch.Tensor:
    c = V._Colour(torch.device("cpu"))
    u = torch.zeros(x01.shape[0], V._N_UNIFORMS)
    u[:, V._U_FACTORS] = torch.tensor(factor_u)
    u[:, V._U_ORDER] = torch.tensor(order_u)
    pending = V._Pending(x01.shape[0], 1.0, c)
    out = V.colour_jitter(x01.clone(), pending, u, cfg, c)
    return pending.apply(out, clamp=False)


def test_brightness_contrast_saturation_match_torchvision():
    x = images(3).float() / 255
    # u = 1 puts each factor at the top of its range: 1 + strength.
    torch.testing.assert_close(_run_jitter(_jitter_only(brightness=0.4), x, [1, 0, 0, 0], [0, 0, 0, 0]), TF.adjust_brightness(x, 1.4), atol=1e-5, rtol=0)
    torch.testing.assert_close(_run_jitter(_jitter_only(contrast=0.5), x, [0, 0, 0, 0], [0, 0, 0, 0]), TF.adjust_contrast(x, 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(_run_jitter(_jitter_only(saturation=0.4), x, [0, 0, 1, 0], [0, 0, 0, 0]), TF.adjust_saturation(x, 1.4), atol=1e-5, rtol=0)
    # Order matters through the clamps: brightness then contrast, and the reverse.
    cfg = _jitter_only(brightness=0.8, contrast=0.8)
    bc = TF.adjust_contrast(TF.adjust_brightness(x, 1.8), 0.2)
    cb = TF.adjust_brightness(TF.adjust_contrast(x, 0.2), 1.8)
    assert not torch.allclose(bc, cb, atol=1e-3)
    torch.testing.assert_close(_run_jitter(cfg, x, [1, 0, 0, 0], [0.1, 0.9, 0, 0]), bc, atol=1e-5, rtol=0)
    torch.testing.assert_close(_run_jitter(cfg, x, [1, 0, 0, 0], [0.9, 0.1, 0, 0]), cb, atol=1e-5, rtol=0)


def test_hue_rotation_moves_red_towards_green_and_keeps_gray():
    c = V._Colour(torch.device("cpu"))
    m = V.hue_matrices(torch.tensor([1 / 3, 0.0]), c)
    red = torch.tensor([1.0, 0.0, 0.0])
    turned = m[0] @ red
    assert turned[1] > turned[0] and turned[1] > turned[2]
    torch.testing.assert_close(m[1], torch.eye(3), atol=1e-5, rtol=0)
    gray = torch.tensor([0.4, 0.4, 0.4])
    torch.testing.assert_close(m[0] @ gray, gray, atol=1e-4, rtol=0)


def test_jitter_off_leaves_colours_unchanged():
    x = images(6)
    for cfg in (dataclasses.replace(OFF, jitter_p=0.0, brightness=0.8, hue=0.5), _jitter_only()):
        (v,) = ViewMaker(cfg, 32, MEAN, STD)(x, n_global=1, generator=gen())
        torch.testing.assert_close(v, normalised(x), atol=1e-5, rtol=0)


def test_grayscale_gives_equal_channels():
    vm = ViewMaker(dataclasses.replace(AugmentConfig(), grayscale_p=1.0), 32, MEAN, STD)
    for v in vm(images(6), generator=gen()):
        d = vm.denormalize(v, clamp=False)
        torch.testing.assert_close(d[:, 0], d[:, 1], atol=1e-5, rtol=0)
        torch.testing.assert_close(d[:, 1], d[:, 2], atol=1e-5, rtol=0)
    (g,) = ViewMaker(dataclasses.replace(OFF, grayscale_p=1.0), 32, MEAN, STD)(images(2), n_global=1, generator=gen())
    ref = TF.rgb_to_grayscale(images(2).float() / 255, num_output_channels=3)
    torch.testing.assert_close(ViewMaker(OFF, 32, MEAN, STD).denormalize(g, clamp=False), ref, atol=1e-5, rtol=0)


def test_random_rotations_are_proper_rotations_spread_over_so3():
    r = V.random_rotations(torch.rand(4000, 3, generator=gen(3)))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(4000, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4000), atol=1e-5)
    # Haar-uniform rotations average to the zero matrix; any bias towards the identity would show
    assert r.mean(0).abs().max() < 0.05
    # and they turn a fixed colour direction anywhere: red's image points into every octant
    red = r[:, :, 0]
    octants = {tuple(s) for s in (red > 0).int().tolist()}
    assert len(octants) == 8


def pairwise_colour_distances(v: torch.Tensor, vm: ViewMaker) -> torch.Tensor:
    """Distances between the colours of 64 pixels of each view (B x 64 x 64), in [0, 1] RGB."""
    px = vm.denormalize(v, clamp=False).flatten(2)[:, :, :64].transpose(1, 2)
    return (px[:, :, None] - px[:, None]).norm(dim=-1)


def test_colour_mix_moves_every_colour_and_keeps_the_geometry():
    imgs = images(64, seed=4)
    mixed_cfg = dataclasses.replace(OFF, colour_mix_p=1.0)
    vm_off, vm_mix = ViewMaker(OFF, 32, MEAN, STD), ViewMaker(mixed_cfg, 32, MEAN, STD)
    (plain,) = vm_off(imgs, n_global=1, generator=gen())
    (mixed,) = vm_mix(imgs, n_global=1, generator=gen())
    d_plain, d_mixed = pairwise_colour_distances(plain, vm_off), pairwise_colour_distances(mixed, vm_mix)
    # an orthogonal map about mid-grey: every distance between two colours shrinks by the same factor
    assert torch.allclose(d_mixed, d_plain * V.COLOUR_MIX_CONTRAST, atol=1e-4)
    # the turned cube stays inside [0, 1]^3: nothing is clipped
    raw = vm_mix.denormalize(mixed, clamp=False)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    # colours themselves do change: a pixel's colour is not the plain one scaled towards grey
    shrunk = (vm_off.denormalize(plain, clamp=False) - 0.5) * V.COLOUR_MIX_CONTRAST + 0.5
    assert (raw - shrunk).abs().amax(dim=(1, 2, 3)).min() > 0.05
    # and about half the views are reflected: the luma order of two pixels flips between mixes
    w = torch.tensor(V.GRAY_WEIGHTS)[None, :, None, None]
    luma_plain, luma_mixed = (vm_off.denormalize(plain, clamp=False) * w).sum(1), (raw * w).sum(1)
    darker_plain = luma_plain[:, 0, 0] < luma_plain[:, 0, 1]
    darker_mixed = luma_mixed[:, 0, 0] < luma_mixed[:, 0, 1]
    flipped = (darker_plain != darker_mixed).float().mean()
    assert 0.2 < flipped < 0.8


def test_colour_mix_probability_and_independent_views():
    imgs = images(200, seed=5)
    vm_off = ViewMaker(OFF, 32, MEAN, STD)
    vm_half = ViewMaker(dataclasses.replace(OFF, colour_mix_p=0.5), 32, MEAN, STD)
    (plain,) = vm_off(imgs, n_global=1, generator=gen())
    first, second = vm_half(imgs, n_global=2, generator=gen())
    kept = (first - plain).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert 0.35 < kept.float().mean() < 0.65
    # the two views of one image draw their own maps
    assert (first - second).abs().amax(dim=(1, 2, 3)).gt(0.05).float().mean() > 0.5


def test_colour_mix_off_draws_nothing_extra():
    # with colour_mix_p = 0 a seed gives exactly the views it gave before the option existed:
    # the generator is left where the main draw leaves it
    g = gen(6)
    ViewMaker(BYOL, 32, MEAN, STD)(images(4), generator=g)
    g_ref = gen(6)
    V._uniforms(2, 4, torch.device("cpu"), g_ref)
    assert torch.equal(g.get_state(), g_ref.get_state())


def test_solarize_inverts_pixels_above_half():
    x = images(4)
    vm = ViewMaker(dataclasses.replace(OFF, solarize_p=[1.0, 1.0]), 32, MEAN, STD)
    (v,) = vm(x, n_global=1, generator=gen())
    x01 = x.float() / 255
    ref = torch.where(x01 >= 0.5, 1 - x01, x01)
    torch.testing.assert_close(vm.denormalize(v, clamp=False), ref, atol=1e-5, rtol=0)
    # view 1 keeps solarize_p[0] = 0 in a BYOL-like setting
    vm2 = ViewMaker(dataclasses.replace(OFF, solarize_p=[0.0, 1.0]), 32, MEAN, STD)
    a, b = vm2(x, generator=gen())
    torch.testing.assert_close(a, normalised(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(vm2.denormalize(b, clamp=False), ref, atol=1e-5, rtol=0)


def _high_freq_energy(x: torch.Tensor) -> float:
    lap = x[..., 1:-1, 1:-1] * 4 - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.pow(2).mean())


def test_blur_reduces_high_frequency_energy():
    x = images(6)
    # sigma in pixels at 224 px: 14 px at 224 is 2 px at 32.
    cfg = dataclasses.replace(OFF, blur_p=[1.0, 0.5], blur_sigma_min=7.0, blur_sigma_max=14.0)
    vm = ViewMaker(cfg, 32, MEAN, STD)
    a, b = vm(x, generator=gen())
    sharp = normalised(x)
    assert _high_freq_energy(a) < 0.2 * _high_freq_energy(sharp)
    # p = 0.5: some samples blurred, others bit-identical
    for i in range(6):
        if not torch.allclose(b[i], sharp[i], atol=1e-5):
            assert _high_freq_energy(b[i]) < 0.2 * _high_freq_energy(sharp[i])
    assert V.blur_kernel_size(0.2, 32) == 3 and V.blur_kernel_size(2.0, 224) == 13
    k = V.gaussian_kernels(torch.tensor([0.5, 1.0]), 5)
    torch.testing.assert_close(k.sum(1), torch.ones(2))
    # per-sample sigma, both code paths (shifted sums on CPU, grouped conv elsewhere), vs torchvision
    xf = x[:2].float()
    sig = torch.tensor([0.6, 1.5])
    ref = torch.stack([TF.gaussian_blur(xf[i], [5, 5], [float(sig[i])] * 2) for i in range(2)])
    for grouped in (False, True):
        torch.testing.assert_close(V.gaussian_blur(xf, sig, 5, grouped=grouped), ref, atol=1e-3, rtol=0)


def test_plain_matches_normalised_input():
    x = images(4)
    vm = ViewMaker(AugmentConfig(), 32, MEAN, STD)
    torch.testing.assert_close(vm.plain(x), normalised(x), atol=1e-5, rtol=0)
    up = ViewMaker(AugmentConfig(), 64, MEAN, STD).plain(x)
    assert up.shape == (4, 3, 64, 64) and up.dtype == torch.float32
    torch.testing.assert_close(vm.denormalize(vm.plain(x)), x.float() / 255, atol=1e-5, rtol=0)


def test_gray_and_float_inputs_are_accepted():
    vm = ViewMaker(AugmentConfig(), 32, MEAN, STD)
    one = images(3, c=1)
    (v,) = vm(one, n_global=1, generator=gen())
    assert v.shape == (3, 3, 32, 32)
    x = images(3)
    a = vm(x, generator=gen(2))
    b = vm(x.float() / 255, generator=gen(2))
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=0)


def test_works_under_bf16_autocast():
    vm = ViewMaker(dataclasses.replace(BYOL, local_crops=1), 32, MEAN, STD)
    x = images(4)
    ref = vm(x, generator=gen())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vm(x, generator=gen())
        plain = vm.plain(x)
    assert all(v.dtype == torch.float32 for v in out) and plain.dtype == torch.float32
    for p, q in zip(ref, out):
        torch.testing.assert_close(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_a_cpu_generator():
    vm = ViewMaker(dataclasses.replace(BYOL, local_crops=2), 32, MEAN, STD)
    x = images(8)
    cpu = vm(x, generator=gen())
    gpu = vm(x.cuda(), generator=gen())
    for p, q in zip(cpu, gpu):
        assert q.is_cuda
        torch.testing.assert_close(p, q.cpu(), atol=1e-4, rtol=0)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert vm(x.cuda(), generator=g)[0].is_cuda


def test_returned_views_are_not_overwritten_by_the_next_call():
    vm = ViewMaker(dataclasses.replace(BYOL, local_crops=1), 32, MEAN, STD)
    first = vm(images(4, seed=1), generator=gen(1))
    kept = [v.clone() for v in first]
    vm(images(4, seed=2), generator=gen(2))
    assert all(torch.equal(a, b) for a, b in zip(first, kept))


def test_non_square_inputs_give_square_views():
    x = torch.randint(0, 256, (3, 3, 20, 36), dtype=torch.uint8, generator=gen())
    vm = ViewMaker(dataclasses.replace(AugmentConfig(), local_crops=2, local_size=8), 16, MEAN, STD)
    assert [tuple(v.shape) for v in vm(x, generator=gen())] == [(3, 3, 16, 16)] * 2 + [(3, 3, 8, 8)] * 2
    assert vm.plain(x).shape == (3, 3, 16, 16)


def test_accelerator_code_paths_agree_with_cpu_paths(monkeypatch):
    # Masked blur/solarise, grouped convolutions and F.grid_sample without out=, run on CPU.
    cfg = dataclasses.replace(BYOL, blur_p=[1.0, 0.5], solarize_p=[0.5, 0.5], blur_sigma_min=5.0, blur_sigma_max=14.0, local_crops=1)
    x = images(8)
    cpu = ViewMaker(cfg, 32, MEAN, STD)(x, generator=gen(7))
    monkeypatch.setattr(V, "_accelerated", lambda t: True)
    acc = ViewMaker(cfg, 32, MEAN, STD)(x, generator=gen(7))
    for p, q in zip(cpu, acc):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=0)
