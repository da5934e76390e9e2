"""CIFAR-10 and CIFAR-100 as users keep them on disk (never downloaded here).

Three layouts are read: ``cifar-10-batches-py`` (pickled data_batch_1..5,
test_batch, batches.meta), ``cifar-100-python`` (train, test, meta; fine
labels) and the binary ``cifar-10-batches-bin`` (data_batch_*.bin,
test_batch.bin, batches.meta.txt), plus ``cifar-100-binary`` (train.bin,
test.bin, fine_label_names.txt) because it costs four lines.  The path may be
the batches folder itself or the folder above it.  The official test batch
becomes the validation split, so numbers are comparable with the literature.
Pickles go through ``safe_pickle`` so a doctored file cannot run code.
CIFAR has no captions: zero-shot and CLIP prompts come from ``class_names``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ssl_studio.data.imageset import DataError, RawImages, limit_order, resize_batch
from ssl_studio.data.safe_pickle import safe_load

RECORD = 3 * 32 * 32


@dataclass(frozen=True)
class _Layout:
    kind: str  # "py10", "py100", "bin10", "bin100"
    root: Path
    train: tuple[Path, ...]
    test: tuple[Path, ...]


# Folder names as the archives unpack, in the order a parent holding several is read.
_FOLDERS = {
    "cifar-10-batches-py": "py10",
    "cifar-100-python": "py100",
    "cifar-10-batches-bin": "bin10",
    "cifar-100-binary": "bin100",
}


def _layout_of(folder: Path) -> _Layout | None:
    """The layout ``folder`` holds directly, if any."""
    def files(*names: str) -> tuple[Path, ...]:
        return tuple(folder / n for n in names if (folder / n).is_file())

    py10 = files(*(f"data_batch_{i}" for i in range(1, 6)))
    if py10 or (folder / "test_batch").is_file():
        return _Layout("py10", folder, py10, files("test_batch"))
    bin10 = files(*(f"data_batch_{i}.bin" for i in range(1, 6)))
    if bin10 or (folder / "test_batch.bin").is_file():
        return _Layout("bin10", folder, bin10, files("test_batch.bin"))
    if (folder / "train.bin").is_file() or (folder / "test.bin").is_file():
        return _Layout("bin100", folder, files("train.bin"), files("test.bin"))
    if ((folder / "train").is_file() or (folder / "test").is_file()) and (folder / "meta").is_file():
        return _Layout("py100", folder, files("train"), files("test"))
    return None


def find_layout(path: Path) -> _Layout:
    if not path.exists():
        raise DataError("data.source", f"points to {path}, which does not exist; give the folder that holds cifar-10-batches-py (or the batches folder itself).")
    if not path.is_dir():
        raise DataError("data.source", f"points to {path}, which is a file; give the folder that holds the CIFAR batch files instead.")
    found = _layout_of(path)
    if found is not None:
        return found
    inside = [(name, _layout_of(path / name)) for name in _FOLDERS if (path / name).is_dir()]
    inside = [(name, lay) for name, lay in inside if lay is not None]
    if not inside:
        raise DataError(
            "data.source",
            f"points to {path}, which holds no CIFAR batches (cifar-10-batches-py, cifar-100-python or cifar-10-batches-bin); "
            "unpack the official archive there, or use folder:PATH for image files.",
        )
    tens = {lay.kind[-2:] for _, lay in inside}
    if len(tens) > 1:
        names = ", ".join(name for name, _ in inside)
        raise DataError("data.source", f"points to {path}, which holds both CIFAR-10 and CIFAR-100 ({names}); point it at one of those folders.")
    return inside[0][1]


def _rows_to_images(data: np.ndarray, source: Path) -> torch.Tensor:
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != RECORD:
        raise DataError("data.source", f"file {source} holds data of shape {data.shape}, not N×3072 CIFAR rows; it is not a CIFAR batch.")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())


def _get(d: dict, key: str, source: Path):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError("data.source", f"file {source} has no {key!r} entry; it is not a CIFAR batch, so fetch the official files again.")


def _read_pickle_batch(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    d = safe_load(path)
    if not isinstance(d, dict):
        raise DataError("data.source", f"file {path} holds a {type(d).__name__}, not a CIFAR batch; fetch the official files again.")
    images = _rows_to_images(np.asarray(_get(d, "data", path)), path)
    labels = torch.as_tensor(np.asarray(_get(d, label_key, path), dtype=np.int64))
    if labels.numel() != images.shape[0]:
        raise DataError("data.source", f"file {path} has {images.shape[0]} images but {labels.numel()} labels; it is damaged, so fetch it again.")
    return images, labels


def _read_binary_batch(path: Path, label_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Records of ``label_bytes`` label bytes then 3072 pixels; the last label byte is the one used (fine for CIFAR-100)."""
    raw = np.fromfile(path, dtype=np.uint8)
    width = label_bytes + RECORD
    if raw.size == 0 or raw.size % width:
        raise DataError("data.source", f"file {path} is {raw.size} bytes, not a whole number of {width}-byte CIFAR records; it is damaged or truncated, so fetch it again.")
    rows = raw.reshape(-1, width)
    labels = torch.from_numpy(rows[:, label_bytes - 1].astype(np.int64))
    return _rows_to_images(rows[:, label_bytes:], path), labels


def _names(lay: _Layout) -> list[str] | None:
    def text_lines(name: str) -> list[str] | None:
        p = lay.root / name
        if not p.is_file():
            return None
        return [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]

    def decode(values) -> list[str]:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]

    if lay.kind == "py10" and (lay.root / "batches.meta").is_file():
        return decode(_get(safe_load(lay.root / "batches.meta"), "label_names", lay.root / "batches.meta"))
    if lay.kind == "py100":
        return decode(_get(safe_load(lay.root / "meta"), "fine_label_names", lay.root / "meta"))
    if lay.kind == "bin10":
        return text_lines("batches.meta.txt")
    if lay.kind == "bin100":
        return text_lines("fine_label_names.txt")
    return None


def load_cifar(
    path: str | Path,
    resolution: int = 32,
    limit: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> RawImages:
    """All batches of the CIFAR found at ``path``; ``limit`` is applied before resizing,
    so that a small limited run at a large resolution never resizes all 60,000."""
    lay = find_layout(Path(path).expanduser())
    files = [(p, False) for p in lay.train] + [(p, True) for p in lay.test]
    if not files:
        raise DataError("data.source", f"points to {lay.root}, which has CIFAR metadata but no batch files; unpack the whole archive there.")
    images, labels, is_val = [], [], []
    for done, (p, val) in enumerate(files, 1):
        if lay.kind == "py10":
            im, lab = _read_pickle_batch(p, "labels")
        elif lay.kind == "py100":
            im, lab = _read_pickle_batch(p, "fine_labels")
        else:
            im, lab = _read_binary_batch(p, 1 if lay.kind == "bin10" else 2)
        images.append(im)
        labels.append(lab)
        is_val.append(torch.full((lab.numel(),), val, dtype=torch.bool))
        if progress is not None:
            progress(done, len(files))
    x = torch.cat(images)
    y = torch.cat(labels)
    names = _names(lay)
    n_classes = 100 if lay.kind.endswith("100") else 10
    if names is None or len(names) <= int(y.max()):
        names = [str(i) for i in range(max(n_classes, int(y.max()) + 1))]
    split = torch.cat(is_val)
    if not lay.train or not lay.test:
        split = None  # only one half present: the split is drawn instead
    raw = RawImages(
        name="cifar100" if lay.kind.endswith("100") else "cifar10",
        images=x,
        labels=y,
        class_names=names,
        is_val=split,
    )
    if 0 < limit < len(raw):
        raw = raw.take(limit_order(raw.labels, len(raw), limit, seed, raw.is_val))
    raw.images = resize_batch(raw.images, resolution)
    return raw


__all__ = ["find_layout", "load_cifar"]
