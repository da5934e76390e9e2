"""A user's own images from a folder, whatever they are.

Layouts, decided by what the folder holds:

* class sub-folders (``root/cat/*.jpg``, any depth below the class folder) give
  labels, ImageFolder style; loose files beside the class folders are ignored;
* ``root/train/`` and ``root/test/`` (or ``val/``, ``valid/``, ``validation/``)
  above the class folders (or holding images directly) give the split, test →
  ``val_index``;
* a folder with no sub-folder holding images is one unlabelled set.

Anything Pillow decodes is accepted and made 8-bit RGB the way a viewer would:
16-bit images are scaled (65535 → 255), not clipped; transparency (RGBA, LA,
palette or tRNS) is composited on white, the page colour most images with
alpha (logos, icons, scans) were drawn for; CMYK, YCbCr, 1-bit and LAB are
converted; EXIF orientation is applied; animations give their first frame.
Images are centre-cropped to a square and resized (antialiased bilinear) to the
resolution, as every source is, so objects keep their proportions.

Captions come from ``captions.csv`` at the root (columns ``file,caption``, file
relative to the root; a bare file name also matches) and from ``.txt`` files
beside the images with the same stem; the CSV wins where both exist.  When
some images have captions, the rest get "a photo of a <class>" (labelled) or
"" (unlabelled) so the list stays one per image.

Unreadable, corrupt, zero-byte and non-image files are skipped and counted
(names in ``skipped_examples``), never fatal, unless nothing is readable.
Decoding runs in a thread pool: Pillow releases the GIL while it decodes, so
all cores are used without worker processes.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from ssl_studio.data.imageset import DataError, RawImages, limit_order

SPLIT_TRAIN = ("train",)
SPLIT_TEST = ("test", "val", "valid", "validation")
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # system litter, not worth reporting
SKIPPED_EXAMPLES = 5
CHUNK = 64  # files per thread-pool task: amortises scheduling, keeps progress smooth


@dataclass
class _File:
    path: str  # absolute path as a string: pathlib costs ~50 µs a file at 10k files
    rel: str  # posix path relative to the root, for messages and captions.csv
    label: int  # -1 when unlabelled
    is_val: bool


def _visible(name: str) -> bool:
    return not name.startswith(".") and not name.startswith("__")


def _scan(folder: str) -> tuple[list[str], list[str]]:
    """Visible sub-folder and file names directly in ``folder``, sorted."""
    dirs, files = [], []
    try:
        with os.scandir(folder) as it:
            for e in it:
                if not _visible(e.name):
                    continue
                try:
                    (dirs if e.is_dir() else files).append(e.name)
                except OSError:
                    continue
    except OSError:
        return [], []
    return sorted(dirs), sorted(files)


def _walk_files(root: str, rel_dir: str) -> list[str]:
    """Every visible file under ``root/rel_dir`` (any depth), as sorted root-relative posix paths."""
    out: list[str] = []
    top = os.path.join(root, rel_dir)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        out.extend(f"{rel}/{f}" for f in filenames if _visible(f))
    return sorted(out)


def _find_split(root: str) -> tuple[str, str] | None:
    by_name = {d.lower(): d for d in _scan(root)[0]}
    train = next((by_name[n] for n in SPLIT_TRAIN if n in by_name), None)
    test = next((by_name[n] for n in SPLIT_TEST if n in by_name), None)
    return (train, test) if train is not None and test is not None else None


def _part_contents(root: str, part: str) -> tuple[dict[str, list[str]], list[str]]:
    """Class name → files for each sub-folder of ``part`` that holds files, and the loose files."""
    dirs, loose = _scan(os.path.join(root, part))
    prefix = f"{part}/" if part else ""
    classes = {d: files for d in dirs if (files := _walk_files(root, prefix + d))}
    return classes, [prefix + f for f in loose]


def _stem(rel: str) -> str:
    return os.path.splitext(rel)[0]


def _list_files(root: Path) -> tuple[list[_File], list[str] | None, dict[str, str]]:
    """The candidate files, class names (None when unlabelled) and caption sidecars (image stem → .txt)."""
    top = str(root)
    split = _find_split(top)
    parts = [(split[0], False), (split[1], True)] if split else [("", False)]
    contents = [(_part_contents(top, p), is_val) for p, is_val in parts]
    labelled = [bool(classes) for (classes, _), _ in contents]
    if split and any(labelled) and not all(labelled):
        raise DataError(
            "data.source",
            f"points to {root}, whose {split[0]}/ and {split[1]}/ differ: one has class sub-folders and the other not; "
            "give both the same layout.",
        )
    raw: list[tuple[str, str | None, bool]] = []
    for (classes, loose), is_val in contents:
        if classes:
            raw.extend((f, name, is_val) for name, files in classes.items() for f in files)
        else:
            raw.extend((f, None, is_val) for f in loose)
    class_names = sorted({c for _, c, _ in raw if c is not None}) if any(labelled) else None
    index = {c: i for i, c in enumerate(class_names or [])}
    # a .txt beside a file with the same stem is that file's caption, not a bad image
    stems = {_stem(f) for f, _, _ in raw if not f.lower().endswith(".txt")}
    files: list[_File] = []
    sidecars: dict[str, str] = {}
    for rel, c, is_val in raw:
        name = rel.rsplit("/", 1)[-1].lower()
        if name in IGNORED_NAMES or rel.lower() == "captions.csv":
            continue
        if name.endswith(".txt") and _stem(rel) in stems:
            sidecars[_stem(rel)] = os.path.join(top, rel)
            continue
        files.append(_File(os.path.join(top, rel), rel, index[c] if c is not None else -1, is_val))
    return files, class_names, sidecars


def _read_captions_csv(root: Path) -> dict[str, str]:
    path = root / "captions.csv"
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError("data.source", f"has a captions file {path} that cannot be read ({exc}); save it as UTF-8 CSV with columns file,caption.") from None
    if not rows:
        return {}
    head = [c.strip().lower() for c in rows[0]]
    if "file" in head and "caption" in head:
        fi, ci, rows = head.index("file"), head.index("caption"), rows[1:]
    else:
        fi, ci = 0, 1
    out: dict[str, str] = {}
    for row in rows:
        if len(row) > max(fi, ci) and row[fi].strip():
            key = Path(row[fi].strip().replace("\\", "/")).as_posix()
            out[key] = row[ci].strip()
    return out


def _read_sidecar(path: Path) -> str:
    try:
        return " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------

def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB as a viewer would show it (see the module docstring)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        hi = float(a.max()) if a.size else 0.0
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif mode == "I":  # 32-bit ints: Pillow's mode for some 16-bit TIFF/PNG
            scale = 1.0 if hi <= 255 else 255.0 / (65535.0 if hi <= 65535 else hi)
        else:  # float images are 0..1 or 0..255 by convention
            scale = 255.0 if hi <= 1.0 else (1.0 if hi <= 255 else 255.0 / hi)
        grey = np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        return _composite_on_white(im)
    return im.convert("RGB")


def _fit(im: Image.Image, res: int) -> Image.Image:
    w, h = im.size
    if (w, h) == (res, res):
        return im
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((res, res), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=3.0)


def decode_image(path: str | Path, res: int) -> np.ndarray:
    """H×W×3 uint8 at ``res`` (raises on anything unreadable)."""
    with Image.open(path) as im:
        if im.format == "JPEG" and min(im.size) >= 2 * res:
            im.draft(None, (res, res))  # decode at 1/2, 1/4 or 1/8 size, never below res
        orientation = im.getexif().get(0x0112, 1)
        im.load()
        if orientation not in (1, None):
            im = ImageOps.exif_transpose(im)
        out = np.asarray(_fit(_to_rgb(im), res))
    if out.shape != (res, res, 3):
        raise ValueError(f"decoded to shape {out.shape}")
    return out


def _decode_into(out: np.ndarray, start: int, files: list[_File], res: int) -> list[bool]:
    """Decode ``files`` into ``out[start:]`` (preallocated, so no second copy); True where it worked."""
    ok: list[bool] = []
    for i, f in enumerate(files):
        try:
            out[start + i] = decode_image(f.path, res)
            ok.append(True)
        except Exception:  # corrupt, truncated, zero-byte, not an image, too big
            ok.append(False)
    return ok


def load_folder(
    path: str | Path,
    resolution: int = 32,
    limit: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> RawImages:
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError("data.source", f"points to the folder {root}, which does not exist; check the path or pick another folder.")
    if not root.is_dir():
        raise DataError("data.source", f"points to {root}, which is a file, not a folder; pick the folder that holds the images.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError("data.source", f"points to the folder {root}, which cannot be read (permission denied); fix its permissions or copy the images elsewhere.")
    files, class_names, sidecars = _list_files(root)
    if not files:
        raise DataError(
            "data.source",
            f"points to the folder {root}, which holds no image files; put images in it (one sub-folder per class for labels).",
        )
    split = _find_split(str(root)) is not None
    if 0 < limit < len(files):
        # before decoding, so that a limited run reads only the files it uses
        labels_all = None if class_names is None else torch.tensor([f.label for f in files], dtype=torch.int64)
        is_val_all = torch.tensor([f.is_val for f in files], dtype=torch.bool) if split else None
        keep = limit_order(labels_all, len(files), limit, seed, is_val_all).tolist()
        files = [files[i] for i in keep]

    total = len(files)
    chunks = [files[i : i + CHUNK] for i in range(0, total, CHUNK)]
    # one thread a core: most of a small file's cost is Pillow's Python-level
    # header parsing, which holds the GIL, so more threads only contend
    n_workers = workers or min(32, os.cpu_count() or 1)
    array = np.empty((total, resolution, resolution, 3), dtype=np.uint8)
    ok_flags: list[bool] = []
    if progress is not None:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=max(1, min(n_workers, len(chunks)))) as pool:
        starts = range(0, total, CHUNK)
        for part in pool.map(_decode_into, [array] * len(chunks), starts, chunks, [resolution] * len(chunks)):
            ok_flags.extend(part)
            if progress is not None:
                progress(len(ok_flags), total)

    ok = [i for i, flag in enumerate(ok_flags) if flag]
    bad = [files[i].rel for i, flag in enumerate(ok_flags) if not flag]
    if not ok:
        examples = ", ".join(bad[:3])
        raise DataError(
            "data.source",
            f"points to the folder {root}, but none of its {total} files could be read as an image (for example {examples}); "
            "add JPEG or PNG images there.",
        )
    good = [files[i] for i in ok]
    if bad:
        array = array[ok]
    images = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    labels = None
    if class_names is not None:
        raw_labels = torch.tensor([f.label for f in good], dtype=torch.int64)
        present = sorted(set(raw_labels.tolist()))  # a class whose files were all unreadable is dropped
        remap = torch.full((len(class_names),), -1, dtype=torch.int64)
        remap[present] = torch.arange(len(present))
        labels = remap[raw_labels]
        class_names = [class_names[i] for i in present]

    captions = _captions(root, good, sidecars, class_names, labels)
    return RawImages(
        name=f"folder:{root.name}",
        images=images,
        labels=labels,
        class_names=class_names,
        captions=captions,
        is_val=torch.tensor([f.is_val for f in good], dtype=torch.bool) if split else None,
        skipped=len(bad),
        skipped_examples=bad[:SKIPPED_EXAMPLES],
    )


def _captions(
    root: Path, files: list[_File], sidecars: dict[str, str], class_names: list[str] | None, labels: torch.Tensor | None
) -> list[str] | None:
    table = _read_captions_csv(root)
    by_name = {key: text for key, text in table.items() if "/" not in key}  # bare file names
    if not table and not sidecars:
        return None
    out: list[str] = []
    for i, f in enumerate(files):
        text = table.get(f.rel)
        if text is None:
            text = by_name.get(f.rel.rsplit("/", 1)[-1])
        if text is None and _stem(f.rel) in sidecars:
            text = _read_sidecar(Path(sidecars[_stem(f.rel)]))
        if text is None:
            text = f"a photo of a {class_names[int(labels[i])]}" if class_names is not None and labels is not None else ""
        out.append(text)
    return out


__all__ = ["decode_image", "load_folder"]
