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
from ssl_studio.regular_file import read_regular


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


TEXT_OBJECTIVES = ("causal-lm", "masked-lm")


def read_text_run(run_dir):
    """(run folder, config) of a causal-lm or masked-lm run; refused in one sentence for anything else."""
    folder = RunFolder(run_dir, create=False)
    if not folder.path.is_dir():
        raise ConfigError("", f"Run folder {folder.path} does not exist; pass a text run's folder (under runs/ by default).")
    if not folder.config_path.exists():
        raise ConfigError("", f"{folder.path} is not a run folder (it has no config.toml); pass a text run's folder.")
    cfg = folder.read_config()
    if cfg.objective.name not in TEXT_OBJECTIVES:
        raise ConfigError("", f"{folder.path} is a {cfg.objective.name} run on {cfg.data.source}, not a text run; "
                              "ask a causal-lm or masked-lm run.")
    return folder, cfg


def load_text_model(run_dir, device: str = "cpu"):
    """(TextTransformer in eval mode with its tokenizer, objective name) of a text run's last checkpoint.

    The network is rebuilt from config.toml and the run's tokenizer.json, so the text is not read and no
    tokenizer learned again; a run without a readable tokenizer.json learns it from its data as training did.
    """
    from ssl_studio.data.text import TextSet
    from ssl_studio.engine.build import _text_backbone
    from ssl_studio.models.text_tokenizers import tokenizer_from_json

    folder, cfg = read_text_run(run_dir)
    ckpt = folder.load_checkpoint()
    mismatch = checkpoint_mismatch(ckpt.get("config"), cfg, folder.path)
    if mismatch is not None:
        raise mismatch
    try:
        tokenizer = tokenizer_from_json(read_regular(folder.path / "tokenizer.json").decode("utf-8"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # a pipe or device is an OSError too
        data = load_data(cfg)
        if not isinstance(data, TextSet):  # pragma: no cover - a text objective on images is refused at training
            raise ConfigError("", f"{folder.path} did not train on text; ask a causal-lm or masked-lm run.")
        tokenizer = data.tokenizer

    class _Shape:  # what the backbone builder reads of a text set
        resolution = cfg.data.resolution

    _Shape.tokenizer = tokenizer
    backbone = _text_backbone(cfg, _Shape)
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in ckpt["objective"].items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        changed = changed_settings(ckpt.get("config"), cfg)
        since = f" (changed since it was saved: {'; '.join(changed[:4])})" if changed else ""
        raise ConfigError("", f"The checkpoint of {folder.path} does not fit the model its config.toml and tokenizer.json "
                              f"describe{since}; restore them or train a new run.") from exc
    backbone.requires_grad_(False)
    return backbone.to(pick_device(device)).eval(), cfg.objective.name


__all__ = ["TEXT_OBJECTIVES", "load_text_model", "load_trained", "read_text_run", "reconstruction_from_run"]
