"""What the text objectives share: BERT's corruption, token windows in, tied logits out, held-out scoring.

The objectives themselves are in ``text_lm.py``; this module keeps their common base out of the
registry (which lists every objective class a registered module defines).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ssl_studio.models.text_tokenizers import MASK_ID, TEXT_SPECIALS
from ssl_studio.objectives.base import MetricSpec, Objective, OptimRecipe


TEXT_VISUAL_ROWS = 6  # held-out windows the Text panel shows
VISUAL_SEED = 0  # the same sampling and the same masked positions at every visuals step


def bert_corruption(tokens: torch.Tensor, uniforms: torch.Tensor, vocab_size: int, rate: float = 0.15,
                    mask_share: float = 0.8, random_share: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted tokens, chosen positions) of ``tokens`` (B×L) from ``uniforms`` (B×L×3 in [0, 1)).

    The ``round(rate * L)`` positions of each row (at least one) with the smallest first uniform are
    chosen; a chosen position becomes <mask> when its second uniform is below ``mask_share``, a random
    ordinary token (drawn from its third) when below ``mask_share + random_share``, and stays otherwise.
    """
    b, n = tokens.shape
    uniforms = uniforms.to(tokens.device)
    k = min(n, max(1, round(rate * n)))
    chosen = torch.zeros(b, n, dtype=torch.bool, device=tokens.device)
    chosen.scatter_(1, uniforms[..., 0].argsort(dim=1)[:, :k], True)
    what = uniforms[..., 1]
    ordinary = vocab_size - len(TEXT_SPECIALS)
    random_ids = len(TEXT_SPECIALS) + (uniforms[..., 2] * ordinary).long().clamp_(max=ordinary - 1)
    out = torch.where(chosen & (what < mask_share), torch.full_like(tokens, MASK_ID), tokens)
    out = torch.where(chosen & (what >= mask_share) & (what < mask_share + random_share), random_ids, out)
    return out, chosen


class LanguageModel(Objective):
    """What both text objectives share: token windows in, the Transformer's tied logits, held-out scoring."""

    family = "masked"
    modality: ClassVar[str] = "text"
    num_global_views = 1
    honours = frozenset()  # tiny_batch comes from the engine (ablation_switches); no_augmentation is a no-op on text
    recipe = OptimRecipe(optimizer="adamw", lr=4e-3, weight_decay=0.01)  # 1e-3 at batch 64, warm-up from the config
    metric_specs = {"token_acc": MetricSpec("Token accuracy", "", "accuracy")}
    causal: ClassVar[bool] = True

    def __init__(self, backbone, params, context):
        super().__init__(backbone, params, context)
        backbone.causal = self.causal

    def artifacts(self) -> dict[str, str]:
        tokenizer = self.backbone.tokenizer
        return {"tokenizer.json": tokenizer.to_json()} if tokenizer is not None else {}

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.backbone.states(tokens, self.causal).mean(dim=1)

    def heldout_scores(self, tokens: torch.Tensor, prompt: int) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Score name -> per-token NLL ``B×(L - prompt)`` of each window's continuation (see the module docstring)."""
        raise NotImplementedError

    def _decode(self, ids) -> str:
        tokenizer = self.backbone.tokenizer
        return tokenizer.decode(ids) if tokenizer is not None else " ".join(str(int(i)) for i in ids)

    def text_answers(self, tokens: torch.Tensor) -> dict[str, Any]:  # pragma: no cover - abstract
        """What the Text panel shows for held-out windows ``tokens``: {"mode", "rows": [{"input", "output", "truth"}]}."""
        raise NotImplementedError

    @torch.no_grad()
    def visuals(self, tokens: torch.Tensor) -> dict[str, Any] | None:
        was_training = self.training
        self.eval()
        try:
            return {"text": self.text_answers(tokens[:TEXT_VISUAL_ROWS])}
        finally:
            self.train(was_training)

    def _nll_at(self, inputs: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL of ``targets`` at ``positions`` (one per row) of a bidirectional pass over ``inputs``."""
        states = self.backbone.states(inputs, causal=False)
        picked = states[torch.arange(len(inputs), device=inputs.device), positions]
        return F.cross_entropy(self.backbone.logits(picked).float(), targets, reduction="none")



__all__ = ["LanguageModel", "bert_corruption"]
