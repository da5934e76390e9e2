"""From ``data.source`` to a split ImageSet: parse, dispatch, limit, split.

Sources only produce images and what they know about them (RawImages); the
rules every source shares live here once: ``limit`` (seeded, stratified by
class and official split), the seeded stratified split or the official one,
and ``held_out`` (shapes only: those colour-shape pairs leave train_index).
Shapes-only fields (``held_out``, ``backgrounds``, ``fixed_background``) set for another source are refused here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ssl_studio.config import DataConfig
from ssl_studio.data.imageset import DataError, ImageSet, RawImages, limit_order, split_indices
from ssl_studio.data.text import is_text_source

FORMS = "shapes, digits, folder:PATH, cifar:PATH or text:PATH (text:builtin for the built-in corpus)"

Progress = Callable[[int, int], None]


def _path_of(source: str, prefix: str) -> Path:
    text = source[len(prefix):].strip().strip('"').strip("'")
    if not text:
        raise DataError("data.source", f"is {source!r} without a path; write {prefix}PATH, for example {prefix}~/images.")
    return Path(text).expanduser()


def load_raw(cfg: DataConfig, seed: int, progress: Progress | None = None) -> RawImages:
    """The source's images before the split (``limit`` already applied where it saves work)."""
    source = (cfg.source or "").strip()
    kind = source.lower()
    if kind == "shapes":
        from ssl_studio.data.shapes import generate

        return generate(cfg.num_images, cfg.resolution, seed, progress, backgrounds=list(cfg.backgrounds or []),
                        fixed_background=cfg.fixed_background)
    if kind == "digits":
        from ssl_studio.data.digits import load_digits_images

        return load_digits_images(cfg.resolution, progress)
    if kind.startswith("folder:"):
        from ssl_studio.data.folder import load_folder

        return load_folder(_path_of(source, source[:7]), cfg.resolution, cfg.limit, seed, progress)
    if kind.startswith("cifar:"):
        from ssl_studio.data.cifar import load_cifar

        return load_cifar(_path_of(source, source[:6]), cfg.resolution, cfg.limit, seed, progress)
    raise DataError("data.source", f"must be {FORMS}, got {cfg.source!r}.")


def augment_defaults(source: str) -> dict:
    """AugmentConfig values a built-in data set needs (see ``shapes.AUGMENT_DEFAULTS``); {} for users' data."""
    if source == "shapes":
        from ssl_studio.data.shapes import AUGMENT_DEFAULTS

        return dict(AUGMENT_DEFAULTS)
    return {}


def load_imageset(cfg: DataConfig, seed: int, progress: Progress | None = None) -> ImageSet:
    """Load, limit and split the images ``cfg`` describes.

    The split is the data's own (CIFAR's test batch, a folder's test/) when it
    has one, otherwise a seeded split stratified by class holding out
    ``cfg.val_fraction``.  With nothing held out, ``val_index`` is a seeded
    sample of up to 1,000 training images (see ImageSet).  Same config and
    seed → same images, same split.
    """
    held_out = list(cfg.held_out or [])
    is_shapes = (cfg.source or "").strip().lower() == "shapes"
    for field, value in (("data.held_out", held_out), ("data.backgrounds", list(cfg.backgrounds or [])),
                         ("data.fixed_background", cfg.fixed_background)):
        if value and not is_shapes:
            raise DataError(field, f"only applies to the shapes source, but data.source is {cfg.source!r}; clear it or switch to shapes.")
    if is_text_source(cfg.source):
        from ssl_studio.data.text import load_textset

        return load_textset(cfg.source, cfg.resolution, cfg.val_fraction, seed, cfg.limit)
    if held_out:
        from ssl_studio.data.shapes import parse_held_out

        parse_held_out(held_out)  # fail on a bad name before rendering anything
    raw = load_raw(cfg, seed, progress)
    if 0 < cfg.limit < len(raw):
        raw = raw.take(limit_order(raw.labels, len(raw), cfg.limit, seed, raw.is_val))
    train, val = split_indices(raw.labels, len(raw), cfg.val_fraction, seed, raw.is_val)
    if held_out and raw.attributes is not None:
        from ssl_studio.data.shapes import held_out_mask

        banned = held_out_mask(raw.attributes, held_out)
        train = train[~banned[train]]
    return ImageSet(
        name=raw.name,
        images=raw.images,
        labels=raw.labels,
        class_names=raw.class_names,
        captions=raw.captions,
        masks=raw.masks,
        train_index=train,
        val_index=val,
        skipped=raw.skipped,
        skipped_examples=list(raw.skipped_examples),
        attributes=raw.attributes,
        skipped_links=raw.skipped_links,
        skipped_link_examples=list(raw.skipped_link_examples),
        notes=list(raw.notes),
    )


__all__ = ["FORMS", "load_imageset", "load_raw"]
