"""What a periodic checkpoint costs, per backbone, against the interval the trainer writes them at.

A run killed with ``kill -9`` loses the work since its last checkpoint, so checkpoints
come every ``trainer.CHECKPOINT_EVERY_S`` seconds of training; each one stops training
while the model, optimiser and sampler state are serialised, written to a temporary
file, synced and renamed (``RunFolder.save_checkpoint``).  This measures exactly that
call, through a real ``Trainer`` after one optimiser step (so the optimiser holds its
momentum buffers), and reports its share of the interval: the training time periodic
checkpoints cost.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ssl_studio.config import config_from_mapping


def bench_checkpoint(backbones: tuple[str, ...] = ("convnet", "resnet18", "vit"), repeats: int = 5,
                     objective: str = "simclr", out: str | Path | None = None, num_images: int = 2000) -> list[dict[str, Any]]:
    """One row per backbone: parameters, checkpoint size, median seconds per checkpoint, overhead at the interval."""
    from ssl_studio.engine import trainer as trainer_module
    from ssl_studio.engine.trainer import Trainer

    interval = trainer_module.CHECKPOINT_EVERY_S
    rows = []
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for backbone in backbones:
            cfg = config_from_mapping({
                "objective": {"name": objective}, "model": {"backbone": backbone},
                "data": {"source": "shapes", "num_images": num_images}, "batch_size": 32, "budget": {"steps": 1},
                "probe": {"every": 0, "size": 64, "visuals_every": 0}, "device": "cpu", "precision": "float32",
                "out": tmp,
            })
            trainer = Trainer(cfg)
            try:
                trainer._setup()
                trainer._train_step(0.0)  # the optimiser's state exists from the first step on
                trainer.step = 1
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    trainer._checkpoint()
                    times.append(time.perf_counter() - t0)
                size = trainer.folder.checkpoint_path.stat().st_size
                params = sum(p.numel() for p in trainer.objective.parameters())
            finally:
                if trainer.lock is not None:
                    trainer.lock.release()
                if trainer.folder is not None:
                    trainer.folder.close()
            seconds = statistics.median(times)
            rows.append({"backbone": backbone, "parameters": params, "size_mb": size / 2**20, "seconds": seconds,
                         "interval_s": interval, "overhead": seconds / interval})
    return rows


def checkpoint_table(rows: list[dict[str, Any]]) -> list[str]:
    interval = rows[0]["interval_s"] if rows else 0
    lines = [f"## Checkpoint cost (SimCLR, every {interval:g} s of training: a kill -9 loses at most that much)", "",
             "| backbone | parameters | last.pt MB | ms per checkpoint | share of training time |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['parameters']:,} | {r['size_mb']:.1f} | {r['seconds'] * 1000:,.0f} | {r['overhead']:.2%} |")
    return lines + [""]
