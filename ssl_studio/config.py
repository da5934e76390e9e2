"""The run configuration: plain dataclasses, TOML in and out, validation with field paths.

One ``RunConfig`` fully describes a run; the run folder's ``config.toml`` is this
object written out, and ``ssl-studio train --config`` reads it back, so any run can
be repeated exactly.  The objective's own hyper-parameters live in
``[objective]`` beside its name and are validated against that objective's
``Params`` dataclass (see ``ssl_studio.objectives``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_studio.models import BACKBONES
from ssl_studio.objectives import all_objectives, get_objective
from ssl_studio.objectives.base import ENGINE_ABLATIONS
from ssl_studio.params import ConfigError, from_mapping, param, short_repr, to_mapping, validate
from ssl_studio.regular_file import read_regular, special_kind

OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bf16")

# Every ablation switch the lab knows, with what breaking it is expected to do.
# Objectives declare the subset they implement (``honours``); the engine implements ENGINE_ABLATIONS for
# every objective and refuses the others.
ABLATIONS: dict[str, str] = {
    "no_augmentation": "Both views are the same un-augmented image: the invariance task becomes trivial and features stop carrying semantics.",
    "no_projector": "Embeddings are taken straight from the backbone: the loss shapes the representation itself and evaluation accuracy usually drops.",
    "no_predictor": "The asymmetric predictor is removed: without it a negative-free method has nothing that prevents the constant solution.",
    "no_stop_gradient": "Gradients flow into the target branch too: the two branches can agree trivially and the representation collapses to a constant.",
    "no_ema": "The target network is the online network itself (momentum 0): self-distillation loses its slowly moving teacher.",
    "no_temperature": "Plain dot products with temperature 1: logits are too flat to separate hard negatives and learning slows or stalls.",
    "no_centering": "The teacher's outputs are not centred: one prototype dominates and every image maps to it (collapse to one dimension).",
    "no_sharpening": "Teacher temperature equals the student's: targets become uniform and the representation collapses to the uniform distribution.",
    "no_variance": "The variance term is dropped: nothing keeps embeddings spread out and they shrink to a point.",
    "no_covariance": "The decorrelation (off-diagonal) term is dropped: dimensions become copies of each other (dimensional collapse).",
    "no_noise": "The denoising autoencoder's input is not corrupted: it can learn to copy its input instead of features.",
    "tiny_batch": "The batch is cut to 16 images: fewer negatives or noisier statistics per step.",
}
TINY_BATCH = 16


@dataclass
class DataConfig:
    source: str = param("shapes", help="Where images come from: shapes, digits, folder:PATH or cifar:PATH; "
                        "text:builtin or text:PATH for the text lab.")
    resolution: int = param(32, help="Images are resized to this square size when loaded.", min=8, max=512, unit="px")
    val_fraction: float = param(0.1, help="Share of images held out for evaluation (seeded, stratified by class).", min=0.0, max=0.9)
    num_images: int = param(12000, help="How many images the procedural shapes source draws.", min=16, max=1_000_000)
    limit: int = param(0, help="Use at most this many images of a folder or CIFAR source (0 = all).", min=0)
    held_out: list[str] = param(default_factory=list, help="Colour-shape pairs never shown in training, e.g. red-triangle (shapes only).")
    backgrounds: list[str] = param(default_factory=list, help="Background textures the shapes source draws from, e.g. plain; empty draws all six "
                                   "(plain, striped, checkered, noisy, gradient, dotted). Shapes only.")
    fixed_background: bool = param(False, help="Draw every background in the same greys (mid-grey, textures in a darker grey) instead of "
                                   "random colours, so the background no longer tells one image from another; with backgrounds = plain "
                                   "only the object does. Shapes only.")


@dataclass
class AugmentConfig:
    """Defaults follow SimCLR's CIFAR-10 recipe (Chen et al. 2020, appendix B.9)."""

    crop_scale_min: float = param(0.2, help="Smallest area share of a random resized crop.", min=0.01, max=1.0)
    crop_scale_max: float = param(1.0, help="Largest area share of a random resized crop.", min=0.01, max=1.0)
    crop_ratio_min: float = param(3 / 4, help="Smallest aspect ratio of a crop.", min=0.1, max=10.0)
    crop_ratio_max: float = param(4 / 3, help="Largest aspect ratio of a crop.", min=0.1, max=10.0)
    flip_p: float = param(0.5, help="Probability of a horizontal flip.", min=0.0, max=1.0)
    jitter_p: float = param(0.8, help="Probability of applying colour jitter.", min=0.0, max=1.0)
    brightness: float = param(0.4, help="Brightness jitter strength.", min=0.0, max=1.0)
    contrast: float = param(0.4, help="Contrast jitter strength.", min=0.0, max=1.0)
    saturation: float = param(0.4, help="Saturation jitter strength.", min=0.0, max=1.0)
    hue: float = param(0.1, help="Hue jitter strength (fraction of the colour wheel).", min=0.0, max=0.5)
    grayscale_p: float = param(0.2, help="Probability of converting a view to grayscale.", min=0.0, max=1.0)
    colour_mix_p: float = param(0.0, help="Probability that a view's colours are turned by a random rotation or reflection of the RGB cube "
                                          "about mid-grey, so two views agree on edges and shapes but on no colour or brightness "
                                          "(a 1x1 random convolution, Xu et al. 2021 RandConv, kept orthogonal).", min=0.0, max=1.0)
    blur_p: list[float] = param(default_factory=lambda: [0.0, 0.0], help="Gaussian blur probability for view 1, view 2 (BYOL: 1.0, 0.1).", min=0.0, max=1.0)
    blur_sigma_min: float = param(0.1, help="Smallest blur sigma, in pixels at 224 px, scaled to the resolution.", min=0.0)
    blur_sigma_max: float = param(2.0, help="Largest blur sigma, in pixels at 224 px, scaled to the resolution.", min=0.0)
    solarize_p: list[float] = param(default_factory=lambda: [0.0, 0.0], help="Solarisation probability for view 1, view 2 (BYOL: 0.0, 0.2).", min=0.0, max=1.0)
    local_crops: int = param(0, help="Local crops for views made outside an objective (preview, benchmarks); SwAV and DINO set their own count.", min=0, max=12)
    local_size: int = param(16, help="Side of a local crop.", min=4, max=256, unit="px")
    local_scale_min: float = param(0.05, help="Smallest area share of a local crop.", min=0.01, max=1.0)
    local_scale_max: float = param(0.4, help="Largest area share of a local crop.", min=0.01, max=1.0)


@dataclass
class ModelConfig:
    backbone: str = param("convnet", help="Feature extractor trained by the objective.", choices=BACKBONES)
    width: int = param(0, help="Base channel width (ViT: embedding width 3x this); 0 takes the backbone's own default: "
                               "ConvNet 32, ResNet-18 64, ViT 32 (embedding 96).", min=0, max=1024)
    registers: int = param(0, help="ViT only: learnable register tokens that join the sequence and are dropped at the output "
                                   "(Darcet et al. 2024, 'Vision Transformers Need Registers'; DINOv2 uses 4).", min=0, max=16)
    depth: int = param(0, help="ViT only: Transformer blocks; 0 takes the ViT's default (6).", min=0, max=24)
    patch_size: int = param(0, help="ViT only: side of a patch in pixels (it must divide data.resolution); 0 takes the ViT's "
                                    "default (resolution / 8, an 8x8 grid of patches).", min=0, max=512, unit="px")
    init_from: str = param("", help="A run folder whose trained backbone this run starts from (e.g. an MAE run before DINO); "
                                    "empty starts from random weights. Backbone, width, depth, registers and resolution must match that run's.")


@dataclass
class OptimConfig:
    """Unset values take the objective's published recommendation (see each objective)."""

    optimizer: str | None = param(None, help="Optimiser; unset takes the objective's recommendation.", choices=OPTIMIZERS)
    lr: float | None = param(None, help="Peak learning rate for batch 256 (scaled linearly with the batch size); unset takes the objective's.", min=0.0, min_exclusive=True, unit="per 256 images")
    weight_decay: float | None = param(None, help="Weight decay; unset takes the objective's recommendation.", min=0.0)
    momentum: float = param(0.9, help="SGD/LARS momentum.", min=0.0, max=0.999)
    warmup_fraction: float = param(0.05, help="Share of the budget spent on linear warm-up.", min=0.0, max=0.5)
    schedule: str = param("cosine", help="Learning-rate schedule after warm-up.", choices=SCHEDULES)
    grad_clip: float = param(0.0, help="Clip the gradient norm at this value (0 = off).", min=0.0)


@dataclass
class BudgetConfig:
    """Exactly one of minutes, epochs, steps is set; minutes is measured wall-clock training time."""

    minutes: float | None = param(None, help="Train for this much wall-clock time.", min=0.0, min_exclusive=True, unit="min")
    epochs: float | None = param(None, help="Train for this many passes over the training images.", min=0.0, min_exclusive=True)
    steps: int | None = param(None, help="Train for this many optimiser steps.", min=1)


@dataclass
class ProbeConfig:
    every: int = param(50, help="Run the diagnostics probe every this many steps (0 = only at the end).", min=0)
    size: int = param(1000, help="Number of held-out images the probe embeds.", min=16, max=20000)
    knn_k: int = param(20, help="Neighbours used by the online k-NN accuracy.", min=1, max=200)
    visuals_every: int = param(50, help="Produce objective visuals (attention maps, reconstructions, ...) at step 0, every this many "
                                   "steps (as the probe) and at the end (0 = only at the end).", min=0)


@dataclass
class ObjectiveConfig:
    """The objective's name; its hyper-parameters sit beside it in the same TOML table."""

    name: str = "simclr"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    ablations: list[str] = field(default_factory=list)
    # 128, not the papers' 256+: on a 2-core CPU a step's cost grows with the batch, and
    # side-by-side 5-minute SimCLR runs learned as much or more per minute at 128 (see models/convnet.py).
    batch_size: int = param(128, help="Images per optimiser step.", min=2, max=65536)
    seed: int = param(0, help="Seed for data split, initialisation and augmentation.", min=0, max=2**31 - 1)
    device: str = param("auto", help="Where to train: auto picks CUDA, then MPS, then CPU.", choices=DEVICES)
    precision: str = param("auto", help="bf16 autocast or float32; auto picks what is faster on the device.", choices=PRECISIONS)
    channels_last: bool | None = param(None, help="Use the channels-last memory format; unset picks what is faster.")
    out: str = param("runs", help="Folder under which run folders are created.")
    name: str = param("", help="Optional label added to the run folder's name.")
    workers: int = param(0, help="Threads for PyTorch (0 = all cores).", min=0, max=1024)

    def validated(self) -> "RunConfig":
        validate_config(self)
        return self


def validate_config(cfg: RunConfig) -> None:
    """Check ranges, cross-field rules, the objective's parameters and the ablations."""
    validate(cfg)
    b = cfg.budget
    set_budgets = [n for n in ("minutes", "epochs", "steps") if getattr(b, n) is not None]
    if len(set_budgets) > 1:
        raise ConfigError("budget", f"must set only one of minutes, epochs, steps, got {', '.join(set_budgets)}")
    if not cfg.out.strip():  # an empty path is the current folder: run folders would land wherever the command ran
        raise ConfigError("out", "is empty; name the folder under which run folders are made (default runs)")
    a = cfg.augment
    if a.crop_scale_min > a.crop_scale_max:
        raise ConfigError("augment.crop_scale_min", f"must be <= augment.crop_scale_max ({a.crop_scale_max:g}), got {a.crop_scale_min:g}")
    if a.crop_ratio_min > a.crop_ratio_max:
        raise ConfigError("augment.crop_ratio_min", f"must be <= augment.crop_ratio_max ({a.crop_ratio_max:g}), got {a.crop_ratio_min:g}")
    if a.local_scale_min > a.local_scale_max:
        raise ConfigError("augment.local_scale_min", f"must be <= augment.local_scale_max ({a.local_scale_max:g}), got {a.local_scale_min:g}")
    for name in ("blur_p", "solarize_p"):
        if len(getattr(a, name)) != 2:
            raise ConfigError(f"augment.{name}", f"must list two probabilities (view 1, view 2), got {getattr(a, name)!r}")
    src = cfg.data.source
    text = src.startswith(("text:", "text-chars:"))  # token windows: model.width and model.depth size the text Transformer
    if not (src in ("shapes", "digits") or src.startswith("folder:") or src.startswith("cifar:") or text):
        raise ConfigError("data.source", f"must be shapes, digits, folder:PATH, cifar:PATH or text:PATH (text:builtin), got {src!r}")
    if cfg.model.registers and cfg.model.backbone != "vit":
        raise ConfigError("model.registers", f"only applies to the ViT, but model.backbone is {cfg.model.backbone!r}; set it to 0 or choose vit.")
    if cfg.model.patch_size and cfg.model.backbone != "vit":
        raise ConfigError("model.patch_size", f"only applies to the ViT, but model.backbone is {cfg.model.backbone!r}; set it to 0 or choose vit.")
    patch, side = cfg.model.patch_size, cfg.data.resolution
    if patch and not text and (patch < 2 or 2 * patch > side or side % patch):
        raise ConfigError("model.patch_size", f"must be at least 2 and split data.resolution ({side}) into a grid of at least 2x2 "
                                              f"whole patches, got {patch}; choose a divisor such as {_patch_hint(side)}, or 0.")
    if cfg.model.depth and cfg.model.backbone != "vit" and not text:
        raise ConfigError("model.depth", f"only applies to the ViT, but model.backbone is {cfg.model.backbone!r}; set it to 0 or choose vit.")
    objective_cls = get_objective(cfg.objective.name)  # raises ConfigError for an unknown name
    objective_cls.check_params(objective_cls.params_for(cfg.objective.params, cfg.model.backbone), cfg.model.backbone)
    for ab in cfg.ablations:
        if ab not in ABLATIONS:
            raise ConfigError("ablations", f"has unknown switch {ab!r} (known: {', '.join(ABLATIONS)})")
        if ab not in objective_cls.ablation_switches():
            allowed = ", ".join(sorted(objective_cls.ablation_switches()))
            raise ConfigError("ablations", f"switch {ab!r} does not apply to {objective_cls.name} (it honours: {allowed})")


def _patch_hint(resolution: int) -> str:
    divisors = [p for p in range(2, resolution // 2 + 1) if resolution % p == 0]
    return ", ".join(str(p) for p in divisors[:4]) if divisors else "another data.resolution"


def config_from_mapping(data: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from a TOML-shaped mapping, naming the path of any bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError("", f"A run configuration must be a table of settings, got {type(data).__name__}.")
    data = dict(data)
    objective_table = data.pop("objective", None)
    if objective_table is None:
        objective_table = {}
    if not isinstance(objective_table, Mapping):
        raise ConfigError("objective", "must be a table holding the objective's name and settings ([objective] with "
                                       f"name = \"simclr\" in a TOML file, or --objective simclr), got {short_repr(objective_table)}")
    objective_table = dict(objective_table)
    name = objective_table.pop("name", ObjectiveConfig().name)
    if not isinstance(name, str):
        raise ConfigError("objective.name", f"must be a string such as \"simclr\", got {short_repr(name)}")
    _pick_backbone_for(name, data)
    cfg = from_mapping(RunConfig, data, "")
    cfg.objective = ObjectiveConfig(name=name, params=objective_table)
    validate_config(cfg)
    cfg.objective.params = _typed_params(cfg)
    return cfg


def _pick_backbone_for(objective: str, data: dict[str, Any]) -> None:
    """An objective that runs on some backbones only gets the first of them when the mapping names none.

    Only where the person did not choose: a ``model.backbone`` they set that does not fit is refused by
    ``build_objective`` in one sentence, as before.
    """
    cls = all_objectives().get(objective)
    model = data.get("model", {})
    if cls is None or cls.backbones is None or not isinstance(model, Mapping) or "backbone" in model:
        return
    if ModelConfig().backbone not in cls.backbones:
        data["model"] = {**model, "backbone": cls.backbones[0]}


def _typed_params(cfg: RunConfig) -> dict[str, Any]:
    """The given objective settings as their declared types (a "0.5" from --set is written back as 0.5)."""
    parsed = get_objective(cfg.objective.name).params_for(cfg.objective.params, cfg.model.backbone)
    return {k: (list(v) if isinstance(v := getattr(parsed, k), tuple) else v) for k in cfg.objective.params}


# Settings that decide the network's shape: a checkpoint fits only a config that agrees on all of them.
ARCHITECTURE_FIELDS = ("objective.name", "model.backbone", "model.width", "model.depth", "model.patch_size", "model.registers",
                       "data.resolution")


def checkpoint_mismatch(stored: Mapping[str, Any] | None, cfg: RunConfig, run: str | Path) -> ConfigError | None:
    """The error to raise when a run's checkpoint was trained with another architecture than ``cfg`` says.

    ``stored`` is the config mapping saved inside the checkpoint; ``None`` (an older checkpoint) is taken as a match.
    """
    if not isinstance(stored, Mapping):
        return None
    current = config_to_mapping(cfg)
    defaults = config_to_mapping(RunConfig())
    for path in ARCHITECTURE_FIELDS:
        section, key = path.split(".")
        was = _lookup(stored, section, key, _lookup(defaults, section, key, None))
        now = _lookup(current, section, key, None)
        if was != now:
            setting = path.replace("objective.name", "objective").replace("model.", "").replace("data.", "")
            return ConfigError("", f"The checkpoint of {run} was trained with {setting} {_shown(was)} but its config.toml now says "
                                   f"{_shown(now)}; restore config.toml or start a new run.")
    return None


def changed_settings(stored: Mapping[str, Any] | None, cfg: RunConfig) -> list[str]:
    """``path: old -> new`` for every setting of ``cfg`` that differs from the checkpoint's stored config."""
    if not isinstance(stored, Mapping):
        return []
    current = config_to_mapping(cfg)
    out = []
    for section in sorted(set(stored) | set(current)):
        was, now = stored.get(section), current.get(section)
        if isinstance(was, Mapping) or isinstance(now, Mapping):
            was, now = dict(was) if isinstance(was, Mapping) else {}, dict(now) if isinstance(now, Mapping) else {}
            out += [f"{section}.{k}: {_shown(was.get(k))} -> {_shown(now.get(k))}"
                    for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        elif was != now:
            out.append(f"{section}: {_shown(was)} -> {_shown(now)}")
    return out


def _lookup(mapping: Mapping[str, Any], section: str, key: str, default: Any) -> Any:
    table = mapping.get(section)
    return table.get(key, default) if isinstance(table, Mapping) else default


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    return value if isinstance(value, str) and value and len(value) <= 40 else short_repr(value, 40)


def config_to_mapping(cfg: RunConfig) -> dict[str, Any]:
    data = to_mapping(cfg)
    objective = data.pop("objective")
    table = {"name": objective["name"], **objective.get("params", {})}
    return {"objective": table, **data}


def read_toml(path: str | Path, field: str = "") -> dict[str, Any]:
    """The mapping in a TOML file, or a ConfigError naming the file (and ``field``, e.g. --config) and what to do."""
    path = Path(path)
    what = "Config file" if not field else "file"
    if path.is_dir():
        raise ConfigError(field, f"{what} {path} is a folder; pass the path of a .toml file.")
    special = special_kind(path)
    if special is not None:
        raise ConfigError(field, f"{what} {path} is {special}, not a file; pass the path of a .toml file.")
    if not path.is_file():
        raise ConfigError(field, f"{what} {path} does not exist; pass the path of a .toml file.")
    try:
        raw = read_regular(path)
    except OSError as exc:
        raise ConfigError(field, f"{what} {path} cannot be read ({exc.strerror or exc}); check its permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(field, f"{what} {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                                 "save it as UTF-8.") from None
    if not text.strip():  # a run's config.toml is never empty: a truncated file must not become the defaults
        raise ConfigError(field, f"{what} {path} is empty; restore it or pass a file with the run's settings.")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(field, f"{what} {path} is not valid TOML ({exc}); fix that line or restore the file.") from None


def load_config(path: str | Path) -> RunConfig:
    """The RunConfig in a TOML file; a bad setting's error keeps its field and names the file."""
    data = read_toml(path)
    data.pop("preset", None)  # presets carry a description table the run does not use
    try:
        return config_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(exc.field, f"{exc.message.rstrip('.')} (in {path}).") from None


def save_config(cfg: RunConfig, path: str | Path, header: dict[str, Any] | None = None) -> None:
    """Write ``cfg`` as TOML atomically: a temporary file renamed over ``path``, removed on any error."""
    mapping = config_to_mapping(cfg)
    if header:
        mapping = {"preset": header, **mapping}
    text = dumps_toml(mapping)
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _toml_string(text: str) -> str:
    """A TOML basic string holding exactly ``text``: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(mapping: dict[str, Any]) -> str:
    """Write a two-level mapping (scalars, lists, tables of scalars) as TOML."""
    lines: list[str] = []
    tables = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        if lines:
            lines.append("")
        lines.append(f"[{key}]")
        for k, v in table.items():
            if isinstance(v, dict):
                raise TypeError(f"nested table {key}.{k} is not supported")
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    return dataclasses.replace(cfg, **changes)


__all__ = [
    "ABLATIONS",
    "ENGINE_ABLATIONS",
    "AugmentConfig",
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "ProbeConfig",
    "RunConfig",
    "changed_settings",
    "checkpoint_mismatch",
    "config_from_mapping",
    "config_to_mapping",
    "dumps_toml",
    "load_config",
    "read_toml",
    "save_config",
    "validate_config",
]
