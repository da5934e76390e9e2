"""A finished run folder's trained objective, rebuilt from its last checkpoint, and what is computed from it
(used by the evaluation protocols, the zero-shot scorer, studies and the window for runs opened from disk)."""

from __future__ import annotations

import numpy as np
import torch

from ssl_studio.config import changed_settings, checkpoint_mismatch
from ssl_studio.engine.build import build_objective, build_views, load_data
from ssl_studio.engine.device import pick_device
from ssl_studio.engine.events import Visuals
from ssl_studio.engine.runs import RunFolder
from ssl_studio.objectives.mae import MAE
from ssl_studio.params import ConfigError


def load_trained(run_dir, device: str = "auto"):
    """(config, imageset, objective in eval mode, view maker) rebuilt from a run folder's last checkpoint."""
    folder = RunFolder(run_dir, create=False)
    if not folder.config_path.exists():
        raise ConfigError("", f"{folder.path} is not a run folder (it has no config.toml); pass a folder under runs/.")
    cfg = folder.read_config()
    ckpt = folder.load_checkpoint()
    mismatch = checkpoint_mismatch(ckpt.get("config"), cfg, folder.path)  # say what changed, before any data is loaded
    if mismatch is not None:
        raise mismatch
    imageset = load_data(cfg)
    torch.manual_seed(cfg.seed)
    objective = build_objective(cfg, imageset, start_weights=False)  # the run's own checkpoint follows
    try:
        objective.load_state_dict(ckpt["objective"])
        objective.load_extra_state(ckpt.get("objective_extra", {}))
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:  # a setting that shapes the network changed
        changed = changed_settings(ckpt.get("config"), cfg)
        since = f" (changed since it was saved: {'; '.join(changed[:4])})" if changed else ""
        raise ConfigError("", f"The checkpoint of {folder.path} does not fit the run its config.toml describes{since}; "
                              "restore config.toml or start a new run.") from exc
    dev = pick_device(device if device != "auto" else cfg.device)
    objective.to(dev).eval()
    return cfg, imageset, objective, build_views(cfg, imageset), dev, folder, ckpt["step"]


def reconstruction_from_run(run_dir, mask_ratio: float | None, seed: int, num_images: int = 16, device: str = "cpu"):
    """A ``Visuals(kind="reconstruction")`` event for a *finished* run folder: its last checkpoint,
    its first ``num_images`` probe images, under a mask of ``mask_ratio`` drawn from ``seed``.

    What the window calls when the reconstruction panel asks for a new mask and no trainer is
    live (a run opened from disk); a live run answers the same request with ``MAE.reconstruct``.
    """
    cfg, data, objective, views, dev, _folder, step = load_trained(run_dir, device)
    if not isinstance(objective, MAE):
        raise ValueError(f"{run_dir} is a {cfg.objective.name} run; only MAE runs have reconstructions")
    pool = data.val_index if len(data.val_index) else data.train_index
    index = pool[: min(cfg.probe.size, len(pool))][:num_images]
    images = views.plain(data.images[index].to(dev))
    payload = objective.reconstruct(images, mask_ratio, seed)
    arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
    info = {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}
    info["requested"] = True
    return Visuals(step=int(step), kind="reconstruction", arrays=arrays, info=info)


__all__ = ["load_trained", "reconstruction_from_run"]
