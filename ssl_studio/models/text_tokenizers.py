"""Tokenizers for the text lab: characters, or a small byte-pair vocabulary learned from the corpus.

Both map text to ids with three specials first (``<pad>`` 0, ``<unk>`` 1, ``<mask>`` 2: the
masked LM's corruption token, kept in both so that the causal and the masked LM share one
vocabulary and one initial network).  Whitespace runs become one space, so a docstring's line
breaks do not spend tokens.

``BPETokenizer`` is Sennrich et al. (2016)'s byte-pair encoding on characters: words (a letter
or digit run, or one other mark, each with its leading space) start as characters, and the most
frequent adjacent pair is merged until the vocabulary is full.  Ties go to the pair that sorts
first, so the vocabulary is a function of the text alone (nothing random to seed).  It is the
default: a token is about 3-4 characters of English, so a 32-token context holds a sentence,
enough for the probe to read what a passage is about and for a continuation to be predictable;
characters fit a few words into the same context and spend the model on spelling.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from typing import Iterable, Sequence

PAD, UNK, MASK = "<pad>", "<unk>", "<mask>"
TEXT_SPECIALS = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]")


def normalise(text: str) -> str:
    """Whitespace runs as single spaces, ends stripped."""
    return _SPACES.sub(" ", text).strip()


class CharTokenizer:
    """One id per character seen in the training text; others become ``<unk>``."""

    kind = "chars"

    def __init__(self, symbols: Sequence[str]):
        self.itos: list[str] = list(TEXT_SPECIALS) + [s for s in symbols if s not in TEXT_SPECIALS]
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int = 0) -> "CharTokenizer":
        counts = Counter()
        for t in texts:
            counts.update(normalise(t))
        return cls(sorted(counts, key=lambda c: (-counts[c], c)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, UNK_ID) for c in normalise(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[i] if len(TEXT_SPECIALS) <= i < len(self.itos) else (" [MASK]" if i == MASK_ID else "") for i in map(int, ids))

    def to_json(self) -> str:
        return json.dumps({"format": 1, "kind": self.kind, "vocab": self.itos[len(TEXT_SPECIALS):]}, indent=0)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()  # type: ignore[union-attr]


class BPETokenizer(CharTokenizer):
    """Characters plus learned merges, applied in the order they were learned."""

    kind = "bpe"

    def __init__(self, symbols: Sequence[str], merges: Sequence[tuple[str, str]]):
        self.merges = [tuple(m) for m in merges]
        super().__init__(list(symbols) + [a + b for a, b in self.merges])
        self.rank = {m: i for i, m in enumerate(self.merges)}
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def learn(cls, texts: Iterable[str], vocab_size: int = 1024) -> "BPETokenizer":
        words = Counter()
        for t in texts:
            words.update(_WORD.findall(normalise(t)))
        chars = Counter()
        for w, n in words.items():
            for c in w:
                chars[c] += n
        symbols = sorted(chars, key=lambda c: (-chars[c], c))
        seqs = [list(w) for w in words]
        freq = [words[w] for w in words]
        pairs: Counter = Counter()
        where: dict[tuple[str, str], set[int]] = defaultdict(set)
        for i, s in enumerate(seqs):
            for p in zip(s, s[1:]):
                pairs[p] += freq[i]
                where[p].add(i)
        merges: list[tuple[str, str]] = []
        budget = max(0, vocab_size - len(TEXT_SPECIALS) - len(symbols))
        heap = [(-n, p) for p, n in pairs.items()]  # (-count, pair): the best pair first, ties to the pair that sorts first
        heapq.heapify(heap)
        while len(merges) < budget and heap:
            neg, best = heapq.heappop(heap)
            if pairs.get(best, 0) != -neg:
                continue  # a stale entry: the pair's count changed since it was pushed
            if -neg < 2:
                break
            merges.append(best)
            joined = best[0] + best[1]
            touched = set()
            for i in sorted(where.pop(best, ())):
                s = seqs[i]
                for p in zip(s, s[1:]):  # take the word's old pairs out, put its new ones in
                    pairs[p] -= freq[i]
                    touched.add(p)
                out, j = [], 0
                while j < len(s):
                    if j + 1 < len(s) and s[j] == best[0] and s[j + 1] == best[1]:
                        out.append(joined)
                        j += 2
                    else:
                        out.append(s[j])
                        j += 1
                seqs[i] = out
                for p in zip(out, out[1:]):
                    pairs[p] += freq[i]
                    where[p].add(i)
                    touched.add(p)
            pairs.pop(best, None)
            touched.discard(best)
            for p in touched:
                if pairs[p] > 0:
                    heapq.heappush(heap, (-pairs[p], p))
                else:
                    del pairs[p]
        return cls(symbols, merges)

    def _word_ids(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.rank.get(p, len(self.rank)), k) for k, p in enumerate(zip(parts, parts[1:]))]
            r, k = min(ranked)
            if r == len(self.rank):
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        ids = [self.stoi.get(p, UNK_ID) for p in parts]
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in _WORD.findall(normalise(text)):
            out.extend(self._word_ids(w))
        return out

    def to_json(self) -> str:
        base = len(self.itos) - len(self.merges)
        return json.dumps({"format": 1, "kind": self.kind, "symbols": self.itos[len(TEXT_SPECIALS):base],
                           "merges": [list(m) for m in self.merges]}, indent=0)


TOKENIZERS = {"bpe": BPETokenizer, "chars": CharTokenizer}


def tokenizer_from_json(text: str) -> CharTokenizer:
    """A tokenizer saved by ``to_json`` (a run folder's ``tokenizer.json``)."""
    data = json.loads(text)
    if data.get("kind") == "bpe":
        return BPETokenizer(data["symbols"], [tuple(m) for m in data["merges"]])
    if data.get("kind") == "chars":
        return CharTokenizer(data["vocab"])
    raise ValueError("not a text-lab tokenizer (tokenizer.json has another layout)")


__all__ = ["BPETokenizer", "CharTokenizer", "MASK_ID", "PAD_ID", "TEXT_SPECIALS", "TOKENIZERS", "UNK_ID", "normalise",
           "tokenizer_from_json"]
