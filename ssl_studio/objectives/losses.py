"""Pure loss functions, one per published formula, tested against hand-computed values.

Every function takes plain tensors and returns a scalar tensor; nothing here holds
state or knows about networks, so each can be checked on its own.  Losses are
computed in float32 even under bf16 autocast: a softmax over a few hundred
logits loses too much in bf16's 8-bit mantissa.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{name} needs two B×D tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples in a batch, got {a.shape[0]}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2, normalize: bool = True) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy (Chen et al. 2020, eq. 1).

    Each of the 2B embeddings must pick its partner view among the other 2B - 1.
    ``normalize=False`` with ``temperature=1`` is the "no temperature normalisation"
    ablation: plain dot products.
    """
    _check_pair("nt_xent", z1, z2)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = torch.cat([z1, z2]).float()
    if normalize:
        z = F.normalize(z, dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def contrastive_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Share of view-1 embeddings whose nearest view-2 embedding is their own partner."""
    with torch.no_grad():
        sim = F.normalize(z1.float(), dim=1) @ F.normalize(z2.float(), dim=1).T
        return (sim.argmax(dim=1) == torch.arange(len(z1), device=z1.device)).float().mean().item()
