"""A small word-level tokenizer built from the run's own captions.

CLIP uses a 49,152-token byte-pair encoding learned on web text (Radford et al.
2021, sec. 2.4).  The lab may not download one, and its captions are short and
drawn from a few hundred words, so a word-level vocabulary built from the
training captions covers them exactly: text is lower-cased, split into runs of
letters/digits and single punctuation marks, and every word seen at least
``min_count`` times gets an id.  Anything else becomes ``<unk>``, which is what
a zero-shot prompt with a word the captions never used turns into (the panel
shows it, so a user sees why "a photo of a pentagon" scores like noise).

Sequences are ``<sot> w1 ... wn <eot>`` padded with ``<pad>`` to the context
length, truncated so that ``<eot>`` always fits: the text encoder pools its
features at ``<eot>`` (CLIP's convention), so it must be there.

The vocabulary is the tokenizer's whole state: ``to_json``/``from_json`` save it
in the run folder (``tokenizer.json``) and in checkpoints, so a reloaded run
maps words to the same ids even if the captions on disk have changed since.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Iterable, Sequence

import torch

PAD, SOT, EOT, UNK = "<pad>", "<sot>", "<eot>", "<unk>"
SPECIALS = (PAD, SOT, EOT, UNK)
PAD_ID, SOT_ID, EOT_ID, UNK_ID = 0, 1, 2, 3

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}'])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def split_words(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks, in order."""
    return _TOKEN.findall(str(text).lower())


class WordTokenizer:
    """Words ↔ ids; ids 0..3 are the special tokens."""

    def __init__(self, words: Sequence[str], min_count: int = 1):
        seen = set(SPECIALS)
        self.itos: list[str] = list(SPECIALS)
        for w in words:
            if w not in seen:
                seen.add(w)
                self.itos.append(w)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.min_count = int(min_count)

    # -- building -----------------------------------------------------------------------
    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, max_size: int = 20000,
              always: Iterable[str] = ()) -> "WordTokenizer":
        """A vocabulary of the words of ``texts`` seen at least ``min_count`` times, most frequent first.

        ``always``: extra texts whose words are kept whatever their count (class
        names, so that a zero-shot prompt can name every class).
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter()
        for t in texts:
            counts.update(split_words(t))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        words = words[: max(0, max_size - len(SPECIALS))]
        extra = []
        for t in always:
            extra.extend(w for w in split_words(t) if w not in extra)
        kept = set(words)
        return cls(words + [w for w in extra if w not in kept], min_count=min_count)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # -- use --------------------------------------------------------------------------
    def ids(self, text: str) -> list[int]:
        return [self.stoi.get(w, UNK_ID) for w in split_words(text)]

    def encode(self, texts: Sequence[str] | str, context_length: int = 32) -> torch.Tensor:
        """N×context_length int64: ``<sot> ids <eot> <pad>...``, words beyond the context dropped."""
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 (room for <sot> and <eot>), got {context_length}")
        out = torch.full((len(texts), context_length), PAD_ID, dtype=torch.int64)
        for i, text in enumerate(texts):
            ids = [SOT_ID] + self.ids(text)[: context_length - 2] + [EOT_ID]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of one id sequence: specials other than ``<unk>`` dropped, stopping at ``<eot>``."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words = []
        for i in ids:
            i = int(i)
            if i == EOT_ID:
                break
            if i in (PAD_ID, SOT_ID):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        text = " ".join(words)
        text = _NO_SPACE_BEFORE.sub(r"\1", text)
        return _NO_SPACE_AFTER.sub(r"\1", text)

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` outside the vocabulary (they encode as ``<unk>``)."""
        return [w for w in split_words(text) if w not in self.stoi]

    # -- persistence ------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"format": 1, "kind": "word", "lowercase": True, "min_count": self.min_count,
                           "specials": list(SPECIALS), "vocab": self.itos}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "WordTokenizer":
        data = json.loads(text)
        if data.get("kind") != "word" or list(data.get("specials", [])) != list(SPECIALS):
            raise ValueError("not a word tokenizer written by SSL Studio (tokenizer.json has another layout)")
        vocab = list(data["vocab"])
        if vocab[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError("tokenizer.json's vocabulary does not start with the special tokens")
        return cls(vocab[len(SPECIALS):], min_count=int(data.get("min_count", 1)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.itos == other.itos


__all__ = ["EOT_ID", "PAD_ID", "SOT_ID", "SPECIALS", "UNK_ID", "WordTokenizer", "split_words"]
