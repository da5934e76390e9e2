"""Training speed of each method's own step on its default backbone, with the share of each part.

The step is the trainer's (``engine/trainer.py``): a batch of stored images, the objective's views,
the forward pass under the run's precision, the backward pass, the optimiser with the objective's
recipe, ``after_step`` (EMA updates).  Each part is timed on its own, so the table says where a step's
time goes.  Methods are timed in round-robin, one step each in turn, so that a load change slows every
method alike and the images/s of the ConvNet and the ViT can be compared.  Random images stand in for
data (the cost of a step does not depend on what the pixels show).  Results: docs/studies/recipes.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ssl_studio.config import ModelConfig, RunConfig, validate_config
from ssl_studio.data.imageset import ImageSet
from ssl_studio.engine.build import build_objective, build_views, resolved_optim
from ssl_studio.engine.device import autocast, pick_channels_last, pick_precision
from ssl_studio.engine.optim import build_optimizer
from ssl_studio.objectives.base import Batch

DEFAULT_METHODS = (("simclr", "convnet"), ("mae", "vit"), ("ijepa", "vit"))
PARTS = ("views", "forward", "backward", "optimizer", "after_step")


@dataclass
class _Method:
    name: str
    backbone: str
    describe: str
    batch_size: int
    step: object
    times: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})

    @property
    def timed(self) -> float:
        return sum(sum(v) for v in self.times.values())


def _random_images(n: int, size: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return ImageSet(name="random", images=images, labels=labels, class_names=[str(i) for i in range(10)], captions=None, masks=None,
                    train_index=torch.arange(n), val_index=torch.arange(min(n, 64)), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _make_method(name: str, backbone: str, batch_size: int, image_size: int, model: dict | None = None,
                 objective: dict | None = None) -> _Method:
    cfg = RunConfig()
    cfg.objective.name, cfg.objective.params = name, dict(objective or {})
    cfg.model = ModelConfig(backbone=backbone, **(model or {}))
    cfg.data.resolution, cfg.batch_size = image_size, batch_size
    validate_config(cfg)
    data = _random_images(max(4 * batch_size, 256), image_size, seed=0)
    device = torch.device("cpu")
    dtype = pick_precision(cfg.precision, device)
    channels_last = pick_channels_last(cfg.channels_last, device, backbone, dtype)
    torch.manual_seed(0)
    obj = build_objective(cfg, data)
    if channels_last:
        obj.to(memory_format=torch.channels_last)
    views = build_views(cfg, data)
    opt_name, lr, wd = resolved_optim(cfg)
    optimizer = build_optimizer(opt_name, obj.parameter_groups(wd), lr * batch_size / 256, cfg.optim.momentum)
    g = torch.Generator().manual_seed(1)
    obj.draw_generator = torch.Generator().manual_seed(2)
    times: dict[str, list[float]] = {p: [] for p in PARTS}

    def step() -> None:
        t0 = time.perf_counter()
        idx = torch.randint(0, len(data.train_index), (batch_size,), generator=g)
        images = data.images[idx]
        with torch.no_grad():
            plain = views.plain(images)
            made = views(images, obj.num_global_views, obj.num_local_views, g)
        if channels_last:
            made = [v.contiguous(memory_format=torch.channels_last) for v in made]
        batch = Batch(views=made, images=images, indices=idx, labels=data.labels[idx], captions=None, plain=plain)
        t1 = time.perf_counter()
        obj.train()
        with autocast(device, dtype):
            loss = obj(batch, 0.5).loss.float()
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        obj.after_step(0.5)
        t5 = time.perf_counter()
        for part, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            times[part].append(dt)

    sizes = obj.backbone.describe() if hasattr(obj.backbone, "describe") else backbone
    label = name + "".join(f", {k} {v}" for k, v in (objective or {}).items())
    method = _Method(label, backbone, sizes, batch_size, step)
    method.times = times
    return method


def bench_methods(methods: Sequence[tuple] = DEFAULT_METHODS, batch_size: int = 128, image_size: int = 32,
                  seconds: float = 5.0, warmup: int = 1) -> list[dict]:
    """One row per (method, backbone): ``images_per_s``, ``seconds_per_step`` and each part's share of the step.

    ``methods``: (objective, backbone) pairs, or (objective, backbone, {objective setting: value}) to time a
    variant beside the default.  Each gets ``seconds`` of timed steps (at least 2), after ``warmup`` untimed ones.
    """
    runs = [_make_method(m[0], m[1], batch_size, image_size, objective=m[2] if len(m) > 2 else None) for m in methods]
    for r in runs:
        for _ in range(warmup):
            r.step()
        for v in r.times.values():
            v.clear()
    while True:
        pending = [r for r in runs if r.timed < seconds or len(r.times["forward"]) < 2]
        if not pending:
            break
        for r in pending:
            r.step()
    rows = []
    for r in runs:
        n = len(r.times["forward"])
        per_step = r.timed / n
        rows.append({"method": r.name, "backbone": r.describe, "batch_size": r.batch_size, "steps": n,
                     "seconds_per_step": per_step, "images_per_s": r.batch_size / per_step,
                     "shares": {p: sum(r.times[p]) / r.timed for p in PARTS}})
    return rows


def methods_table(rows: list[dict]) -> list[str]:
    """Markdown lines for ``ssl-studio bench``."""
    lines = ["## Training step per method (the trainer's step on random 32x32 images, default settings)", "",
             "Timed in round-robin; a share is that part's time over the whole step.", "",
             "| method | backbone | batch | images/s | s/step | " + " | ".join(PARTS) + " |",
             "|---|---|---:|---:|---:|" + "---:|" * len(PARTS)]
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][p]:.0f} %" for p in PARTS)
        lines.append(f"| {r['method']} | {r['backbone']} | {r['batch_size']} | {r['images_per_s']:,.0f} | {r['seconds_per_step']:.3f} | {shares} |")
    return lines + [""]


__all__ = ["DEFAULT_METHODS", "PARTS", "bench_methods", "methods_table"]
