"""Evaluation protocols on frozen features: k-NN now, the linear probe and fine-tuning beside it.

Every protocol embeds with the objective's ``embed`` (backbone features) on
un-augmented images and never touches the run's own weights.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

KNN_TEMPERATURE = 0.1  # the weighting used by the reference numbers in shared/data/README.md


@torch.no_grad()
def embed_images(embed: Callable[[torch.Tensor], torch.Tensor], images_uint8: torch.Tensor, to_input: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int = 512, device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Features of uint8 images, batched, on ``device``; returned as float32 on the CPU."""
    out = []
    device = torch.device(device)
    for start in range(0, len(images_uint8), batch_size):
        x = to_input(images_uint8[start:start + batch_size].to(device, non_blocking=True))
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                f = embed(x)
        else:
            f = embed(x)
        out.append(f.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor, k: int = 20,
                temperature: float = KNN_TEMPERATURE, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN (Wu et al. 2018, §3.4): cosine neighbours vote with weight exp(sim / t)."""
    if len(train_features) == 0:
        raise ValueError("k-NN needs at least one labelled training image")
    num_classes = int(num_classes or int(train_labels.max()) + 1)
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    preds = []
    for start in range(0, len(query_features), chunk):
        q = F.normalize(query_features[start:start + chunk].float(), dim=1)
        sim = q @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_features, train_labels, query_features, query_labels, k: int = 20, temperature: float = KNN_TEMPERATURE,
                 num_classes: int | None = None) -> float:
    pred = knn_predict(train_features, train_labels, query_features, k=k, temperature=temperature, num_classes=num_classes)
    return float((pred == query_labels).float().mean())


def knn_protocol(train_features, train_labels, val_features, val_labels, num_classes: int, ks=(5, 20)) -> dict:
    """The k-NN protocol as reported in report.json: one accuracy per k, its settings and its cost."""
    t0 = time.perf_counter()
    result = {f"k{k}": knn_accuracy(train_features, train_labels, val_features, val_labels, k=k, num_classes=num_classes) for k in ks}
    result.update({"temperature": KNN_TEMPERATURE, "metric": "cosine", "train_images": len(train_features),
                   "val_images": len(val_features), "seconds": time.perf_counter() - t0})
    return result


def load_trained(run_dir, device: str = "auto"):
    """(config, imageset, objective in eval mode, view maker) rebuilt from a run folder's last checkpoint."""
    from ssl_studio.engine.build import build_objective, build_views, load_data
    from ssl_studio.engine.device import pick_device
    from ssl_studio.engine.runs import RunFolder

    folder = RunFolder(run_dir, create=False)
    if not folder.config_path.exists():
        from ssl_studio.params import ConfigError

        raise ConfigError("", f"{folder.path} is not a run folder (it has no config.toml); pass a folder under runs/.")
    cfg = folder.read_config()
    ckpt = folder.load_checkpoint()
    imageset = load_data(cfg)
    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, imageset)
    objective.load_state_dict(ckpt["objective"])
    objective.load_extra_state(ckpt.get("objective_extra", {}))
    dev = pick_device(device if device != "auto" else cfg.device)
    objective.to(dev).eval()
    return cfg, imageset, objective, build_views(cfg, imageset), dev, folder, ckpt["step"]


def evaluate_run(run_dir, protocols=("knn",), device: str = "auto", progress=None) -> dict:
    """Evaluate a run's last checkpoint by each protocol and merge the results into its report.json."""
    from ssl_studio.engine.device import pick_precision
    from ssl_studio.params import ConfigError

    cfg, data, objective, views, dev, folder, step = load_trained(run_dir, device)
    if data.labels is None or len(data.val_index) == 0:
        raise ConfigError("data.source", f"{cfg.data.source!r} has no labels or no held-out images, so it cannot be evaluated by {', '.join(protocols)}")
    autocast_dtype = pick_precision(cfg.precision, dev)
    train_feats = embed_images(objective.embed, data.images[data.train_index], views.plain, device=dev, autocast_dtype=autocast_dtype)
    val_feats = embed_images(objective.embed, data.images[data.val_index], views.plain, device=dev, autocast_dtype=autocast_dtype)
    results: dict = {"step": step}
    for name in protocols:
        if name == "knn":
            results["knn"] = knn_protocol(train_feats, data.labels[data.train_index], val_feats, data.labels[data.val_index], data.num_classes)
        else:
            raise ConfigError("protocols", f"has unknown protocol {name!r} (known: knn)")
        folder.write_report(name, results[name])
    return results
