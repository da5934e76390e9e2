"""Training images/s of the lab's GPU pipeline beside the pipeline its peers use, in one run.

Both sides are the same ``Trainer`` (SimCLR, the same backbone, loss, optimiser, precision and memory
format, the step values read one step late): only the input differs.

* ``batched``: the trainer's own path: the uint8 set on the device, views made on the device in one
  vectorised call per batch.
* ``dataloader``: a ``torch.utils.data.DataLoader`` with worker processes, each image augmented on its own
  by ``torchvision.transforms.v2`` (SimCLR's CIFAR recipe, see benchmarks/views.py), collated, pinned and
  copied with ``non_blocking=True``, as lightly and solo-learn feed their models.

The sides alternate for ``rounds`` rounds of ``seconds`` each (after warm-up), and each side's best round is
reported, with their ratio.  Without CUDA the GPU comparison is skipped with one sentence; the ``dataloader``
side still runs on the CPU at a small size (the test checks it produces a number).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import torch

from ssl_studio.cli_args import build_parser, config_from_args

WARMUP_STEPS = 3


class _TwoViews(torch.utils.data.Dataset):
    """Two independently augmented views of one uint8 image, per sample (the peers' dataset shape)."""

    def __init__(self, images: torch.Tensor, size: int):
        from ssl_studio.benchmarks.views import torchvision_pipeline

        self.images, self.transform = images, torchvision_pipeline(size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        return self.transform(x), self.transform(x), i


def _trainer(backbone: str, batch_size: int, device: str, out: str, width: int | None = None):
    from ssl_studio.engine.trainer import Trainer

    flags = ["train", "--preset", "simclr", "--data", "shapes", "--backbone", backbone, "--device", device, "--quiet",
             "--batch-size", str(batch_size), "--set", f"data.num_images={max(8 * batch_size, 512)}", "--set", "probe.every=0",
             "--set", "probe.visuals_every=0", "--steps", "1000000", "--out", out]
    if width is not None:
        flags += ["--set", f"model.width={width}"]
    trainer = Trainer(config_from_args(build_parser().parse_args(flags)))
    trainer._setup()
    trainer.last_checkpoint = time.perf_counter() + 1e9
    return trainer


def _dataloader_batches(trainer, workers: int):
    """An endless iterator of Batch objects made by a per-sample torchvision DataLoader (replaces _make_batch)."""
    from ssl_studio.objectives import Batch

    data = trainer.imageset
    dataset = _TwoViews(data.images[data.train_index], data.images.shape[-1])
    pin = trainer.device.type == "cuda"
    loader = torch.utils.data.DataLoader(dataset, batch_size=trainer.batch_size, shuffle=True, drop_last=True, num_workers=workers,
                                         pin_memory=pin, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
    while True:
        for v1, v2, idx in loader:
            v1, v2 = (v.to(trainer.device, non_blocking=pin) for v in (v1, v2))
            if trainer.channels_last:
                v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
            yield Batch(views=[v1, v2], images=v1, indices=idx, plain=v1)


def _time_side(trainer, seconds: float) -> dict[str, float]:
    """images/s of the trainer's step loop (values read one step late, as in Trainer._loop)."""

    def sync():
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    pending = None
    for _ in range(WARMUP_STEPS):
        pending = trainer._train_step(0.5)
    pending.read()
    sync()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps == 0:
        values = trainer._train_step(0.5)
        pending.read()
        pending = values
        steps += 1
    pending.read()
    sync()
    dt = time.perf_counter() - t0
    return {"images_per_s": steps * trainer.batch_size / dt, "steps": steps, "step_ms": 1000 * dt / steps}


def bench_gpu(batch_size: int = 512, backbone: str = "resnet18", seconds: float = 10.0, rounds: int = 2, workers: int | None = None,
              device: str = "cuda", sides: tuple[str, ...] = ("batched", "dataloader"), width: int | None = None) -> dict[str, Any]:
    """Each side's best images/s over ``rounds`` alternating rounds, and batched / dataloader when both ran."""
    import os

    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "No CUDA device here: the GPU benchmark (ResNet-18 SimCLR at batch 512, batched views against a "
                           "per-sample torchvision DataLoader) runs only on a machine with an NVIDIA GPU."}
    workers = workers if workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="ssl-studio-bench-") as out:
        trainers = {side: _trainer(backbone, batch_size, device, out, width) for side in sides}
        try:
            if "dataloader" in trainers:
                t = trainers["dataloader"]
                batches = _dataloader_batches(t, workers)
                t._make_batch = lambda: next(batches)
            for _ in range(rounds):
                for side, trainer in trainers.items():
                    results[side].append(_time_side(trainer, seconds))
        finally:
            for trainer in trainers.values():
                if trainer.lock is not None:
                    trainer.lock.release()
    best = {side: max(rs, key=lambda r: r["images_per_s"]) for side, rs in results.items()}
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else device, "backbone": backbone,
                              "batch_size": batch_size, "workers": workers, "best": best,
                              "rounds": {side: [r["images_per_s"] for r in rs] for side, rs in results.items()}}
    if "batched" in best and "dataloader" in best:
        report["ratio"] = best["batched"]["images_per_s"] / best["dataloader"]["images_per_s"]
    return report


def gpu_table(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["## GPU training (SimCLR, ResNet-18)", "", r["skipped"], ""]
    lines = [f"## GPU training (SimCLR, {r['backbone']}, batch {r['batch_size']}, {r['device']})", "",
             "| input pipeline | images/s | step ms | rounds (images/s) |", "|---|---:|---:|---|"]
    names = {"batched": "ssl_studio: set on the device, batched views", "dataloader": f"torchvision.transforms.v2 per sample, DataLoader x {r['workers']} workers"}
    for side, best in r["best"].items():
        lines.append(f"| {names[side]} | {best['images_per_s']:,.0f} | {best['step_ms']:,.1f} | {', '.join(f'{v:,.0f}' for v in r['rounds'][side])} |")
    if "ratio" in r:
        lines.append(f"| ratio | {r['ratio']:.2f}x | | |")
    return lines + [""]
