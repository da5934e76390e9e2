"""The in-memory image set every source produces, and the seeded split maths.

Every source (shapes, digits, folder, CIFAR) ends in the same place: one uint8
tensor held in memory once, plus whatever side information the source has.
Keeping images as uint8 N×3×H×W on the CPU costs a quarter of float32, lets the
sampler move a batch to the device with one copy, and leaves all augmentation to
batched tensor code on the device.

The split helpers live here, not in each source, so that "seeded and stratified"
means the same thing for every source: a source only says which images exist
and, when the data comes with one, which of them are its official test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import torch

from ssl_studio.params import ConfigError

# When val_fraction is 0 nothing is held out, but probes and k-NN still need
# images to embed; they get a seeded sample of the training images (overlapping).
VAL_FALLBACK_SIZE = 1000


def printable(text: str) -> str:
    """``text`` safe to print, write as UTF-8 or show: a path's undecodable bytes become U+FFFD.

    Paths keep undecodable bytes as surrogates (PEP 383) so that files can be
    opened; messages, class names and notes must not carry them, or printing
    them fails with "surrogates not allowed".
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8", "replace")  # the bytes the path really holds, undecodable ones as U+FFFD
    except UnicodeError:  # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "replace").decode("utf-8")


class DataError(ConfigError):
    """A user-facing data problem (missing folder, unreadable files, refused pickle).

    A ConfigError so that the GUI shows it beside the data control and the CLI
    prints it as one sentence; the field is usually ``data.source``.  The
    message is made printable (see ``printable``), since it often names a path.
    """

    def __init__(self, field: str, message: str):
        super().__init__(field, printable(message))


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _mean_std(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of images/255, exactly, from a 256-bin histogram per channel.

    A histogram of uint8 values is five times cheaper than float sums of
    squares and needs no float copy of the images.
    """
    c = images.shape[1]
    if images.shape[0] == 0:
        return (0.0,) * c, (1.0,) * c  # type: ignore[return-value]
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for ch in range(c):
        hist = torch.bincount(images[:, ch].reshape(-1), minlength=256).to(torch.float64)
        p = hist / hist.sum()
        mean = float((p * levels).sum())
        var = float((p * (levels - mean) ** 2).sum())
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5 or 1e-6)
    return tuple(means), tuple(stds)  # type: ignore[return-value]


def as_index(index: torch.Tensor | Sequence[int] | Sequence[bool], n: int) -> torch.Tensor:
    """Integer indices from a tensor, list or boolean mask."""
    idx = torch.as_tensor(index)
    if idx.dtype == torch.bool:
        if idx.numel() != n:
            raise ValueError(f"boolean mask has {idx.numel()} entries for {n} images")
        return idx.nonzero().flatten().to(torch.int64)
    return idx.to(torch.int64).flatten()


@dataclass
class ImageSet:
    """Images in memory, their labels and side information, and the train/val split.

    ``val_index`` is never empty when there are images: with ``val_fraction = 0``
    (or a split that leaves nothing held out) it is a seeded sample of up to
    1,000 *training* images, so probes and k-NN have something to embed; their
    numbers then measure fit, not generalisation.

    What the user should hear about the data is kept beside it: ``skipped`` /
    ``skipped_examples`` (files that could not be used), ``skipped_links`` /
    ``skipped_link_examples`` (links not followed), and ``notes``, one
    sentence each, ready to print (``describe()`` joins them).  ``only_class``
    names the single class of a folder whose labels were set aside because
    one class cannot be scored (see ``engine.build.load_data``).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str] | None
    captions: list[str] | None
    masks: torch.Tensor | None
    train_index: torch.Tensor
    val_index: torch.Tensor
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    attributes: dict[str, list] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    skipped_links: int = 0
    skipped_link_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    only_class: str | None = None
    modality: ClassVar[str] = "images"  # what ``images`` holds: "images", or "text" (token windows, see data/text.py)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        if not self.images.is_contiguous():
            self.images = self.images.contiguous()
        self.train_index = torch.as_tensor(self.train_index, dtype=torch.int64)
        self.val_index = torch.as_tensor(self.val_index, dtype=torch.int64)
        if self.mean is None or self.std is None:
            self.mean, self.std = _mean_std(self.images)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def describe(self) -> str:
        """The notes about this data as one line ("" when there is nothing to say)."""
        return " ".join(self.notes)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if self.labels.numel() else 0

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: torch.Tensor | Sequence[int] | Sequence[bool]) -> "ImageSet":
        """The images at ``index``, re-indexed from 0; split indices keep only the chosen images.

        Mean and std are recomputed, because normalisation should describe the
        images actually used.
        """
        idx = as_index(index, len(self))
        remap = torch.full((len(self),), -1, dtype=torch.int64)
        remap[idx] = torch.arange(idx.numel(), dtype=torch.int64)

        def restrict(split: torch.Tensor) -> torch.Tensor:
            new = remap[split]
            return new[new >= 0]

        pick = idx.tolist()
        return ImageSet(
            name=self.name,
            images=self.images[idx].contiguous(),
            labels=None if self.labels is None else self.labels[idx],
            class_names=None if self.class_names is None else list(self.class_names),
            captions=None if self.captions is None else [self.captions[i] for i in pick],
            masks=None if self.masks is None else self.masks[idx],
            train_index=restrict(self.train_index),
            val_index=restrict(self.val_index),
            skipped=self.skipped,
            skipped_examples=list(self.skipped_examples),
            attributes=None if self.attributes is None else {k: [v[i] for i in pick] for k, v in self.attributes.items()},
            skipped_links=self.skipped_links,
            skipped_link_examples=list(self.skipped_link_examples),
            notes=list(self.notes),
            only_class=self.only_class,
        )


@dataclass
class RawImages:
    """What a source hands over before the split: images and what it knows about them.

    ``is_val`` is set only where the data has an official split (CIFAR's test
    batch, a folder's ``test/``); otherwise the split is drawn here.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    captions: list[str] | None = None
    masks: torch.Tensor | None = None
    attributes: dict[str, list] | None = None
    is_val: torch.Tensor | None = None
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    skipped_links: int = 0
    skipped_link_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, idx: torch.Tensor) -> "RawImages":
        pick = idx.tolist()
        return RawImages(
            name=self.name,
            images=self.images[idx].contiguous(),
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            captions=None if self.captions is None else [self.captions[i] for i in pick],
            masks=None if self.masks is None else self.masks[idx],
            attributes=None if self.attributes is None else {k: [v[i] for i in pick] for k, v in self.attributes.items()},
            is_val=None if self.is_val is None else self.is_val[idx],
            skipped=self.skipped,
            skipped_examples=self.skipped_examples,
            skipped_links=self.skipped_links,
            skipped_link_examples=self.skipped_link_examples,
            notes=self.notes,
        )


def generator(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for one purpose, so that the limit, the split and the
    fallback sample are independent draws that each depend only on the seed."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + salt) % (2**63 - 1))
    return g


SALT_LIMIT = 11
SALT_SPLIT = 23
SALT_FALLBACK = 37


def stratified_order(keys: torch.Tensor | None, n: int, g: torch.Generator) -> torch.Tensor:
    """A seeded permutation of range(n) whose every prefix is stratified by ``keys``.

    Each item gets the sort key (rank within its class + u) / class size, with
    the ranks from a random permutation and u uniform in [0, 1): taking the first
    m items of the order then takes about m·(class size)/n of every class
    (within one), and exactly m in total, whatever m is.
    """
    if keys is None or n == 0:
        return torch.randperm(n, generator=g)
    keys = keys.to(torch.int64)
    perm = torch.randperm(n, generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    k = keys[perm]
    # rank of each permuted item within its class: stable sort by class, then position.
    order = torch.sort(k, stable=True).indices
    sorted_k = k[order]
    counts = torch.bincount(sorted_k - sorted_k.min() if n else sorted_k)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(n) - starts[sorted_k - sorted_k.min()]
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = rank_sorted
    size = counts[k - sorted_k.min()].to(torch.float64)
    frac = (rank.to(torch.float64) + u) / size
    return perm[torch.argsort(frac, stable=True)]


def limit_order(
    labels: torch.Tensor | None, n: int, limit: int, seed: int, is_val: torch.Tensor | None = None
) -> torch.Tensor:
    """Sorted indices of at most ``limit`` images (all when limit is 0 or ≥ n).

    Stratified by class; with an official split, the split's proportions are
    kept exactly first (a limited CIFAR keeps 5:1 train:test), then classes
    within each part.
    """
    if limit <= 0 or limit >= n:
        return torch.arange(n, dtype=torch.int64)
    g = generator(seed, SALT_LIMIT)
    if is_val is None:
        return torch.sort(stratified_order(labels, n, g)[:limit]).values
    val = is_val.nonzero().flatten()
    train = (~is_val).nonzero().flatten()
    k_val = int(round(limit * val.numel() / n))
    picks = []
    for idx, k in ((train, limit - k_val), (val, k_val)):
        order = stratified_order(None if labels is None else labels[idx], idx.numel(), g)
        picks.append(idx[order[:k]])
    return torch.sort(torch.cat(picks)).values


def split_indices(
    labels: torch.Tensor | None, n: int, val_fraction: float, seed: int, is_val: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices (each sorted): the official split when there is one,
    otherwise a seeded split stratified by class holding out ``val_fraction``."""
    if is_val is not None:
        val = is_val.nonzero().flatten().to(torch.int64)
        train = (~is_val).nonzero().flatten().to(torch.int64)
    else:
        n_val = int(round(val_fraction * n))
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        order = stratified_order(labels, n, generator(seed, SALT_SPLIT))
        val = torch.sort(order[:n_val]).values
        train = torch.sort(order[n_val:]).values
    if val.numel() == 0 and train.numel() > 0:
        val = fallback_val(train, seed)
    return train, val


def fallback_val(train: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded sample of up to VAL_FALLBACK_SIZE training images, used as the
    probe set when nothing is held out (see ImageSet)."""
    g = generator(seed, SALT_FALLBACK)
    pick = torch.randperm(train.numel(), generator=g)[:VAL_FALLBACK_SIZE]
    return torch.sort(train[pick]).values


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square uint8 images at ``size``: centre crop to a square, then antialiased bilinear resize.

    Centre cropping keeps the aspect ratio (objects are not squashed), at the
    cost of the borders of non-square images; every source uses this rule.
    """
    n, c, h, w = images.shape
    if h == size and w == size:
        return images.contiguous()
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    step = max(1, (1 << 22) // max(1, c * max(side, size) ** 2))
    for start in range(0, n, step):
        chunk = images[start : start + step].to(torch.float32)
        chunk = torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + step] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


__all__ = ["DataError", "ImageSet", "RawImages", "VAL_FALLBACK_SIZE", "limit_order", "plural", "printable", "resize_batch",
           "split_indices"]
