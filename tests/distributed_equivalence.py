"""N processes against one, for every objective: the cases, the steps, and the worker ``test_distributed`` starts.

Each case trains a tiny model (ConvNet width 8 or ViT width 8, 16 px, global batch 8) for a few SGD steps on
fixed views built here, so view randomness is out of the comparison.  In a process group the batch is split by
rank exactly as the trainer splits it (``distributed.shard``), the objective is wrapped as the trainer wraps it
(``distributed.wrap``: DDP) and every BatchNorm is synchronised (``distributed.convert_batchnorm``) for every
objective, including those whose recipe keeps BN per rank (MoCo v2, CLIP, the supervised baseline): per-rank BN
cannot equal full-batch BN.  Plain momentum SGD, because an adaptive optimiser (LARS, AdamW) would hide a
gradient that is off by a constant factor.

Run as a script, it is one rank of the group: ``python distributed_equivalence.py RANK WORLD PORT OUT_DIR``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch

STEPS = 5
LR = 0.01
# Barlow Twins' loss starts near 34 with gradients ~100x the others' (its recipe is LARS, which normalises
# them): plain SGD at 0.01 is chaotic there (a 1e-7 change of the weights grows to 1e-3 in 5 steps).
# And tiny ReLU/max-pool networks have knife edges: a unit within rounding of its kink flips, and the next
# gradient jumps (measured in ONE process: weights changed by 1e-7 moved MoCo v3's step-4 gradient by 10 %
# at lr 0.01).  The rates here are ones where four such perturbations left every case within tolerance.
LR_FOR = {"barlow": 1e-4, "mocov3": 0.005}
BATCH = 8
RESOLUTION = 16
LOCAL_SIZE = 8  # ViT local crops (4x4 patches); the ConvNet needs 16 px, so its local crops are full size

# Small heads so every case costs milliseconds a step; a key applies where the objective has that parameter.
SMALL = {"proj_hidden": 64, "proj_dim": 32, "pred_hidden": 32, "hidden_dim": 64, "bottleneck_dim": 32, "out_dim": 64,
         "num_prototypes": 16, "embed_dim": 32, "text_width": 32, "text_layers": 1, "text_heads": 2, "decoder_dim": 32,
         "decoder_depth": 1, "decoder_heads": 2, "predictor_depth": 1}
# Options with code paths of their own under torchrun, beside every registered objective at its defaults.
EXTRA = {
    "mocov2-small-queue": ("mocov2", {"queue_size": 12}),
    "swav-queue": ("swav", {"queue_size": 16, "queue_start": 0.0}),
    "dino-sinkhorn-koleo": ("dino", {"teacher_centering": "sinkhorn", "koleo_loss_weight": 0.1}),
    "ibot-vit": ("dino", {"ibot_loss_weight": 1.0, "local_crops": 2, "backbone": "vit"}),
    "siglip-word-dropout": ("clip", {"loss": "siglip", "word_dropout": 0.3}),
}


def cases() -> dict[str, tuple[str, dict]]:
    """Every objective of the registry at its defaults, then the extra options."""
    from ssl_studio.objectives import all_objectives

    out = {name: (name, {}) for name, cls in all_objectives().items() if cls.modality == "images"}  # text runs: not yet checked here
    out.update(EXTRA)
    return out


def _imageset():
    from ssl_studio.data import ImageSet

    g = torch.Generator().manual_seed(0)
    n = 32
    labels = torch.arange(n) % 4
    names = ["circle", "square", "triangle", "star"]
    colours = ["red", "blue"]
    captions = [f"a {colours[i % 2]} {names[int(labels[i])]}" for i in range(n)]  # repeats: CLIP's duplicate-caption path
    images = torch.randint(0, 256, (n, 3, RESOLUTION, RESOLUTION), dtype=torch.uint8, generator=g)
    return ImageSet(name="fixed", images=images, labels=labels, class_names=names, captions=captions, masks=None,
                    train_index=torch.arange(n), val_index=torch.arange(n))


def build(case: str):
    """(objective, optimiser, global batches) for ``case``, seeded as the trainer seeds a run."""
    from ssl_studio.config import config_from_mapping
    from ssl_studio.engine.build import build_objective
    from ssl_studio.engine.optim import build_optimizer
    from ssl_studio.objectives import Batch, get_objective

    name, options = cases()[case]
    options = dict(options)
    cls = get_objective(name)
    backbone = options.pop("backbone", "vit" if cls.backbones == ("vit",) else "convnet")
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    params = {k: v for k, v in {**SMALL, **options}.items() if k in fields}
    cfg = config_from_mapping({"objective": {"name": name, **params}, "model": {"backbone": backbone, "width": 8, "depth": 2 if backbone == "vit" else 0},
                               "data": {"resolution": RESOLUTION}, "batch_size": BATCH, "seed": 0})
    data = _imageset()
    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, data)
    objective.draw_generator = torch.Generator().manual_seed(cfg.seed + 4)
    optimizer = build_optimizer("sgd", objective.parameter_groups(1e-4), LR_FOR.get(case, LR), 0.9)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(STEPS):
        idx = torch.randperm(len(data), generator=g)[:BATCH]
        views = [torch.randn(BATCH, 3, RESOLUTION, RESOLUTION, generator=g) for _ in range(objective.num_global_views)]
        local = LOCAL_SIZE if backbone == "vit" else RESOLUTION
        views += [torch.randn(BATCH, 3, local, local, generator=g) for _ in range(objective.num_local_views)]
        batches.append(Batch(views=views, images=data.images[idx], indices=idx, labels=data.labels[idx],
                             captions=[data.captions[i] for i in idx.tolist()], plain=torch.randn(BATCH, 3, RESOLUTION, RESOLUTION, generator=g)))
    return objective, optimizer, batches


def my_share(batch):
    """This rank's rows of a global batch: the trainer's ``distributed.shard`` on every field."""
    from ssl_studio.engine import distributed
    from ssl_studio.objectives import Batch

    rows = distributed.my_rows(batch.images.shape[0] // distributed.world_size())
    return Batch(views=[v[rows] for v in batch.views], images=batch.images[rows], indices=batch.indices[rows],
                 labels=batch.labels[rows], captions=batch.captions[rows], plain=batch.plain[rows])


def run(case: str) -> dict:
    """Loss and gradients of step 1, and the whole state after ``STEPS`` optimiser steps."""
    from ssl_studio.engine import distributed

    objective, optimizer, batches = build(case)
    if distributed.is_distributed():
        distributed.convert_batchnorm(objective)  # every objective here: see the module doc
    model = distributed.wrap(objective, torch.device("cpu"))
    result: dict = {}
    for step, batch in enumerate(batches):
        progress = step / STEPS
        objective.train()
        out = model(my_share(batch), progress)
        loss = distributed.mean_over_ranks(out.loss.detach().float())
        result.setdefault("losses", []).append(float(loss))
        optimizer.zero_grad(set_to_none=True)
        out.loss.float().backward()
        if os.environ.get("SSL_STUDIO_DEBUG"):
            result.setdefault("steps", []).append({n: p.grad.detach().clone() for n, p in objective.named_parameters() if p.grad is not None})
        if step == 0:
            result["loss"] = loss.clone()
            result["grads"] = {n: p.grad.detach().clone() for n, p in objective.named_parameters() if p.grad is not None}
        optimizer.step()
        objective.after_step(progress)
    result["state"] = {k: v.detach().clone() for k, v in objective.state_dict().items()}
    return result


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: join the group once and run every case, one result file per case."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    only = [c for c in os.environ.get("SSL_STUDIO_CASES", "").split(",") if c]  # to rerun a few cases by hand
    try:
        for case in (only or cases()):
            try:
                result = run(case)
            except Exception as exc:  # noqa: BLE001 - the parent reports it per case
                result = {"error": f"{type(exc).__name__}: {exc}"}
                torch.save(result, Path(out_dir) / f"{case}-rank{rank}.pt")
                raise
            torch.save(result, Path(out_dir) / f"{case}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
