"""Numbers that tell a healthy representation from a collapsed one.

All functions take an N×D float tensor of probe features and return plain
Python numbers or numpy arrays.  Representational collapse (every image maps to
the same point) shows as mean cosine near 1 and per-dimension std near 0;
dimensional collapse (the features span a low-dimensional subspace) shows as
an effective rank far below D and a spectrum whose tail falls away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def spectrum(features: torch.Tensor) -> np.ndarray:
    """Eigenvalues of the feature covariance, descending (float64 for the small ones)."""
    x = features.double()
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / max(len(x) - 1, 1)
    eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)
    return eig.numpy()


def effective_rank(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, eq. 1): exp of the entropy of the normalised singular values."""
    s = torch.linalg.svdvals(features.double())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def mean_cosine(features: torch.Tensor, pairs: int = 4096, seed: int = 0) -> float:
    """Mean cosine similarity between random pairs of distinct images (1.0 = every image looks alike)."""
    n = len(features)
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n
    z = F.normalize(features.float(), dim=1)
    return float((z[i] * z[j]).sum(1).mean())


def dim_std(features: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised features (SimSiam, Chen & He 2021, §4.1).

    A healthy representation sits near 1/sqrt(D); a collapsed one near 0.
    """
    z = F.normalize(features.float(), dim=1)
    return float(z.std(0).mean())


def pca_2d(features: torch.Tensor) -> np.ndarray:
    """The probe set projected on its two leading principal components, N×2 float32."""
    x = features.float()
    x = x - x.mean(0, keepdim=True)
    if x.shape[1] < 2 or not torch.isfinite(x).all():
        return np.zeros((len(x), 2), np.float32)
    try:
        _, _, v = torch.linalg.svd(x, full_matrices=False)
    except RuntimeError:  # degenerate (fully collapsed) features
        return np.zeros((len(x), 2), np.float32)
    return (x @ v[:2].T).numpy().astype(np.float32)


@dataclass(frozen=True)
class Baseline:
    """The probe of the network before training: what "collapsed" is judged against.

    A randomly initialised network already maps images close together (pooled ReLU
    features are all positive: mean cosine near 0.95 on photos), so an absolute
    threshold alone raises a false alarm on a healthy run's first probes.
    """

    mean_cos: float
    rank: float
    projector_rank: float | None = None


MORE_ALIKE = 0.01  # mean cosine must rise this far above the initial network's to count towards collapse


def collapse_verdict(mean_cos: float, rank: float, feature_dim: int, projector_rank: float | None = None,
                     initial: Baseline | None = None) -> str | None:
    """Name the failure, if any, in the words the spectrum panel and the study use.

    The projector's embedding is checked too: the backbone's batch norm can keep its
    features spread while the space the loss sees has already collapsed to a point.
    Never call it on the initial network's probe (step 0): that is the ``initial``
    baseline.  With a baseline, a failure counts only where training moved the
    features towards it: mean cosine above 0.95 *and* above the initial network's,
    a rank below 2 (or 5 % of the width) *and* below the initial rank.
    """
    if math.isnan(mean_cos):
        return None
    alike = mean_cos > 0.95
    low_rank = rank < 2
    low_projector = projector_rank is not None and projector_rank < 2
    dimensional = rank < 0.05 * feature_dim and rank < 8
    if initial is not None:
        if not math.isnan(initial.mean_cos):
            alike = alike and mean_cos > initial.mean_cos + MORE_ALIKE
        low_rank = low_rank and rank < initial.rank
        if initial.projector_rank is not None and projector_rank is not None:
            low_projector = low_projector and projector_rank < initial.projector_rank
        dimensional = dimensional and rank < 0.5 * initial.rank
    if alike or low_rank or low_projector:
        return "representational collapse"
    if dimensional:
        return "dimensional collapse"
    return None
