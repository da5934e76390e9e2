"""Causal and masked language modelling on one Transformer (the chapter's exercise E2).

``causal-lm`` predicts every next token under a causal mask (GPT; Radford et al. 2018).
``masked-lm`` is BERT's objective (Devlin et al. 2019, §3.1): 15 % of the positions are chosen,
of those 80 % become ``<mask>``, 10 % a random token and 10 % stay, and the bidirectional network
predicts the original token at the chosen positions only.  Both are built on the same
``TextTransformer`` (its output layer tied to the embedding), so at a given seed they start from
the same weights and differ in their objective alone.

Token windows arrive as ``batch.views[0]`` (B×L int64): a TextSet's view maker hands each window
over as its own view (see ``data/text.py``), so the trainer's Batch needs no text-specific field.

Held-out scoring, for ``engine/text_eval.py``: every score is a per-token negative log-likelihood
of a window's continuation (its second half) given what the score allows the model to see:

- ``next-token`` (causal LM): the prompt and the continuation's earlier tokens.
- ``left-to-right masked`` (masked LM): the same left context, with the position scored and
  every later one replaced by ``<mask>``; the same information as the causal LM's, so the two
  perplexities compare (the masked LM is merely asked a question it was not trained on).
- ``pseudo`` (masked LM): Salazar et al. (2020)'s pseudo-log-likelihood, one position masked at a
  time with both sides visible; it conditions on the future, so it is lower by construction and
  does not compare with a causal perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_studio.models.text_tokenizers import MASK_ID
from ssl_studio.objectives.base import Batch, MetricSpec, OptimRecipe, StepOutput
from ssl_studio.objectives.language import VISUAL_SEED, LanguageModel, bert_corruption
from ssl_studio.params import param


@dataclass
class CausalLMParams:
    """Next-token prediction has no hyper-parameters of its own."""


class CausalLM(LanguageModel):
    name = "causal-lm"
    title = "Causal LM"
    description = ("Predict every next token from the ones before it (causal attention), as GPT does.\n"
                   "The generation side of exercise E2: compare with the masked LM on the same network.")
    Params = CausalLMParams
    family = "predictive"  # it predicts what comes next; the masked LM fills in what was hidden
    causal = True

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        tokens = batch.views[0]
        logits = self.backbone.logits(self.backbone.states(tokens[:, :-1], causal=True)).float()
        targets = tokens[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        acc = (logits.argmax(-1) == targets).float().mean()
        return StepOutput(loss, {"token_acc": acc})

    @torch.no_grad()
    def heldout_scores(self, tokens: torch.Tensor, prompt: int) -> dict[str, torch.Tensor]:
        logits = self.backbone.logits(self.backbone.states(tokens[:, :-1], causal=True)).float()
        nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # B×(L-1): position t predicts t+1
        return {"next-token": nll[:, prompt - 1:]}


    def text_answers(self, tokens: torch.Tensor) -> dict:
        """Each window's first half as the prompt and a sampled continuation (temperature 0.8, a fixed seed) of the rest."""
        prompt = tokens.shape[1] // 2
        g = torch.Generator().manual_seed(VISUAL_SEED)
        out = tokens[:, :prompt]
        while out.shape[1] < tokens.shape[1]:
            logits = self.backbone.logits(self.backbone.states(out, causal=True)[:, -1]).float() / 0.8
            logits[:, MASK_ID] = -float("inf")
            nxt = torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=g).to(out.device)
            out = torch.cat([out, nxt], dim=1)
        rows = [{"input": self._decode(t[:prompt].tolist()), "output": self._decode(o[prompt:].tolist()),
                 "truth": self._decode(t[prompt:].tolist())} for t, o in zip(tokens, out)]
        return {"mode": "continuation", "rows": rows}


@dataclass
class MaskedLMParams:
    """BERT's corruption (Devlin et al. 2019, §3.1 and appendix C.2)."""

    mask_rate: float = param(0.15, help="Share of each window's tokens chosen for prediction.", min=0.01, max=0.9)
    mask_share: float = param(0.8, help="Share of the chosen tokens replaced by <mask>.", min=0.0, max=1.0)
    random_share: float = param(0.1, help="Share of the chosen tokens replaced by a random token (the rest stay as they are).",
                                min=0.0, max=1.0)


class MaskedLM(LanguageModel):
    name = "masked-lm"
    title = "Masked LM"
    description = ("Predict 15 % of the tokens, hidden behind <mask> (80 %), a random token (10 %) or left (10 %),\n"
                   "from both sides (bidirectional attention), as BERT does: the understanding side of exercise E2.")
    Params = MaskedLMParams
    causal = False
    # twice the causal LM's rate: it learns from 15 % of the tokens a step (docs/studies/text-lm.md, ablations)
    recipe = OptimRecipe(optimizer="adamw", lr=8e-3, weight_decay=0.01)
    metric_specs = {"token_acc": MetricSpec("Masked-token accuracy", "", "accuracy")}

    @classmethod
    def check_params(cls, params, backbone: str) -> None:
        from ssl_studio.params import ConfigError

        if params.mask_share + params.random_share > 1.0 + 1e-9:
            raise ConfigError("objective.mask_share", f"plus objective.random_share must be at most 1 (they are shares of the chosen "
                                                      f"tokens), got {params.mask_share} + {params.random_share}; lower one of them")

    def corrupt(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT's corruption of this rank's windows, drawn for the global batch (the same on 1 or N processes)."""
        p = self.params
        n = tokens.shape[1]
        uniforms = self.draw_global(len(tokens), lambda rows, g: torch.rand(rows, n, 3, generator=g))
        return bert_corruption(tokens, uniforms, self.backbone.vocab_size, p.mask_rate, p.mask_share, p.random_share)

    def training_step(self, batch: Batch, progress: float) -> StepOutput:
        tokens = batch.views[0]
        inputs, chosen = self.corrupt(tokens)
        states = self.backbone.states(inputs, causal=False)[chosen]
        logits = self.backbone.logits(states).float()
        targets = tokens[chosen]
        loss = F.cross_entropy(logits, targets)
        acc = (logits.argmax(-1) == targets).float().mean()
        return StepOutput(loss, {"token_acc": acc})

    def text_answers(self, tokens: torch.Tensor, top_k: int = 3) -> dict:
        """Each window with three positions masked (a fixed seed) and the top-k fills of each with their probabilities."""
        b, n = tokens.shape
        g = torch.Generator().manual_seed(VISUAL_SEED)
        positions = torch.stack([torch.randperm(n - 2, generator=g)[:3] + 1 for _ in range(b)]).sort(1).values.to(tokens.device)
        inputs = tokens.scatter(1, positions, MASK_ID)
        probs = torch.softmax(self.backbone.logits(self.backbone.states(inputs, causal=False)).float(), -1)
        rows = []
        for i in range(b):
            fills = []
            for pos in positions[i].tolist():
                p, ids = probs[i, pos].topk(top_k)
                fills.append(", ".join(f"{self._decode([t])!r} {q:.2f}" for t, q in zip(ids.tolist(), p.tolist())))
            rows.append({"input": self._decode(inputs[i].tolist()),
                         "output": " | ".join(fills), "truth": " | ".join(repr(self._decode([int(tokens[i, pos])])) for pos in positions[i].tolist())})
        return {"mode": "fill", "rows": rows}

    @torch.no_grad()
    def heldout_scores(self, tokens: torch.Tensor, prompt: int) -> dict[str, torch.Tensor]:
        b, n = tokens.shape
        c = n - prompt
        pos = torch.arange(prompt, n, device=tokens.device)
        rows = tokens.repeat_interleave(c, dim=0)  # row (i, j): window i scored at position prompt + j
        at = pos.repeat(b)
        targets = tokens[:, prompt:].reshape(-1)
        columns = torch.arange(n, device=tokens.device)
        left = torch.where(columns[None, :] >= at[:, None], torch.full_like(rows, MASK_ID), rows)
        single = torch.where(columns[None, :] == at[:, None], torch.full_like(rows, MASK_ID), rows)
        return {"left-to-right masked": self._nll_at(left, at, targets).view(b, c),
                "pseudo": self._nll_at(single, at, targets).view(b, c)}


__all__ = ["CausalLM", "MaskedLM", "bert_corruption"]
