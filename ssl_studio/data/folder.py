"""A user's own images from a folder, whatever they are.

Layouts, decided by what the folder holds: class sub-folders (``root/cat/*.jpg``, any depth) give
labels, ImageFolder style, and loose files beside them are ignored; ``train/`` and ``test/`` (or
``val/``, ``valid/``, ``validation/``) above the class folders give the split (test -> ``val_index``);
a folder with no sub-folder holding images is one unlabelled set.  A ``test/`` holding a class
``train/`` lacks is refused: every protocol would score the model on a class it never saw.

Anything Pillow decodes becomes 8-bit RGB the way a viewer shows it: 16-bit scaled, not clipped;
transparency composited on white (the page most images with alpha were drawn for); CMYK, YCbCr,
1-bit and LAB converted; EXIF orientation applied; animations give their first frame.  Images are
centre-cropped to a square and resized (antialiased bilinear), as every source is.

Captions come from ``captions.csv`` and ``.txt`` sidecars (folder_captions.py); links are followed
only inside the folder, each real folder and file once (folder_scan.py).  Files that cannot be used
(unreadable, corrupt, empty, not images, under ``MIN_SIDE`` pixels on a side, over Pillow's
decompression-bomb limit) are skipped, counted and named in the RawImages' ``notes``, never fatal
unless nothing is left.  Decoding runs in a thread pool: Pillow releases the GIL while it decodes.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from ssl_studio.data.folder_captions import captions_for, check_caption_names, read_captions_csv, stem
from ssl_studio.data.folder_scan import FolderTree, scan_folder
from ssl_studio.data.imageset import DataError, RawImages, limit_order, plural, printable

IGNORED_NAMES = {"thumbs.db", "desktop.ini"}  # system litter, not worth reporting
SKIPPED_EXAMPLES = 5
NOTE_EXAMPLES = 3
CHUNK = 64  # files per thread-pool task: amortises scheduling, keeps progress smooth
MIN_SIDE = 4  # pixels on the shorter side below which an image is skipped (see the module docstring)

UNREADABLE, TOO_SMALL, TOO_LARGE = "unreadable", "too small", "too large"


@dataclass
class _File:
    path: str  # absolute path as a string: pathlib costs ~50 µs a file at 10k files
    rel: str  # posix path relative to the root, for messages and captions.csv
    label: int  # -1 when unlabelled
    is_val: bool


def _part_contents(tree: FolderTree, part: str) -> tuple[dict[str, list[str]], list[str]]:
    """Class name → files for each sub-folder of ``part`` that holds files, and the loose files."""
    prefix = f"{part}/" if part else ""
    classes = {d: files for d in tree.dirs.get(part, []) if (files := tree.files_under(prefix + d))}
    return classes, [prefix + f for f in tree.files.get(part, [])]


def _list_files(root: Path, tree: FolderTree) -> tuple[list[_File], list[str] | None, dict[str, str]]:
    """The candidate files, class names (None when unlabelled) and caption sidecars (image stem → .txt)."""
    top = str(root)
    split = tree.split
    parts = [(split[0], False), (split[1], True)] if split else [("", False)]
    for part, _ in parts:
        if part and part in tree.skipped_links:
            raise DataError("data.source", f"points to {printable(top)}, whose {printable(part)}/ is a link that leads out of the folder "
                                           "(or back into it), which is not followed; point data.source at a folder that holds "
                                           f"{printable(part)}/ itself.")
    contents = [(_part_contents(tree, p), is_val) for p, is_val in parts]
    labelled = [bool(classes) for (classes, _), _ in contents]
    if split and any(labelled) and not all(labelled):
        raise DataError(
            "data.source",
            f"points to {printable(top)}, whose {split[0]}/ and {split[1]}/ differ: one has class sub-folders and the other not; "
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
    stems = {stem(f) for f, _, _ in raw if not f.lower().endswith(".txt")}
    files: list[_File] = []
    sidecars: dict[str, str] = {}
    for rel, c, is_val in raw:
        name = rel.rsplit("/", 1)[-1].lower()
        if name in IGNORED_NAMES or rel.lower() == "captions.csv":
            continue
        if name.endswith(".txt") and stem(rel) in stems:
            sidecars[stem(rel)] = os.path.join(top, rel)
            continue
        files.append(_File(os.path.join(top, rel), rel, index[c] if c is not None else -1, is_val))
    return files, class_names, sidecars


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


class ImageTooSmall(ValueError):
    """An image whose shorter side is under MIN_SIDE pixels."""


def decode_image(path: str | Path, res: int) -> np.ndarray:
    """H×W×3 uint8 at ``res``; raises ImageTooSmall under MIN_SIDE, something else on anything unreadable."""
    with Image.open(path) as im:
        if min(im.size) < MIN_SIDE:
            raise ImageTooSmall(f"{im.size[0]}×{im.size[1]} pixels")
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


def _decode_into(out: np.ndarray, start: int, files: list[_File], res: int) -> list[str | None]:
    """Decode ``files`` into ``out[start:]`` (preallocated, so no second copy); None where it worked, else why not."""
    why: list[str | None] = []
    for i, f in enumerate(files):
        try:
            out[start + i] = decode_image(f.path, res)
            why.append(None)
        except ImageTooSmall:
            why.append(TOO_SMALL)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            why.append(TOO_LARGE)
        except Exception:  # corrupt, truncated, zero-byte, not an image
            why.append(UNREADABLE)
    return why


def _decode_all(files: list[_File], resolution: int, progress, workers: int | None) -> tuple[np.ndarray, list[str | None]]:
    total = len(files)
    chunks = [files[i : i + CHUNK] for i in range(0, total, CHUNK)]
    # one thread a core: most of a small file's cost is Pillow's Python-level
    # header parsing, which holds the GIL, so more threads only contend
    n_workers = workers or min(32, os.cpu_count() or 1)
    array = np.empty((total, resolution, resolution, 3), dtype=np.uint8)
    reasons: list[str | None] = []
    if progress is not None:
        progress(0, total)
    # For the whole decode (the filters are process-wide, so they are set once around the pool, not per
    # thread): Pillow's decompression-bomb warning becomes an error, so the file is skipped by name
    # rather than warned about without one; Pillow's other warnings (odd EXIF, palette transparency)
    # are about files that decode fine.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
        with ThreadPoolExecutor(max_workers=max(1, min(n_workers, len(chunks)))) as pool:
            starts = range(0, total, CHUNK)
            for part in pool.map(_decode_into, [array] * len(chunks), starts, chunks, [resolution] * len(chunks)):
                reasons.extend(part)
                if progress is not None:
                    progress(len(reasons), total)
    return array, reasons


def _listed(names: list[str]) -> str:
    return ", ".join(names[:NOTE_EXAMPLES]) + (", ..." if len(names) > NOTE_EXAMPLES else "")


def _skip_notes(files: list[_File], reasons: list[str | None], links: list[str], special: list[str] = ()) -> list[str]:
    """One sentence for each kind of file skipped, naming the first few."""
    megapixels = f"{(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f}"
    kinds = ((UNREADABLE, "unreadable file", "corrupt, empty or not an image"),
             (TOO_SMALL, "image", f"under {MIN_SIDE} pixels on a side"),
             (TOO_LARGE, "image", f"over Pillow's decompression-bomb limit of {megapixels} megapixels"))
    notes = []
    for kind, noun, why in kinds:
        names = [printable(f.rel) for f, r in zip(files, reasons) if r == kind]
        if names:
            notes.append(f"{plural(len(names), noun)} {'was' if len(names) == 1 else 'were'} skipped ({why}): {_listed(names)}.")
    if special:
        notes.append(f"{plural(len(special), 'special file')} (named pipes, sockets or devices) {'was' if len(special) == 1 else 'were'} "
                     f"skipped, never opened: {_listed([printable(x) for x in special])}.")
    if links:
        notes.append(f"{plural(len(links), 'link')} {'was' if len(links) == 1 else 'were'} not followed (leading out of the "
                     f"folder, broken, or to images already read): {_listed([printable(x) for x in links])}.")
    return notes


def _nothing_usable(root: Path, files: list[_File], reasons: list[str | None]) -> DataError:
    parts = []
    for kind, words in ((UNREADABLE, "unreadable"), (TOO_SMALL, f"under {MIN_SIDE}×{MIN_SIDE} pixels"),
                        (TOO_LARGE, "over the decompression-bomb limit")):
        names = [printable(f.rel) for f, why in zip(files, reasons) if why == kind]
        if names:
            parts.append(f"{len(names)} {words}, such as {', '.join(names[:NOTE_EXAMPLES])}")
    return DataError(
        "data.source",
        f"points to the folder {printable(str(root))}, but none of its {len(files)} files could be read as an image "
        f"({'; '.join(parts)}); add JPEG or PNG images of at least {MIN_SIDE}×{MIN_SIDE} pixels there.",
    )


def _check_test_classes(root: Path, split: tuple[str, str], labels: list[int], is_val: list[bool], class_names: list[str],
                        limit: int) -> None:
    """Refuse a test split holding a class the training split lacks (it would be scored on a class never trained on)."""
    train = {y for y, v in zip(labels, is_val) if not v}
    extra = sorted({y for y, v in zip(labels, is_val) if v} - train)
    if not extra:
        return
    names = ", ".join(printable(class_names[y]) for y in extra[:NOTE_EXAMPLES]) + (", ..." if len(extra) > NOTE_EXAMPLES else "")
    why = f" after data.limit = {limit} picked the images" if limit > 0 else ""
    fix = "raise data.limit, or " if limit > 0 else ""
    raise DataError("data.source", f"points to {printable(str(root))}, whose {split[1]}/ holds {plural(len(extra), 'class', 'classes')} "
                                   f"that {split[0]}/ has no usable images of{why} ({names}), so they would be scored without being "
                                   f"trained on; {fix}add images of them to {split[0]}/ or remove them from {split[1]}/.")


def load_folder(
    path: str | Path,
    resolution: int = 32,
    limit: int = 0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> RawImages:
    root = Path(path).expanduser()
    shown = printable(str(root))
    if not root.exists():
        raise DataError("data.source", f"points to the folder {shown}, which does not exist; check the path or pick another folder.")
    if not root.is_dir():
        raise DataError("data.source", f"points to {shown}, which is a file, not a folder; pick the folder that holds the images.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError("data.source", f"points to the folder {shown}, which cannot be read (permission denied); fix its permissions or copy the images elsewhere.")
    tree = scan_folder(str(root))
    files, class_names, sidecars = _list_files(root, tree)
    if not files:
        links = f" ({plural(len(tree.skipped_links), 'link')} leading out of it or back into it not followed)" if tree.skipped_links else ""
        raise DataError(
            "data.source",
            f"points to the folder {shown}, which holds no image files{links}; put images in it (one sub-folder per class for labels).",
        )
    table = read_captions_csv(root)
    notes = check_caption_names(root, table, [f.rel for f in files])
    split = tree.split
    if 0 < limit < len(files):
        # before decoding, so that a limited run reads only the files it uses
        labels_all = None if class_names is None else torch.tensor([f.label for f in files], dtype=torch.int64)
        is_val_all = torch.tensor([f.is_val for f in files], dtype=torch.bool) if split else None
        keep = limit_order(labels_all, len(files), limit, seed, is_val_all).tolist()
        files = [files[i] for i in keep]

    array, reasons = _decode_all(files, resolution, progress, workers)
    ok = [i for i, why in enumerate(reasons) if why is None]
    bad = [printable(files[i].rel) for i, why in enumerate(reasons) if why is not None]
    if not ok:
        raise _nothing_usable(root, files, reasons)
    notes = _skip_notes(files, reasons, tree.skipped_links, tree.special) + notes
    good = [files[i] for i in ok]
    if bad:
        array = array[ok]
    images = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    labels = None
    if class_names is not None:
        if split:
            _check_test_classes(root, split, [f.label for f in good], [f.is_val for f in good], class_names, limit)
        raw_labels = torch.tensor([f.label for f in good], dtype=torch.int64)
        present = sorted(set(raw_labels.tolist()))  # a class whose files were all unreadable is dropped
        remap = torch.full((len(class_names),), -1, dtype=torch.int64)
        remap[present] = torch.arange(len(present))
        labels = remap[raw_labels]
        class_names = [printable(class_names[i]) for i in present]

    captions = captions_for(table, [f.rel for f in good], sidecars, class_names, None if labels is None else labels.tolist())
    return RawImages(
        name=f"folder:{printable(root.name)}",
        images=images,
        labels=labels,
        class_names=class_names,
        captions=captions,
        is_val=torch.tensor([f.is_val for f in good], dtype=torch.bool) if split else None,
        skipped=len(bad),
        skipped_examples=bad[:SKIPPED_EXAMPLES],
        skipped_links=len(tree.skipped_links),
        skipped_link_examples=[printable(x) for x in tree.skipped_links[:SKIPPED_EXAMPLES]],
        notes=notes,
    )


__all__ = ["MIN_SIDE", "ImageTooSmall", "decode_image", "load_folder"]
