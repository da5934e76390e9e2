"""How much faster batched augmentation is than torchvision's per-image pipeline, measured side by side.

The reference is what a PyTorch user would write for SimCLR's CIFAR recipe
(Chen et al. 2020, appendix B.9) with ``torchvision.transforms.v2``, applied image by
image to uint8 tensors the way a ``Dataset.__getitem__`` does, two views per image.
The two are timed in alternating rounds inside one run, so that load from other
processes and CPU frequency changes hit both alike; only the ratio is meaningful
across machines.

Run standalone: ``python -m ssl_studio.benchmarks.views``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch

from ssl_studio.config import AugmentConfig
from ssl_studio.data.views import ViewMaker

# CIFAR-10 statistics; any values do for timing.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def torchvision_pipeline(size: int, cfg: AugmentConfig | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """SimCLR's CIFAR augmentation in ``torchvision.transforms.v2``, for one C×H×W uint8 image."""
    from torchvision.transforms import v2

    cfg = cfg or AugmentConfig()
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(cfg.crop_scale_min, cfg.crop_scale_max), ratio=(cfg.crop_ratio_min, cfg.crop_ratio_max)),
            v2.RandomHorizontalFlip(cfg.flip_p),
            v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], p=cfg.jitter_p),
            v2.RandomGrayscale(cfg.grayscale_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_views(fn: Callable[[], list[torch.Tensor]], device: torch.device, seconds: float) -> tuple[float, int]:
    """Run ``fn`` for about ``seconds``; returns (elapsed seconds, views produced, counted in images)."""
    n = 0
    _sync(device)
    start = time.perf_counter()
    while True:
        views = fn()
        n += sum(v.shape[0] for v in views)
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed, n


def bench_views(
    batch_size: int = 256,
    size: int = 32,
    seconds: float = 3.0,
    device: str = "cpu",
    images: torch.Tensor | None = None,
    threads: int | None = None,
) -> dict:
    """Views per second of :class:`ViewMaker` vs per-image torchvision v2, plus multi-crop and BYOL timings.

    ``seconds`` is the time given to the main comparison (shared by the two sides in
    alternating rounds); the multi-crop and BYOL timings get a third of it each.
    A "view" is one augmented image, so two views of a batch of 256 count 512.
    """
    if threads:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        dev = torch.device(device)
        if images is None:
            g = torch.Generator().manual_seed(0)
            images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g)
        images = images[:batch_size]
        batch_size, size = images.shape[0], images.shape[-1]
        on_dev = images.to(dev)
        cfg = AugmentConfig()
        maker = ViewMaker(cfg, size, MEAN, STD)
        tv = torchvision_pipeline(size, cfg)
        cpu_images = images.cpu()

        def ours() -> list[torch.Tensor]:
            return maker(on_dev, n_global=2, n_local=0)

        # The per-image side is slow, so each call does a slice of the batch (the cost per
        # image does not depend on the batch size) and the rounds stay short.
        chunk = min(batch_size, 16)
        cursor = [0]

        def theirs() -> list[torch.Tensor]:
            # Per image, two views each, as a Dataset would; stacked into batches like a DataLoader.
            start = cursor[0]
            cursor[0] = (start + chunk) % max(1, batch_size - chunk + 1)
            part = cpu_images[start : start + chunk]
            v1 = torch.stack([tv(im) for im in part])
            v2 = torch.stack([tv(im) for im in part])
            return [v1.to(dev), v2.to(dev)]

        ours(), theirs()  # warm-up (first calls allocate and pick kernels)

        # Alternate short rounds so both sides see the same machine load.
        t_ours = t_theirs = 0.0
        n_ours = n_theirs = 0
        rounds = 0
        round_s = max(0.05, seconds / 12)
        while t_ours + t_theirs < seconds or rounds < 2:
            dt, n = _time_views(ours, dev, round_s / 2)
            t_ours, n_ours = t_ours + dt, n_ours + n
            dt, n = _time_views(theirs, dev, round_s / 2)
            t_theirs, n_theirs = t_theirs + dt, n_theirs + n
            rounds += 1
        views_per_s = n_ours / t_ours
        tv_per_s = n_theirs / t_theirs

        extra_s = max(0.2, seconds / 3)
        multi = ViewMaker(dataclasses.replace(cfg, local_crops=6, local_size=max(8, size // 2)), size, MEAN, STD)
        multi(on_dev)
        dt, n = _time_views(lambda: multi(on_dev, n_global=2, n_local=6), dev, extra_s)
        multi_views = n / dt
        byol = ViewMaker(dataclasses.replace(cfg, blur_p=[1.0, 0.1], solarize_p=[0.0, 0.2]), size, MEAN, STD)
        byol(on_dev)
        dt, n = _time_views(lambda: byol(on_dev, n_global=2, n_local=0), dev, extra_s)
        byol_views = n / dt
        mixed = ViewMaker(dataclasses.replace(cfg, colour_mix_p=1.0), size, MEAN, STD)
        mixed(on_dev)
        dt, n = _time_views(lambda: mixed(on_dev, n_global=2, n_local=0), dev, extra_s)
        mixed_views = n / dt

        return {
            "views_per_s": views_per_s,
            "torchvision_views_per_s": tv_per_s,
            "ratio": views_per_s / tv_per_s,
            "ms_per_batch_2_views": 1e3 * 2 * batch_size / views_per_s,
            "torchvision_ms_per_batch_2_views": 1e3 * 2 * batch_size / tv_per_s,
            "multicrop_2x6_views_per_s": multi_views,
            "multicrop_2x6_ms_per_batch": 1e3 * 8 * batch_size / multi_views,
            "byol_views_per_s": byol_views,
            "byol_ms_per_batch_2_views": 1e3 * 2 * batch_size / byol_views,
            "colour_mix_views_per_s": mixed_views,
            "colour_mix_ms_per_batch_2_views": 1e3 * 2 * batch_size / mixed_views,
            "rounds": rounds,
            "batch_size": batch_size,
            "size": size,
            "device": str(dev),
            "threads": torch.get_num_threads(),
        }
    finally:
        if threads:
            torch.set_num_threads(previous)


def format_table(r: dict) -> str:
    rows = [
        ("ViewMaker, SimCLR, 2 views", r["views_per_s"], r["ms_per_batch_2_views"]),
        ("torchvision v2 per image, 2 views", r["torchvision_views_per_s"], r["torchvision_ms_per_batch_2_views"]),
        ("ViewMaker, multi-crop 2 + 6", r["multicrop_2x6_views_per_s"], r["multicrop_2x6_ms_per_batch"]),
        ("ViewMaker, BYOL blur + solarize, 2 views", r["byol_views_per_s"], r["byol_ms_per_batch_2_views"]),
        ("ViewMaker, SimCLR + colour mix, 2 views", r["colour_mix_views_per_s"], r["colour_mix_ms_per_batch_2_views"]),
    ]
    lines = [
        f"views: batch {r['batch_size']}, {r['size']}x{r['size']} uint8, {r['device']}, {r['threads']} threads, {r['rounds']} alternating rounds",
        f"{'pipeline':<42}{'views/s':>12}{'ms/batch':>11}",
    ]
    lines += [f"{name:<42}{vps:>12,.0f}{ms:>11.1f}" for name, vps, ms in rows]
    lines.append(f"ratio ViewMaker / torchvision: {r['ratio']:.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    print(format_table(bench_views(a.batch_size, a.size, a.seconds, a.device, threads=a.threads)))


if __name__ == "__main__":
    main()
