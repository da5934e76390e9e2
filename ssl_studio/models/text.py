"""A small causal Transformer text encoder, CLIP's text tower scaled down.

CLIP's text encoder (Radford et al. 2021, sec. 2.4) is a 12-layer, 512-wide
GPT-style Transformer with masked (causal) self-attention over at most 76
tokens; the activations of the last layer at the ``<eot>`` token, layer-normed
and linearly projected, are the text's embedding.  The lab's captions are a
dozen words from a vocabulary of a few hundred, so 3-4 layers of width 128 with
4 heads and a context of 32 tokens are enough, and cost about a millisecond per
batch on a CPU core.

Why causal when the encoder only reads the ``<eot>`` position: it is CLIP's
choice (it keeps the option of a language-modelling objective), and with
causal attention padding after ``<eot>`` can never leak into the pooled feature,
so no padding mask is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_studio.models.tokenizer import EOT_ID


class CausalBlock(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)) with a causal mask, then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"text width {width} must be a multiple of the number of heads {heads}")
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln_2(x))


class TextEncoder(nn.Module):
    """Token ids ``B×L`` → embeddings ``B×embed_dim`` (un-normalised), pooled at ``<eot>``."""

    def __init__(self, vocab_size: int, embed_dim: int = 128, context_length: int = 32, width: int = 128,
                 layers: int = 4, heads: int = 4):
        super().__init__()
        self.vocab_size, self.context_length, self.width = int(vocab_size), int(context_length), int(width)
        self.embed_dim = int(embed_dim)
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.pos_embed = nn.Parameter(torch.empty(self.context_length, width))
        self.blocks = nn.ModuleList(CausalBlock(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embed_dim, bias=False)
        self.reset_parameters(layers)

    def reset_parameters(self, layers: int) -> None:
        # CLIP's initialisation (model.py, initialize_parameters): small embeddings, residual
        # projections scaled down with depth so that the residual stream starts near its input.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        proj_std = self.width ** -0.5 * (2 * max(layers, 1)) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.qkv.weight, std=self.width ** -0.5)
            nn.init.normal_(block.out.weight, std=proj_std)
            nn.init.normal_(block.mlp[0].weight, std=(2 * self.width) ** -0.5)
            nn.init.normal_(block.mlp[2].weight, std=proj_std)
            for lin in (block.qkv, block.out, block.mlp[0], block.mlp[2]):
                nn.init.zeros_(lin.bias)
        nn.init.normal_(self.projection.weight, std=self.width ** -0.5)

    def resize_vocab(self, vocab_size: int) -> None:
        """A fresh token table of another size (a checkpoint's vocabulary is about to be loaded into it)."""
        if vocab_size != self.vocab_size:
            self.vocab_size = int(vocab_size)
            w = self.token_embedding.weight
            self.token_embedding = nn.Embedding(self.vocab_size, self.width).to(device=w.device, dtype=w.dtype)

    def token_features(self, tokens: Tensor) -> Tensor:
        """Per-position features after the final LayerNorm, ``B×L×width`` (the causal-mask test reads these)."""
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be B×L, got shape {tuple(tokens.shape)}")
        n = tokens.shape[1]
        if n > self.context_length:
            raise ValueError(f"{n} tokens exceed the text encoder's context of {self.context_length}")
        x = self.token_embedding(tokens) + self.pos_embed[:n]
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x)

    def forward(self, tokens: Tensor) -> Tensor:
        # the first <eot> of each row; a row without one (never made by the tokenizer) pools its last token
        is_eot = tokens == EOT_ID
        last = torch.full((tokens.shape[0],), tokens.shape[1] - 1, device=tokens.device)
        pos = torch.where(is_eot.any(1), is_eot.int().argmax(1), last)
        # Causal attention: no position sees what comes after it, so the padding behind the batch's
        # longest caption can be cut off without changing any pooled feature.  The lab's captions are
        # ~16 tokens in a 32-token context, so this halves the text tower's cost.
        n = int(pos.max()) + 1 if len(pos) else tokens.shape[1]
        x = self.token_features(tokens[:, :n])
        pooled = x[torch.arange(len(x), device=x.device), pos]
        return self.projection(pooled)


__all__ = ["CausalBlock", "TextEncoder"]
