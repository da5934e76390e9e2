"""Text as a kind of data: passages in, fixed-length token windows out, in the shape the trainer already feeds.

A ``TextSet`` is an ImageSet whose ``images`` are token ids, N×L int64 (L = ``data.resolution``,
the context length in tokens), so the sampler, the device copy, the probes (effective rank and
spectrum of mean-pooled sentence embeddings), k-NN and the linear probe work on it unchanged;
``TokenViews`` is its view maker (a token window is its own view: the objectives corrupt it
themselves, as a masked LM must).

Sources: ``text:builtin`` (the standard library's documentation, see ``text_corpus``) or
``text:PATH``, a .txt file (no labels) or a folder of them (files directly in it: no labels;
sub-folders: one class each, as image folders).  ``text-chars:...`` tokenises by character
instead of the default byte-pair vocabulary (see ``models.text_tokenizers`` for why).

The split is seeded and made on passages before anything is learned: the held-out passages
(``data.val_fraction``, stratified by label) give the held-out continuations (each held-out
window's second half, scored given its first) and the labelled probe set, and the tokenizer is
learned from the training passages alone.  Windows are consecutive and do not overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ssl_studio.data.folder_scan import scan_folder
from ssl_studio.data.imageset import DataError, ImageSet, limit_order, plural, printable, split_indices
from ssl_studio.models.text_tokenizers import TOKENIZERS, CharTokenizer
from ssl_studio.regular_file import NotRegularFile, read_regular

TEXT_PREFIXES = {"text:": "bpe", "text-chars:": "chars"}
BPE_VOCAB = 1024  # ~3.4 characters a token on the built-in corpus; the embedding stays a tenth of the network
MIN_WINDOWS = 8  # per split: less cannot fill a batch or be probed
PARAGRAPH_CHARS = 400  # a file's sentences are joined into passages of about this size (the split's unit)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def is_text_source(source: str) -> bool:
    return any((source or "").strip().lower().startswith(p) for p in TEXT_PREFIXES)


@dataclass
class TextSet(ImageSet):
    """Token windows (``images``: N×L int64) with their labels, the split, and the tokenizer that made them."""

    modality: ClassVar[str] = "text"
    tokenizer: CharTokenizer | None = None
    unigram: torch.Tensor | None = None  # token counts of the training windows, for the unigram baseline
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.int64 or self.images.dim() != 2:
            raise ValueError(f"token windows must be int64 N×L, got {self.images.dtype} {tuple(self.images.shape)}")
        self.train_index = torch.as_tensor(self.train_index, dtype=torch.int64)
        self.val_index = torch.as_tensor(self.val_index, dtype=torch.int64)
        self.mean, self.std = (0.0,), (1.0,)


class TokenViews:
    """The view maker of a TextSet: a window is its own view, on the device as it came."""

    def plain(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def __call__(self, tokens: torch.Tensor, n_global: int, n_local: int = 0, generator=None) -> list[torch.Tensor]:
        return [tokens] * n_global


def _read_text_file(path: Path) -> str:
    """The file's text, or a DataError naming it: unreadable, binary (NUL bytes), not UTF-8, or empty."""
    try:
        raw = read_regular(path)
    except NotRegularFile as exc:
        raise DataError("data.source", f"{path} is {exc.what}, not a text file; remove it or point text: at .txt files only.") from None
    except OSError as exc:
        raise DataError("data.source", f"cannot read {path} ({exc.strerror}); check that it exists and is readable.") from None
    if b"\x00" in raw[:65536]:
        raise DataError("data.source", f"{path} is a binary file, not text (it holds NUL bytes); remove it or point text: at .txt files only.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError("data.source", f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8 or remove it.") from None
    if not text.strip():
        raise DataError("data.source", f"{path} is empty; add text to it or remove it.")
    return text


def _paragraphs(text: str) -> list[str]:
    """A file's text as passages of about PARAGRAPH_CHARS: sentences and blank-line paragraphs joined in order."""
    out, current = [], ""
    for piece in (p.strip() for p in _SENTENCE_END.split(text.replace("\r\n", "\n"))):
        if not piece:
            continue
        current = f"{current} {piece}" if current else piece
        if len(current) >= PARAGRAPH_CHARS:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _is_txt(rel: str) -> bool:
    return rel.lower().endswith(".txt")


def _skipped_notes(tree) -> list[str]:
    """One sentence each for the special files never opened and the links not followed, naming the first few."""
    def named(names: list[str]) -> str:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(printable(n) for n in names[:3]) + more

    notes = []
    if tree.special:
        were = "was" if len(tree.special) == 1 else "were"
        notes.append(f"{plural(len(tree.special), 'special file')} (named pipes, sockets or devices) {were} skipped, never "
                     f"opened: {named(tree.special)}.")
    if tree.skipped_links:
        were = "was" if len(tree.skipped_links) == 1 else "were"
        notes.append(f"{plural(len(tree.skipped_links), 'link')} {were} not followed (leading out of the folder, broken, or "
                     f"to text already read): {named(tree.skipped_links)}.")
    return notes


def read_text_path(path: Path) -> tuple[list[str], list[int] | None, list[str] | None, list[str]]:
    """(passages, labels or None, class names or None, notes) of a .txt file or a folder of them.

    A folder is listed by the image folders' scan (data/folder_scan.py): each real file read once, no link
    followed out of the folder, named pipes and devices never opened; the notes say what was skipped."""
    if not path.exists():
        raise DataError("data.source", f"{path} does not exist; pass a .txt file or a folder of them.")
    if not path.is_dir():  # a file, or a named pipe or device that _read_text_file refuses by name
        return _paragraphs(_read_text_file(path)), None, None, []
    tree = scan_folder(str(path))
    classes = sorted(d for d in tree.dirs.get("", []) if any(_is_txt(f) for f in tree.files_under(d)))
    if len(classes) == 1:
        raise DataError("data.source", f"{path} has only one class folder ({printable(classes[0])}); a probe needs at least 2 "
                                       "classes: add a sub-folder of .txt files for each further class, or put the files directly in "
                                       f"{path} to train without labels.")
    if classes:
        groups = [sorted(f for f in tree.files_under(c) if _is_txt(f)) for c in classes]
    else:
        groups = [sorted(f for f in tree.files.get("", []) if _is_txt(f))]
    if not any(groups):
        raise DataError("data.source", f"{path} holds no .txt files; add some (sub-folders give classes).")
    passages, labels = [], []
    for label, files in enumerate(groups):
        for rel in files:
            for p in _paragraphs(_read_text_file(path / rel)):
                passages.append(p)
                labels.append(label)
    notes = _skipped_notes(tree)
    if not classes:
        return passages, None, None, notes
    return passages, labels, [printable(c) for c in classes], notes


def _windows(passages: list[str], labels: list[int], index: torch.Tensor, tokenizer, length: int,
             num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive L-token windows of each label's passages (in ``index`` order) and their labels."""
    rows, row_labels = [], []
    for group in range(num_groups):
        stream = tokenizer.encode(" ".join(passages[i] for i in index.tolist() if labels[i] == group))  # a space between passages
        for start in range(0, len(stream) - length + 1, length):
            rows.append(stream[start:start + length])
            row_labels.append(group)
    if not rows:
        return torch.zeros((0, length), dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(row_labels, dtype=torch.int64)


_LEARNED: dict[tuple[str, int], CharTokenizer] = {}


def _learned(kind: str, texts: list[str]) -> CharTokenizer:
    """The tokenizer of ``kind`` learned from ``texts``, kept for this process (a run, its resume and its evaluation learn the same one)."""
    key = (kind, hash(tuple(texts)))
    if key not in _LEARNED:
        if len(_LEARNED) >= 8:
            _LEARNED.clear()
        _LEARNED[key] = TOKENIZERS[kind].learn(texts, BPE_VOCAB)
    return _LEARNED[key]


def load_textset(source: str, context: int, val_fraction: float, seed: int, limit: int = 0) -> TextSet:
    """Passages from ``source`` (at most ``limit``, a seeded sample stratified by label, when above 0),
    split by a seeded draw stratified by label, tokenised, cut into windows."""
    text = source.strip()
    prefix = next(p for p in TEXT_PREFIXES if text.lower().startswith(p))
    kind = TEXT_PREFIXES[prefix]
    where = text[len(prefix):].strip().strip('"').strip("'")
    if not where:
        raise DataError("data.source", f"is {source!r} without a path; write {prefix}builtin or {prefix}PATH (a .txt file or a folder).")
    if where == "builtin":
        from ssl_studio.data.text_corpus import builtin_passages

        passages, labels, names = builtin_passages()
        name, skipped = "text-builtin", []
    else:
        path = Path(where).expanduser()
        passages, labels, names, skipped = read_text_path(path)
        name = f"text-{printable(path.stem) or 'text'}"
    if not 0 < val_fraction < 1:
        raise DataError("data.val_fraction", f"is {val_fraction} but text needs held-out passages for its continuations and probe; set it between 0.05 and 0.5.")
    label_tensor = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
    if 0 < limit < len(passages):
        keep = limit_order(label_tensor, len(passages), limit, seed).tolist()
        passages = [passages[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
        label_tensor = label_tensor[keep] if label_tensor is not None else None
    train_p, val_p = split_indices(label_tensor, len(passages), val_fraction, seed)
    tokenizer = _learned(kind, [passages[i] for i in train_p.tolist()])
    group_of = labels if labels is not None else [0] * len(passages)
    groups = len(names) if names else 1
    train_x, train_y = _windows(passages, group_of, train_p, tokenizer, context, groups)
    val_x, val_y = _windows(passages, group_of, val_p, tokenizer, context, groups)
    if len(train_x) < MIN_WINDOWS or len(val_x) < MIN_WINDOWS:
        raise DataError("data.source", f"{source!r} gives only {plural(len(train_x), 'training window')} and "
                                       f"{plural(len(val_x), 'held-out window')} of {context} tokens; at least {MIN_WINDOWS} of each are "
                                       "needed: add text, or lower data.resolution (the context length in tokens).")
    unigram = torch.bincount(train_x.flatten(), minlength=tokenizer.vocab_size)
    n_train = len(train_x)
    return TextSet(
        name=name, images=torch.cat([train_x, val_x]), labels=torch.cat([train_y, val_y]) if labels is not None else None,
        class_names=names, captions=None, masks=None, train_index=torch.arange(n_train),
        val_index=torch.arange(n_train, n_train + len(val_x)), tokenizer=tokenizer, unigram=unigram, sources=list(names or []),
        notes=[f"{len(passages)} passages, {tokenizer.kind} vocabulary of {tokenizer.vocab_size} tokens, "
               f"{n_train} training and {len(val_x)} held-out windows of {context} tokens.", *skipped],
    )


__all__ = ["TEXT_PREFIXES", "TextSet", "TokenViews", "is_text_source", "load_textset", "read_text_path"]
