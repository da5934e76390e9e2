"""Turning a RunConfig into live objects: the one place the trainer, evaluation and the GUI share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_studio.config import TINY_BATCH, AugmentConfig, RunConfig
from ssl_studio.data import ImageSet, augment_defaults, load_imageset
from ssl_studio.data.imageset import printable
from ssl_studio.data.views import ViewMaker
from ssl_studio.engine.prompts import default_templates
from ssl_studio.engine.runs import RunFolder
from ssl_studio.models import DEFAULT_DEPTH, DEFAULT_WIDTH, build_backbone
from ssl_studio.models.vit import default_patch_size
from ssl_studio.objectives import Objective, ObjectiveContext, get_objective
from ssl_studio.objectives.clip import class_captions
from ssl_studio.params import ConfigError


# The least data a run can mean something on; each refusal says which minimum and why.
MIN_TRAIN_IMAGES = TINY_BATCH  # one batch of the smallest size the lab trains with (the tiny_batch ablation)
MIN_HELD_OUT_IMAGES = 2  # the probe's mean cosine and spectrum compare images in pairs: one image gives NaN


def load_data(cfg: RunConfig, progress=None) -> ImageSet:
    """The run's images, refused in one sentence when no run on them could mean anything.

    Beyond what the source itself refuses: too few training or held-out images
    (MIN_TRAIN_IMAGES, MIN_HELD_OUT_IMAGES); labels an objective needs but the
    data lacks; a single class (label-free objectives still train on it, with
    its labels set aside so that no 1.000 accuracy is reported; see
    ``_set_one_class_aside``); captions an objective needs but most images lack.
    """
    imageset = load_imageset(cfg.data, seed=cfg.seed, progress=progress)
    objective_cls = get_objective(cfg.objective.name)
    _check_modality(cfg, imageset, objective_cls)
    _check_size(cfg, imageset)
    _set_one_class_aside(cfg, imageset, objective_cls)
    if objective_cls.needs_labels and imageset.labels is None:
        raise ConfigError("data.source", f"{cfg.data.source!r} has no class labels, which {objective_cls.title} needs; "
                          "use a folder with one sub-folder per class, or choose a self-supervised objective")
    if objective_cls.needs_captions and imageset.captions is None:
        if imageset.only_class is not None:
            raise ConfigError("data.source", f"{cfg.data.source!r} has no captions and only one class ({imageset.only_class}), and "
                              f"{objective_cls.title} needs captions or at least 2 classes to name; add captions.csv (columns "
                              "file,caption) or a .txt caption beside each image, or a sub-folder for each further class")
        if imageset.labels is None or not imageset.class_names:
            raise ConfigError("data.source", f"{cfg.data.source!r} has neither captions nor class labels, and {objective_cls.title} "
                              "needs one of them; add captions.csv (columns file,caption) or a .txt caption beside each image, "
                              "or sort the images into class sub-folders (their names become captions)")
        # classes but no captions: "a photo of a <class>", ...
        imageset.captions = class_captions(imageset.labels.tolist(), imageset.class_names, seed=cfg.seed)
    if objective_cls.needs_captions:
        _check_captions(cfg, imageset, objective_cls.title)
    return imageset


def _check_modality(cfg: RunConfig, imageset: ImageSet, objective_cls) -> None:
    """Text objectives train on text, the others on images: refused in one sentence otherwise."""
    if objective_cls.modality == imageset.modality:
        return
    if imageset.modality == "text":
        raise ConfigError("objective.name", f"{objective_cls.title} trains on images but data.source is {cfg.data.source!r} (text); "
                                            "choose causal-lm or masked-lm, or an image source")
    raise ConfigError("data.source", f"is {cfg.data.source!r} (images) but {objective_cls.title} trains on text; use text:builtin "
                                     "or text:PATH (a .txt file or a folder of them)")


def _check_size(cfg: RunConfig, imageset: ImageSet) -> None:
    n_train, n_val = len(imageset.train_index), len(imageset.val_index)
    limit = cfg.data.limit if 0 < cfg.data.limit else 0
    if n_train < MIN_TRAIN_IMAGES:
        fixes = ["add images"]
        if limit:
            fixes.append(f"raise data.limit (now {limit})")
        if cfg.data.val_fraction > 0 and len(imageset) >= MIN_TRAIN_IMAGES + MIN_HELD_OUT_IMAGES:
            fixes.append("lower data.val_fraction")
        raise ConfigError("data.source", f"{cfg.data.source!r} gives only {n_train} training image{'s' if n_train != 1 else ''}; at "
                          f"least {MIN_TRAIN_IMAGES} are needed to fill one batch of the smallest size the lab trains with; "
                          f"{' or '.join(fixes)}")
    if n_val < MIN_HELD_OUT_IMAGES:
        raise ConfigError("data.val_fraction", f"leaves only {n_val} held-out image{'s' if n_val != 1 else ''} of {cfg.data.source!r} "
                          f"to probe and evaluate on; at least {MIN_HELD_OUT_IMAGES} are needed, because the probe compares images in "
                          "pairs; raise data.val_fraction, or add images (to its test/ folder where it has one)")


def _set_one_class_aside(cfg: RunConfig, imageset: ImageSet, objective_cls) -> None:
    """A data set with labels of one class only: refused where labels are learnt from, else trained on without labels.

    Every label-based number on one class is 1.000 by construction (k-NN, linear probe,
    fine-tuning): it says nothing, so the labels are set aside (``only_class`` keeps the
    name for the sentences that explain it) while a label-free objective still trains;
    self-supervised learning on images of one kind is legitimate.
    """
    if imageset.labels is None or int(torch.unique(imageset.labels).numel()) >= 2:
        return
    present = int(imageset.labels[0]) if len(imageset.labels) else 0
    name = imageset.class_names[present] if imageset.class_names and present < len(imageset.class_names) else str(present)
    if objective_cls.needs_labels:
        raise ConfigError("data.source", f"{cfg.data.source!r} has only one class ({name}), and {objective_cls.title} learns to tell "
                          "classes apart; add a sub-folder of images for each further class, or choose a self-supervised objective")
    imageset.labels, imageset.class_names, imageset.only_class = None, None, name
    imageset.notes.append(f"{printable(cfg.data.source)} has only one class ({name}), so its images train without labels: k-NN, linear "
                          "and fine-tuning accuracy need at least 2 classes and are not measured.")


def _check_captions(cfg: RunConfig, imageset: ImageSet, title: str) -> None:
    """Refuse when most images would train on an empty caption; a note when some would."""
    captions = imageset.captions or []
    empty = sum(1 for c in captions if not c.strip())
    if not empty:
        return
    if 2 * empty > len(captions):
        raise ConfigError("data.source", f"{cfg.data.source!r} gives a caption to only {len(captions) - empty} of its {len(captions)} "
                          f"images, and {title} learns from captions; add rows to captions.csv (columns file,caption, file "
                          "relative to the folder) or a .txt caption beside each image")
    imageset.notes.append(f"{empty} of the {len(captions)} images of {printable(cfg.data.source)} have no caption and train with an empty one.")


def effective_batch_size(cfg: RunConfig, num_train: int) -> int:
    batch = TINY_BATCH if "tiny_batch" in cfg.ablations else cfg.batch_size
    return max(2, min(batch, num_train))


def _built_backbone(model, resolution: int) -> tuple:
    """What decides a backbone's weights: kind, width, depth and patch size (0 resolved to the backbone's default), registers, resolution."""
    vit = model.backbone == "vit"
    depth = (model.depth or DEFAULT_DEPTH) if vit else 0
    patch = (getattr(model, "patch_size", 0) or default_patch_size(resolution)) if vit else 0
    return model.backbone, model.width or DEFAULT_WIDTH.get(model.backbone, 64), depth, patch, model.registers, resolution


def pretrained_backbone_state(cfg: RunConfig, resolution: int) -> dict[str, torch.Tensor]:
    """The trained backbone weights of the run folder ``cfg.model.init_from``.

    Only the backbone carries over (its ``backbone.*`` entries in the run's last checkpoint);
    heads, predictors, decoders and optimiser state start fresh, as when a ViT pre-trained by
    MAE is tuned by another objective (Lehner et al. 2023, "MAE-CT").  The source run must
    have built the same backbone, or the weights would not fit: that is checked on its
    ``config.toml`` first, so the message names the setting that differs.
    """
    field = "model.init_from"
    path = Path(cfg.model.init_from).expanduser()
    folder = RunFolder(path, create=False)
    if not folder.config_path.exists():
        raise ConfigError(field, f"{path} is not a run folder (it has no config.toml); choose a folder a finished run wrote.")
    source = folder.read_config()
    ours, theirs = _built_backbone(cfg.model, resolution), _built_backbone(source.model, source.data.resolution)
    for name, mine, other in zip(("model.backbone", "model.width", "model.depth", "model.patch_size", "model.registers", "data.resolution"),
                                 ours, theirs):
        if mine != other:
            raise ConfigError(field, f"run {path.name} trained with {name} = {other!r} but this run has {mine!r}; "
                                     f"set {name} to {other!r} to start from its weights.")
    try:
        ckpt = folder.load_checkpoint()
    except ConfigError as exc:
        raise ConfigError(field, f"refused: {exc.message}") from None
    state = {k[len("backbone."):]: v for k, v in ckpt.get("objective", {}).items() if k.startswith("backbone.")}
    if not state:
        raise ConfigError(field, f"the checkpoint of run {path.name} holds no backbone weights; choose a run of a training objective.")
    return state


def build_objective(cfg: RunConfig, imageset: ImageSet, start_weights: bool = True) -> Objective:
    """Backbone + objective with the config's parameters; seeded by the caller.

    With ``model.init_from`` set the backbone takes that run's trained weights before the
    objective is built, so an EMA teacher or target encoder copies them too.
    ``start_weights=False`` skips that, for callers that load the run's own checkpoint
    next (resuming, evaluating): they need neither the source run nor its weights.
    """
    objective_cls = get_objective(cfg.objective.name)
    if objective_cls.backbones is not None and cfg.model.backbone not in objective_cls.backbones:
        raise ConfigError("model.backbone", f"must be one of {', '.join(objective_cls.backbones)} for {objective_cls.title}, got {cfg.model.backbone!r}")
    params = objective_params(cfg)
    backbone = _text_backbone(cfg, imageset) if imageset.modality == "text" else build_backbone(cfg.model, imageset.resolution)
    if cfg.model.init_from and start_weights:
        state = pretrained_backbone_state(cfg, imageset.resolution)
        try:
            backbone.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError("model.init_from", f"the backbone weights of run {Path(cfg.model.init_from).name} do not fit this "
                                                 f"backbone ({str(exc).splitlines()[0]}); start this run from a run with the same model settings.") from None
    context = ObjectiveContext(
        image_size=imageset.resolution,
        num_classes=imageset.num_classes,
        class_names=imageset.class_names,
        captions=imageset.captions,
        ablations=frozenset(cfg.ablations),
        batch_size=effective_batch_size(cfg, len(imageset.train_index)),
        mean=tuple(imageset.mean) if imageset.mean is not None else None,
        std=tuple(imageset.std) if imageset.std is not None else None,
        prompt_templates=default_templates(imageset.class_names),
    )
    return objective_cls(backbone, params, context)


def _text_backbone(cfg: RunConfig, textset):
    """The text lab's Transformer for the data's vocabulary and context; model.width and model.depth size it (0: defaults)."""
    from ssl_studio.models.text_lm import DEFAULT_TEXT_DEPTH, DEFAULT_TEXT_WIDTH, TEXT_HEAD_DIM, TextTransformer

    width = cfg.model.width or DEFAULT_TEXT_WIDTH
    if width % TEXT_HEAD_DIM:
        raise ConfigError("model.width", f"must be a multiple of {TEXT_HEAD_DIM} for the text Transformer (one head per "
                                         f"{TEXT_HEAD_DIM} dimensions), got {width}; 0 takes {DEFAULT_TEXT_WIDTH}")
    return TextTransformer(textset.tokenizer.vocab_size, textset.resolution, width, cfg.model.depth or DEFAULT_TEXT_DEPTH,
                           tokenizer=textset.tokenizer)


def objective_params(cfg: RunConfig) -> Any:
    """The objective's validated parameters: the config's values over the defaults for its backbone."""
    return get_objective(cfg.objective.name).params_for(cfg.objective.params, cfg.model.backbone)


def initial_objective(cfg: RunConfig, imageset: ImageSet) -> Objective:
    """The objective exactly as a run of ``cfg`` starts: built right after seeding with ``cfg.seed``.

    The trainer seeds the global generator and builds; a reference "at initialisation" must do
    the same, or it measures whichever random network the generator's current state gives (a
    study that evaluates after its runs got k-NN 0.209 or 0.228 for the same preset).  The
    caller's generator state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_objective(cfg, imageset)


def augment_adjustments(augment, source: str, objective: str) -> dict[str, tuple[Any, str]]:
    """{field: (value, who asks for it)} for the augmentation fields the data set or objective changes.

    Only fields the user kept at the lab's default are changed; the objective's paper settings
    win over the data set's where both set a field (CLIP's near-whole crops keep its captions
    true; the data's advice is about object size).
    """
    wanted = {k: (v, f"the {source} data") for k, v in augment_defaults(source).items()}
    wanted.update({k: (v, f"{objective}'s paper") for k, v in get_objective(objective).augment_defaults.items()})
    lab_default = AugmentConfig()
    return {k: (v, why) for k, (v, why) in wanted.items()
            if getattr(augment, k) == getattr(lab_default, k) and getattr(augment, k) != v}


def resolve_augment(augment, source: str, objective: str):
    """``augment`` with the adjustments of ``augment_adjustments`` applied."""
    import dataclasses

    changes = {k: v for k, (v, _) in augment_adjustments(augment, source, objective).items()}
    return dataclasses.replace(augment, **changes) if changes else augment


def effective_augment(cfg: RunConfig):
    """The augmentation a run really uses: the config's, adjusted for its data set and objective."""
    return resolve_augment(cfg.augment, cfg.data.source, cfg.objective.name)


def build_views(cfg: RunConfig, imageset: ImageSet) -> ViewMaker:
    if imageset.modality == "text":
        from ssl_studio.data.text import TokenViews

        return TokenViews()
    return ViewMaker(effective_augment(cfg), imageset.resolution, imageset.mean, imageset.std)


def resolved_optim(cfg: RunConfig) -> tuple[str, float, float]:
    """(optimizer, lr per 256 images, weight decay): the config's values, else the objective's recipe for the backbone."""
    recipe = get_objective(cfg.objective.name).recipe_for(cfg.model.backbone)
    name = cfg.optim.optimizer or recipe.optimizer
    lr = cfg.optim.lr if cfg.optim.lr is not None else recipe.lr
    wd = cfg.optim.weight_decay if cfg.optim.weight_decay is not None else recipe.weight_decay
    return name, lr, wd


def to_device_input(x_uint8: torch.Tensor, views: ViewMaker, channels_last: bool) -> torch.Tensor:
    x = views.plain(x_uint8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
