"""The text lab's one Transformer: causal or bidirectional attention over the same weights.

The causal and the masked LM of exercise E2 must differ in their objective only, so they share
this network and, for a given seed, its initial weights: ``causal`` is an argument of the
forward pass, not of the architecture.  Pre-norm blocks as in GPT-2/CLIP's text tower
(``models/text.py``), learned positions, and an output layer tied to the token embedding (Press
& Wolf 2017), so the network has no part only one objective uses.  Width 192 and 4 layers (about
2 million parameters with the 1,024-token vocabulary) keep a step on a CPU core well under a
second at batch 64 × 32 tokens.

As a lab backbone it maps token windows ``B×L`` to sentence embeddings ``B×width``: the mean of
the final layer's states, which the probes and the linear probe read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_studio.models.base import Backbone

DEFAULT_TEXT_WIDTH = 192
DEFAULT_TEXT_DEPTH = 4
TEXT_HEAD_DIM = 48  # heads = width / 48: 4 heads at the default width


class LMBlock(nn.Module):
    """x + attn(LN(x)) (causal or not), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor, causal: bool) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.out(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln_2(x))


class TextTransformer(Backbone):
    """Token ids ``B×L`` → per-position states, next/masked-token logits, or mean-pooled embeddings."""

    def __init__(self, vocab_size: int, context_length: int, width: int = DEFAULT_TEXT_WIDTH, depth: int = DEFAULT_TEXT_DEPTH,
                 tokenizer=None):
        super().__init__(image_size=context_length, in_channels=1)
        self.tokenizer = tokenizer  # the data's (models/text_tokenizers.py): the run folder keeps it, panels decode with it
        if width % TEXT_HEAD_DIM:
            raise ValueError(f"model.width must be a multiple of {TEXT_HEAD_DIM} for the text Transformer, got {width}")
        self.vocab_size, self.context_length, self.width = int(vocab_size), int(context_length), int(width)
        self.feature_dim = self.width
        self.causal = True  # how ``forward`` (the probes' embedding) attends; each objective sets its own
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(self.context_length, width))
        self.blocks = nn.ModuleList(LMBlock(width, width // TEXT_HEAD_DIM) for _ in range(depth))
        self.ln_final = nn.LayerNorm(width)
        self.output_bias = nn.Parameter(torch.zeros(self.vocab_size))
        self._init(depth)

    def _init(self, depth: int) -> None:
        # GPT-2's initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * depth)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        for block in self.blocks:
            for lin in (block.qkv, block.mlp[0]):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.zeros_(lin.bias)
            for lin in (block.out, block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / (2 * depth) ** 0.5)
                nn.init.zeros_(lin.bias)

    def states(self, tokens: Tensor, causal: bool) -> Tensor:
        """Final-layer states ``B×L×width`` after the last LayerNorm."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be B×L, got shape {tuple(tokens.shape)}")
        x = self.token_embedding(tokens) + self.pos_embed[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, causal)
        return self.ln_final(x)

    def logits(self, states: Tensor) -> Tensor:
        """Token logits from states, through the tied embedding."""
        return states @ self.token_embedding.weight.T + self.output_bias

    def forward(self, tokens: Tensor) -> Tensor:
        return self.states(tokens, self.causal).mean(dim=1)

    def flops_per_image(self) -> int:
        """Forward FLOPs for one window (2 × MACs of the matrix products, attention included, logits excluded)."""
        n, d = self.context_length, self.width
        per_block = 2 * n * (12 * d * d) + 2 * 2 * n * n * d
        return int(len(self.blocks) * per_block)


__all__ = ["DEFAULT_TEXT_DEPTH", "DEFAULT_TEXT_WIDTH", "TextTransformer"]
