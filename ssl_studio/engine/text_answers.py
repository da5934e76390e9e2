"""Ask the text lab's models: a prompt to continue, or a sentence with ``[MASK]`` to fill, answered by both LMs.

The chapter's exercise E2 compares a causal and a masked LM trained from the same weights; this
module lets a person put the same question to both (the Text panel's Ask box and ``ssl-studio ask``):

- A **prompt** (no ``[MASK]``): the causal LM continues it token by token; the masked LM
  continues it by appending ``<mask>`` tokens and filling them left to right (each fill sees the
  prompt, its earlier fills and masks to the right: the same question its left-to-right masked
  perplexity asks).  Both draw with one rule: greedy at temperature 0, otherwise sampled from the
  ``top_k`` likeliest tokens at that temperature with a fixed seed, so an answer can be asked again.
- A **sentence with [MASK]**: the masked LM's top-k fills of each mask with their probabilities
  (one bidirectional pass; special tokens are never offered, so the shown probabilities sum to at
  most 1), and the causal LM's ranking of candidate fills (the masked LM's candidates and the causal
  LM's own next-token top-k) by the log-likelihood of the sentence with that fill, up to the next
  mask (a causal LM cannot read a mask to its right).

Everything here takes ``TextTransformer`` models with their tokenizer (``engine.trained.load_text_model``
loads one from a run folder); nothing here knows about Qt.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from ssl_studio.models.text_tokenizers import _WORD, MASK_ID, TEXT_SPECIALS, UNK_ID, normalise
from ssl_studio.params import ConfigError

MASK_MARK = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)
_PLACEHOLDER = "\x00"  # stands for a mask while the text is split into words; never in a vocabulary
MAX_MASKS = 8


@dataclass
class AskSettings:
    """How the models answer: the sampling rule of continuations, their length, and how many fills are listed."""

    temperature: float = 0.8  # 0: greedy
    top_k: int = 20  # continuations sample from this many likeliest tokens
    new_tokens: int = 16  # continuation length (fewer when the context is full)
    fills: int = 5  # fills listed per [MASK]
    seed: int = 0

    def rule(self) -> str:
        """The sampling rule in words."""
        if self.temperature <= 0:
            return "greedy (the likeliest token each time)"
        return f"sampled at temperature {self.temperature:g} from the {self.top_k} likeliest tokens (seed {self.seed})"

    def check(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError("--temperature", f"must be 0 (greedy) or above, got {self.temperature}")
        for name, value in (("--top-k", self.top_k), ("--tokens", self.new_tokens), ("--fills", self.fills)):
            if value < 1:
                raise ConfigError(name, f"must be at least 1, got {value}")


# -- text to token ids ----------------------------------------------------------------------

def has_mask(text: str) -> bool:
    return MASK_MARK.search(text or "") is not None


def unknown_characters(tokenizer, text: str) -> list[str]:
    """Characters of ``text`` (masks aside) that the tokenizer never saw: they could only be read as <unk>."""
    plain = normalise(MASK_MARK.sub(" ", text))
    return sorted({c for c in plain if c not in tokenizer.stoi})


def encode_with_masks(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with each ``[MASK]`` (or ``<mask>``) as one <mask> token.

    Byte-pair words carry their leading space (" sat"), so a mask stands for a whole word-piece with its
    space, as the masked LM's training masks did; for characters a mask is one character.
    """
    plain = normalise(MASK_MARK.sub(_PLACEHOLDER, text))
    if tokenizer.kind == "chars":
        return [MASK_ID if c == _PLACEHOLDER else tokenizer.stoi.get(c, UNK_ID) for c in plain]
    ids: list[int] = []
    for word in _WORD.findall(plain):  # " sat" and " \0": a mask takes the space before it, as a masked word-piece did
        if word.strip() == _PLACEHOLDER:
            ids.append(MASK_ID)
        else:
            ids.extend(tokenizer._word_ids(word))
    return ids


# -- the answers --------------------------------------------------------------------------

def _ordinary(logits: torch.Tensor) -> torch.Tensor:
    """Logits with the special tokens ruled out (an answer is never <pad>, <unk> or <mask>)."""
    out = logits.float().clone()
    out[..., : len(TEXT_SPECIALS)] = -float("inf")
    return out


def _pick(logits: torch.Tensor, settings: AskSettings, generator: torch.Generator) -> int:
    logits = _ordinary(logits)
    if settings.temperature <= 0:
        return int(logits.argmax())
    top = logits.topk(min(settings.top_k, logits.numel()))
    probs = torch.softmax(top.values / settings.temperature, -1).cpu()
    return int(top.indices[int(torch.multinomial(probs, 1, generator=generator))])


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def continue_causal(model, ids: list[int], count: int, settings: AskSettings) -> list[int]:
    """``count`` tokens after ``ids`` from the causal LM, one at a time."""
    g = torch.Generator().manual_seed(settings.seed)
    out = list(ids)
    dev = _device(model)
    for _ in range(count):
        x = torch.tensor([out], dtype=torch.int64, device=dev)
        logits = model.logits(model.states(x, causal=True)[0, -1])
        out.append(_pick(logits, settings, g))
    return out[len(ids):]


@torch.no_grad()
def continue_masked(model, ids: list[int], count: int, settings: AskSettings) -> list[int]:
    """``count`` tokens after ``ids`` from the masked LM: masks appended, filled left to right."""
    g = torch.Generator().manual_seed(settings.seed)
    x = torch.tensor([list(ids) + [MASK_ID] * count], dtype=torch.int64, device=_device(model))
    for pos in range(len(ids), len(ids) + count):
        logits = model.logits(model.states(x, causal=False)[0, pos])
        x[0, pos] = _pick(logits, settings, g)
    return x[0, len(ids):].tolist()


@torch.no_grad()
def masked_fills(model, ids: list[int], k: int) -> list[list[tuple[int, float]]]:
    """For each <mask> in ``ids``: the masked LM's ``k`` likeliest ordinary tokens and their probabilities (one pass)."""
    x = torch.tensor([ids], dtype=torch.int64, device=_device(model))
    positions = [i for i, t in enumerate(ids) if t == MASK_ID]
    probs = torch.softmax(model.logits(model.states(x, causal=False)[0]).float(), -1)
    out = []
    for pos in positions:
        p = probs[pos].clone()
        p[: len(TEXT_SPECIALS)] = -1.0  # never offered; the others keep their probability under the full softmax
        top = p.topk(min(k, p.numel() - len(TEXT_SPECIALS)))
        out.append([(int(t), float(q)) for t, q in zip(top.indices.tolist(), top.values.tolist())])
    return out


@torch.no_grad()
def causal_log_likelihood(model, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Sum over positions ``p >= max(start, 1)`` of log P(row[p] | row[:p]) under the causal LM, per row of ``rows`` (B×L)."""
    logp = torch.log_softmax(model.logits(model.states(rows[:, :-1], causal=True)).float(), -1)  # position t predicts t+1
    picked = logp.gather(2, rows[:, 1:, None])[..., 0]  # B×(L-1): log P(row[t+1] | row[:t+1])
    first = max(start, 1) - 1
    return picked[:, first:].sum(1)


@torch.no_grad()
def causal_ranking(model, ids: list[int], candidates_per_mask: list[list[int]], k: int) -> list[list[tuple[int, float]]]:
    """For each <mask>, left to right: candidate fills ranked by the causal LM's log-likelihood of the sentence.

    The candidates are ``candidates_per_mask[i]`` plus the causal LM's own ``k`` likeliest next tokens; each is
    scored on the sentence from the mask up to the next mask (or the end), with earlier masks filled by the
    causal LM's best choice.  Returns (token, log-likelihood in nats), best first, ``k`` of them.
    """
    dev = _device(model)
    k = max(1, min(k, model.vocab_size - len(TEXT_SPECIALS)))
    filled = list(ids)
    positions = [i for i, t in enumerate(ids) if t == MASK_ID]
    out = []
    for n, pos in enumerate(positions):
        end = positions[n + 1] if n + 1 < len(positions) else len(filled)
        candidates = list(dict.fromkeys(candidates_per_mask[n] if n < len(candidates_per_mask) else []))
        if pos > 0:
            x = torch.tensor([filled[:pos]], dtype=torch.int64, device=dev)
            own = _ordinary(model.logits(model.states(x, causal=True)[0, -1])).topk(k).indices.tolist()
            candidates = list(dict.fromkeys(candidates + own))
        elif not candidates:  # nothing to its left and no masked LM: rank the commonest openings by what follows
            candidates = list(range(len(TEXT_SPECIALS), min(model.vocab_size, len(TEXT_SPECIALS) + 4 * k)))
        rows = torch.tensor([filled[:pos] + [c] + filled[pos + 1:end] for c in candidates], dtype=torch.int64, device=dev)
        if rows.shape[1] < 2:
            scores = torch.zeros(len(candidates))
        else:
            scores = causal_log_likelihood(model, rows, pos).cpu()
        order = scores.argsort(descending=True).tolist()
        ranked = [(candidates[i], float(scores[i])) for i in order[:k]]
        filled[pos] = ranked[0][0]
        out.append(ranked)
    return out


# -- one question to one or two models ---------------------------------------------------------

def _decode(tokenizer, ids) -> str:
    """Text of ``ids``; a character mask is written where it stands (the tokenizers write <mask> as " [MASK]", a word-piece's space)."""
    text = tokenizer.decode(ids)
    return text.replace(" [MASK]", "[MASK]") if tokenizer.kind == "chars" else text


def _check_models(causal, masked):
    if causal is None and masked is None:
        raise ConfigError("", "No model to ask: pass a causal-lm or masked-lm run.")
    if causal is not None and masked is not None and causal.tokenizer.to_json() != masked.tokenizer.to_json():
        raise ConfigError("", "The two runs have different vocabularies (tokenizer.json differs), so one text cannot be put to both; "
                              "pass two runs trained on the same data with the same tokenizer.")
    return (causal or masked).tokenizer


def prepare(tokenizer, text: str, context: int, settings: AskSettings) -> tuple[str, list[int], int, list[str]]:
    """(mode, token ids, tokens to generate, notes) for ``text`` in a model of ``context`` tokens; refused in one sentence
    when it cannot be asked (empty, characters outside the vocabulary, too many masks)."""
    if not normalise(MASK_MARK.sub(" ", text or "")) and not has_mask(text or ""):
        raise ConfigError("text", "is empty; type a prompt to continue, or a sentence with [MASK] where a word is missing.")
    unknown = unknown_characters(tokenizer, text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:6]) + (" ..." if len(unknown) > 6 else "")
        raise ConfigError("text", f"has characters this run's vocabulary never saw ({shown}); the models could only read them as "
                                  "<unk>: rewrite the text without them.")
    ids = encode_with_masks(tokenizer, text)
    notes: list[str] = []
    if MASK_ID in ids:
        masks = ids.count(MASK_ID)
        if masks > MAX_MASKS:
            raise ConfigError("text", f"has {masks} [MASK]s; ask for at most {MAX_MASKS} at once.")
        if len(ids) > context:
            first = ids.index(MASK_ID)
            start = max(0, min(first - context // 2, len(ids) - context))
            kept = ids[start:start + context]
            lost = masks - kept.count(MASK_ID)
            notes.append(f"The sentence is {len(ids)} tokens long and the models read {context}: truncated to tokens "
                         f"{start + 1}-{start + context}" + (f" ({lost} [MASK] left out)." if lost else "."))
            ids = kept
        return "fill", ids, 0, notes
    new = min(settings.new_tokens, max(context - len(ids), context // 2))
    keep = context - new
    if len(ids) > keep:
        notes.append(f"The prompt is {len(ids)} tokens long and the models read {context}: truncated to its last {keep} "
                     f"tokens, to leave room for {new} new ones.")
        ids = ids[-keep:]
    return "continue", ids, new, notes


@torch.no_grad()
def answer(text: str, causal=None, masked=None, settings: AskSettings | None = None) -> dict[str, Any]:
    """Both models' answers to ``text`` (either model may be None).

    Returns ``{"mode": "continue" | "fill", "text", "notes", "rule", "causal": ..., "masked": ...}``: for a
    continuation each model gives ``{"prompt", "continuation", "tokens"}``; for fills ``{"masks": [[(text,
    number), ...] per mask]}``: probabilities for the masked LM, sentence log-likelihoods for the causal LM.
    """
    settings = settings or AskSettings()
    settings.check()
    tokenizer = _check_models(causal, masked)
    context = min(m.context_length for m in (causal, masked) if m is not None)
    mode, ids, new, notes = prepare(tokenizer, text, context, settings)
    out: dict[str, Any] = {"mode": mode, "text": text, "notes": notes, "rule": settings.rule(), "causal": None, "masked": None,
                           "input": _decode(tokenizer, ids)}
    for model in (causal, masked):
        if model is not None:
            model.eval()
    if mode == "continue":
        for key, model, fn in (("causal", causal, continue_causal), ("masked", masked, continue_masked)):
            if model is not None:
                tokens = fn(model, ids, new, settings)
                out[key] = {"prompt": _decode(tokenizer, ids), "continuation": _decode(tokenizer, tokens), "tokens": tokens}
        return out
    fills = masked_fills(masked, ids, settings.fills) if masked is not None else None
    if masked is not None:
        out["masked"] = {"masks": [[(_decode(tokenizer, [t]), p) for t, p in per] for per in fills],
                         "best": _decode(tokenizer, _with_fills(ids, fills))}
    if causal is not None:
        candidates = [[t for t, _ in per] for per in fills] if fills is not None else []
        ranked = causal_ranking(causal, ids, candidates, settings.fills)
        out["causal"] = {"masks": [[(_decode(tokenizer, [t]), s) for t, s in per] for per in ranked],
                         "best": _decode(tokenizer, _with_fills(ids, ranked))}
    return out


def _with_fills(ids: list[int], ranked: list[list[tuple[int, float]]]) -> list[int]:
    """``ids`` with each <mask> replaced by its first-ranked fill."""
    fills = iter(per[0][0] for per in ranked)
    return [next(fills) if t == MASK_ID else t for t in ids]


def answer_lines(result: dict[str, Any], names: dict[str, str] | None = None) -> list[str]:
    """The answer as plain lines, for the terminal (the window formats the same dict as HTML)."""
    names = names or {}
    lines = [*result["notes"]]
    if result["mode"] == "continue":
        lines.append(f"prompt: {result['input'].strip()}")
        lines.append(f"continuations, {result['rule']}:")
        for key, title in (("causal", "causal LM"), ("masked", "masked LM (masks appended, filled left to right)")):
            if result[key] is not None:
                lines.append(f"  {title}{names.get(key, '')}: ...{result[key]['continuation']}")
        return lines
    lines.append(f"sentence: {result['input'].strip()}")
    for key, title, unit in (("masked", "masked LM, top fills with their probability", "{:.3f}"),
                             ("causal", "causal LM, candidates ranked by the sentence's log-likelihood (nats)", "{:.2f}")):
        if result[key] is None:
            continue
        lines.append(f"{title}{names.get(key, '')}:")
        lines.append(f"  best: {result[key]['best'].strip()}")
        for n, per in enumerate(result[key]["masks"], 1):
            lines.append(f"  [MASK] {n}: " + ", ".join(f"{t!r} {unit.format(v)}" for t, v in per))
    return lines


__all__ = ["AskSettings", "MASK_MARK", "answer", "answer_lines", "causal_log_likelihood", "causal_ranking", "continue_causal",
           "continue_masked", "encode_with_masks", "has_mask", "masked_fills", "prepare", "unknown_characters"]
