"""Captions for a folder of images: ``captions.csv`` at the root and ``.txt`` sidecars.

``captions.csv`` has columns ``file,caption`` (a header row is optional); the
file is relative to the root, and a bare file name also matches.  A caption
with an unquoted comma keeps its commas (the caption is the last column).
A sidecar ``.txt`` with an image's stem is that image's caption; the CSV wins
where both exist.  Images without a caption get "a photo of a <class>" in a
labelled folder and "" in an unlabelled one, so the list stays one per image.

What is refused, and why (each with one sentence naming the file):

* a caption that runs over several lines: captions are one line each, and a
  line break inside a quoted field is nearly always an unclosed quote that has
  swallowed the rows after it (the sentence names the line it starts on);
* a CSV most of whose rows name no file in the folder: the paths are then
  relative to some other folder, and every image would silently fall back.
  Fewer unmatched rows are reported as a note naming the first few.

Whether too few images have captions for an objective that needs them is
decided where the objective is known (``engine.build.load_data``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath

from ssl_studio.data.imageset import DataError, printable

EXAMPLES = 3


def _key(name: str) -> str:
    return PurePosixPath(name.strip().replace("\\", "/")).as_posix()


def read_captions_csv(root: Path) -> dict[str, str]:
    """file (as written, posix) → caption, from ``root/captions.csv``; {} when there is none."""
    path = root / "captions.csv"
    if not path.is_file():
        return {}
    shown = printable(str(path))
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            line = 0
            for row in reader:
                rows.append((line + 1, row))
                line = reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError("data.source", f"has a captions file {shown} that cannot be read ({printable(str(exc))}); "
                                       "save it as UTF-8 CSV with columns file,caption.") from None
    for start, row in rows:
        if any("\n" in cell or "\r" in cell for cell in row):
            raise DataError("data.source", f"has a captions file {shown} whose line {start} opens a quoted caption that runs over "
                                           "several lines (an unclosed quote swallows the rows after it); close the quote on that line.")
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return {}
    head = [c.strip().lower() for c in rows[0][1]]
    if "file" in head and "caption" in head:
        fi, ci, rows = head.index("file"), head.index("caption"), rows[1:]
    else:
        fi, ci = 0, 1
    last = ci == max(fi, ci)
    out: dict[str, str] = {}
    for _, row in rows:
        if len(row) > max(fi, ci) and row[fi].strip():
            caption = ",".join(row[ci:]) if last else row[ci]  # an unquoted comma in the caption keeps it whole
            out[_key(row[fi])] = caption.strip()
    return out


def check_caption_names(root: Path, table: dict[str, str], rel_paths: list[str]) -> list[str]:
    """Refuse a captions.csv most of whose rows match no file; notes naming the unmatched ones otherwise."""
    if not table:
        return []
    rels = set(rel_paths)
    bare = {r.rsplit("/", 1)[-1] for r in rel_paths}
    unmatched = [k for k in table if k not in rels and not ("/" not in k and k in bare)]
    if not unmatched:
        return []
    shown = printable(str(root / "captions.csv"))
    examples = ", ".join(printable(k) for k in unmatched[:EXAMPLES])
    if 2 * len(unmatched) > len(table):
        raise DataError("data.source", f"has a captions file {shown} whose rows name {len(unmatched)} files (of {len(table)}) that are "
                                       f"not in the folder (for example {examples}); write each file relative to {printable(str(root))} "
                                       "(cats/a.jpg) or as a bare name (a.jpg).")
    return [f"{len(unmatched)} rows of {shown} name no file in the folder ({examples}); they are ignored."]


def read_sidecar(path: Path) -> str:
    try:
        return " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    except OSError:
        return ""


def stem(rel: str) -> str:
    return os.path.splitext(rel)[0]


def captions_for(table: dict[str, str], rels: list[str], sidecars: dict[str, str], class_names: list[str] | None,
                 labels: list[int] | None) -> list[str] | None:
    """One caption per image (see the module docstring); None when the folder has no captions at all."""
    if not table and not sidecars:
        return None
    by_name = {key: text for key, text in table.items() if "/" not in key}  # bare file names
    out: list[str] = []
    for i, rel in enumerate(rels):
        text = table.get(rel) or by_name.get(rel.rsplit("/", 1)[-1]) or None
        if text is None and stem(rel) in sidecars:
            text = read_sidecar(Path(sidecars[stem(rel)])) or None
        if text is None:
            text = f"a photo of a {class_names[labels[i]]}" if class_names is not None and labels is not None else ""
        out.append(text)
    return out


__all__ = ["captions_for", "check_caption_names", "read_captions_csv", "read_sidecar", "stem"]
