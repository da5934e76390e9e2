"""Held-out perplexity of a text run: the generation half of exercise E2.

Each held-out window is split in two: its first ``PROMPT_SHARE`` is the prompt, the rest the
continuation, and a score is the mean negative log-likelihood per continuation token, reported
as perplexity = exp(mean NLL).  The objective says what each of its scores may condition on
(``LanguageModel.heldout_scores``); the headline is its first: next-token perplexity for the
causal LM, left-to-right masked perplexity for the masked LM (the same left context, so the two
compare); the masked LM's pseudo-perplexity (both sides visible) is reported beside it.

The unigram model of the training windows (add-one smoothed token frequencies) scores the same
continuation tokens: the floor any model that reads context should beat by far.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

PROMPT_SHARE = 0.5
MAX_WINDOWS = 256  # the masked LM scores one pass per continuation token: this bounds its cost (a few seconds on a CPU)


def perplexity(nll_sum: float, count: int) -> float:
    """exp(mean NLL): the perplexity of ``count`` tokens whose negative log-likelihoods (nats) sum to ``nll_sum``."""
    return math.exp(nll_sum / count) if count else float("nan")


def unigram_nll(counts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token NLL of ``targets`` under add-one smoothed unigram frequencies ``counts``."""
    p = (counts.double() + 1) / (counts.double().sum() + len(counts))
    return -torch.log(p[targets])


@torch.no_grad()
def perplexity_protocol(objective, data, device: torch.device, batch_size: int = 32, autocast_dtype=None) -> dict[str, Any]:
    """Perplexity of the held-out continuations under each of the objective's scores, and the unigram floor."""
    t0 = time.perf_counter()
    objective.eval()
    windows = data.images[data.val_index[:MAX_WINDOWS]]
    prompt = max(1, int(round(windows.shape[1] * PROMPT_SHARE)))
    sums: dict[str, float] = {}
    count = 0
    for start in range(0, len(windows), batch_size):
        x = windows[start:start + batch_size].to(device)
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                scores = objective.heldout_scores(x, prompt)
        else:
            scores = objective.heldout_scores(x, prompt)
        for name, nll in scores.items():
            sums[name] = sums.get(name, 0.0) + float(nll.double().sum())
        count += x.shape[0] * (x.shape[1] - prompt)
    names = list(sums)
    continuation = windows[:, prompt:].reshape(-1)
    unigram = perplexity(float(unigram_nll(data.unigram, continuation).sum()), continuation.numel())
    return {"perplexity": perplexity(sums[names[0]], count), "score": names[0],
            "scores": {name: perplexity(total, count) for name, total in sums.items()},
            "unigram": unigram, "tokens": count, "windows": len(windows), "prompt_tokens": prompt,
            "continuation_tokens": windows.shape[1] - prompt, "seconds": time.perf_counter() - t0}


__all__ = ["PROMPT_SHARE", "perplexity", "perplexity_protocol", "unigram_nll"]
