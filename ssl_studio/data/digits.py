"""scikit-learn's bundled handwritten digits: a real, labelled set that needs no download.

1,797 greyscale 8×8 images (values 0..16) from the UCI optical digits data,
shipped inside scikit-learn, so the lab has real handwriting offline.  They
are scaled to 0..255, upsampled with antialiased bilinear interpolation to the
run's resolution and replicated to three channels, so every backbone and
augmentation sees the same N×3×H×W layout as any other source.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ssl_studio.data.imageset import DataError, RawImages

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images (N×8×8, 0..16) and targets, as ``sklearn.datasets.load_digits`` returns them.

    The bundled CSV is read directly when it is where scikit-learn keeps it:
    importing ``sklearn.datasets`` costs seconds, reading 1,797 rows does not.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("data.source", "is digits, which needs scikit-learn, and it is not installed; install it with pip install scikit-learn.")
    csv_path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if csv_path.is_file():
        with gzip.open(csv_path) as fh:
            table = np.loadtxt(fh, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # layout changed: take the official route

    bunch = load_digits()
    return bunch.images, bunch.target


# Phrasings of a digit's caption; the k-th image of each class takes phrasing k mod len (deterministic, balanced).
CAPTION_TEMPLATES = ("a handwritten {word}", "the digit {digit}", "a handwritten digit {word}", "the number {word}, written by hand",
                     "a {digit}, written by hand", "an image of the digit {digit}")


def digit_captions(labels: list[int]) -> list[str]:
    seen = [0] * 10
    out = []
    for y in labels:
        out.append(CAPTION_TEMPLATES[seen[y] % len(CAPTION_TEMPLATES)].format(word=NUMBER_WORDS[y], digit=y))
        seen[y] += 1
    return out


def load_digits_images(resolution: int = 32, progress: Callable[[int, int], None] | None = None) -> RawImages:
    images, target = _read_digits()
    x = torch.as_tensor(images, dtype=torch.float32)  # N×8×8 in 0..16
    labels = torch.as_tensor(target, dtype=torch.int64)
    x = (x * (255.0 / 16.0)).unsqueeze(1)
    if resolution != x.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    images = x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    if progress is not None:
        progress(len(labels), len(labels))
    return RawImages(
        name="digits",
        images=images,
        labels=labels,
        class_names=[str(i) for i in range(10)],
        captions=digit_captions(labels.tolist()),
    )


__all__ = ["load_digits_images"]
