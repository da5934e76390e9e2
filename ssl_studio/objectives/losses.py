"""Pure loss functions, one per published formula, tested against hand-computed values.

Every function takes plain tensors and returns a scalar tensor; nothing here holds
state or knows about networks, so each can be checked on its own.  Losses are
computed in float32 even under bf16 autocast: a softmax over a few hundred
logits loses too much in bf16's 8-bit mantissa.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_studio.objectives import collectives as dist

# ``across_ranks=True`` (what the objectives pass) makes a loss that of the global batch under torchrun: each
# rank's value is its share, the mean over ranks is the global loss, and the collectives' backward sums the
# gradient over ranks (see ssl_studio.objectives.collectives).  In one process it changes nothing.


def _check_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{name} needs two B×D tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples in a batch, got {a.shape[0]}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2, normalize: bool = True,
            across_ranks: bool = False) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy (Chen et al. 2020, eq. 1).

    Each of the 2B embeddings must pick its partner view among the other 2B - 1.
    ``normalize=False`` with ``temperature=1`` is the "no temperature normalisation"
    ablation: plain dot products.  ``across_ranks``: this rank's 2b embeddings against
    all 2B of the global batch (gathered with gradient), as SimCLR's TPU code does.
    """
    _check_pair("nt_xent", z1, z2)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z1, z2 = z1.float(), z2.float()
    if normalize:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    g1, g2 = (dist.gather(z1), dist.gather(z2)) if across_ranks else (z1, z2)
    big_n, offset = g1.shape[0], (dist.rank() * n if across_ranks else 0)
    logits = torch.cat([z1, z2]) @ torch.cat([g1, g2]).T / temperature
    rows = torch.arange(2 * n, device=z1.device)
    own = torch.cat([torch.arange(n), torch.arange(n)]).to(z1.device) + offset
    self_col = own + torch.cat([torch.zeros(n, dtype=torch.long), torch.full((n,), big_n)]).to(z1.device)
    partner = own + torch.cat([torch.full((n,), big_n), torch.zeros(n, dtype=torch.long)]).to(z1.device)
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), dtype=logits.dtype, device=z1.device))
    return F.cross_entropy(logits, partner)


def contrastive_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Share of view-1 embeddings whose nearest view-2 embedding is their own partner (a 0-d tensor: the trainer
    reads step metrics without stalling the GPU, see engine/step_values.py)."""
    with torch.no_grad():
        sim = F.normalize(z1.float(), dim=1) @ F.normalize(z2.float(), dim=1).T
        return (sim.argmax(dim=1) == torch.arange(len(z1), device=z1.device)).float().mean()


# ---------------------------------------------------------------------------
# The joint-embedding zoo: MoCo, BYOL, SimSiam, SwAV, DINO, Barlow Twins, VICReg.
# ---------------------------------------------------------------------------


def _check_matrix(name: str, x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} needs {what} as a B×D tensor, got {shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} needs a non-empty {what}, got shape {tuple(x.shape)}")


def _check_temperature(name: str, temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"{name}: temperature must be > 0, got {temperature}")


def infonce(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, normalize: bool = True,
            across_ranks: bool = False) -> torch.Tensor:
    """InfoNCE with in-batch negatives, as MoCo v3 uses it (Chen, Xie & He 2021, alg. 1).

    Query ``i`` must pick key ``i`` among the B keys of the batch.  MoCo v3
    multiplies this by ``2 * temperature`` to keep gradients comparable across
    temperatures; that factor is the caller's (see ``mocov3_loss``).  ``across_ranks``:
    the keys of every rank (gathered, with gradient if they have one), the official
    code's ``concat_all_gather`` with labels offset by the rank.
    """
    _check_pair("infonce", q, k)
    _check_temperature("infonce", temperature)
    q, k = q.float(), k.float()
    if normalize:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    offset = dist.rank() * len(q) if across_ranks else 0
    keys = dist.gather(k) if across_ranks else k
    logits = q @ keys.T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device) + offset)


def mocov3_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, temperature: float = 0.2,
                across_ranks: bool = False) -> torch.Tensor:
    """Symmetrised MoCo v3 loss: ctr(q1, k2) + ctr(q2, k1), each scaled by 2τ (Chen, Xie & He 2021, alg. 1)."""
    return 2 * temperature * (infonce(q1, k2, temperature, across_ranks=across_ranks)
                              + infonce(q2, k1, temperature, across_ranks=across_ranks))


def infonce_with_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor | None, temperature: float = 0.2,
                       normalize: bool = True) -> torch.Tensor:
    """MoCo's InfoNCE (He et al. 2020, eq. 1): the positive key against a queue of negatives.

    ``q``, ``k``: B×D queries and their positive keys (the caller detaches the keys);
    ``queue``: K×D negatives from earlier batches, or None/empty to fall back on the
    other keys of the batch as negatives.  The positive is logit 0 of each row.
    """
    _check_pair("infonce_with_queue", q, k)
    _check_temperature("infonce_with_queue", temperature)
    if queue is None or queue.numel() == 0:
        return infonce(q, k, temperature, normalize)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"infonce_with_queue needs a K×{q.shape[1]} queue, got {tuple(queue.shape)}")
    q, k, queue = q.float(), k.float(), queue.float()
    if normalize:
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    pos = (q * k).sum(1, keepdim=True)
    neg = q @ queue.T
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def byol_regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2): ||p/|p| - z/|z|||² = 2 - 2 cos(p, z), batch mean.

    ``z`` is the target projection; the stop-gradient is the caller's ``detach``.
    Range [0, 4]; 0 when prediction and target point the same way.
    """
    _check_pair("byol_regression", p, z)
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=1)).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) = -cos(p, z), batch mean (Chen & He 2021, eq. 1); range [-1, 1]."""
    _check_pair("negative_cosine", p, z)
    return -F.cosine_similarity(p.float(), z.float(), dim=1).mean()


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3, across_ranks: bool = False) -> torch.Tensor:
    """SwAV's equipartitioned soft codes (Caron et al. 2020, eq. 3 and alg. 1).

    ``scores``: B×K similarities of B embeddings to K prototypes.  Returns Q, B×K,
    where every row (a sample's code) sums to 1 and, once the iterations have
    converged, every column (a prototype) receives B/K of the mass: the batch is
    spread evenly over the prototypes, which is what stops all samples taking the
    same code.  The last step of each iteration normalises the rows, so with few
    iterations the rows are exact and the columns approximate.  ``across_ranks``: the
    rows of every rank make up B (sums over samples all-reduced, as the official code's
    distributed Sinkhorn); this rank's rows are returned.
    """
    _check_matrix("sinkhorn_knopp", scores, "scores")
    if not epsilon > 0:
        raise ValueError(f"sinkhorn_knopp: epsilon must be > 0, got {epsilon}")
    if iterations < 1:
        raise ValueError(f"sinkhorn_knopp: iterations must be >= 1, got {iterations}")
    s = scores.float() / epsilon
    if not across_ranks:
        q = torch.exp(s - s.max())  # one global shift: cancels in the normalisations, avoids overflow
        q = q / q.sum()
        b, k = q.shape
        for _ in range(iterations):
            q = q / q.sum(dim=0, keepdim=True).clamp_min(1e-30) / k  # each prototype gets 1/K of the mass
            q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-30) / b  # each sample gets 1/B
        return q * b  # rows sum to 1: one code distribution per sample
    top = dist.all_reduce_max(s.max() if s.numel() else s.new_tensor(float("-inf")))
    q = torch.exp(s - top)
    q = q / dist.all_reduce_sum(q.sum())
    k = q.shape[1]
    b = float(dist.all_reduce_sum(torch.tensor(float(q.shape[0]), dtype=torch.float64, device=q.device)))
    for _ in range(iterations):
        q = q / dist.all_reduce_sum(q.sum(dim=0, keepdim=True)).clamp_min(1e-30) / k
        q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-30) / b
    return q * b


def swav_swapped_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1-2), averaged over the pairs.

    ``scores``: one B×K tensor of prototype scores per crop (global crops first);
    ``codes``: Sinkhorn codes for the first ``len(codes)`` crops.  The code of crop i
    is predicted from every other crop v: -sum_k q_i log softmax(s_v / τ).
    """
    _check_temperature("swav_swapped_loss", temperature)
    if len(scores) < 2 or not codes or len(codes) > len(scores):
        raise ValueError(f"swav_swapped_loss needs at least 2 crops and 1..{len(scores)} codes, got {len(scores)} crops and {len(codes)} codes")
    for i, s in enumerate(scores):
        _check_matrix("swav_swapped_loss", s, f"scores[{i}]")
        if s.shape != scores[0].shape:
            raise ValueError(f"swav_swapped_loss needs every crop's scores shaped {tuple(scores[0].shape)}, got {tuple(s.shape)} for crop {i}")
    for i, q in enumerate(codes):
        if q.shape != scores[0].shape:
            raise ValueError(f"swav_swapped_loss needs codes shaped like the scores {tuple(scores[0].shape)}, got {tuple(q.shape)} for code {i}")
    log_p = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
    total, pairs = 0.0, 0
    for i, q in enumerate(codes):
        for v, lp in enumerate(log_p):
            if v == i:
                continue
            total = total - (q.float() * lp).sum(dim=1).mean()
            pairs += 1
    return total / pairs


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor | None,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO's cross-entropy between sharpened, centred teacher and student outputs (Caron et al. 2021, alg. 1).

    ``student``: B×K logits for every crop (global crops first); ``teacher``: B×K
    logits for the global crops only.  Teacher targets are softmax((t - c) / τ_t) with
    no gradient; the pairs where student and teacher see the same crop are skipped.
    ``center=None`` is the no-centring ablation.
    """
    _check_temperature("dino_loss (student)", student_temp)
    _check_temperature("dino_loss (teacher)", teacher_temp)
    if not teacher or len(student) < 2 or len(teacher) > len(student):
        raise ValueError(f"dino_loss needs at least 2 student crops and 1..{len(student)} teacher crops, got {len(student)} and {len(teacher)}")
    shape = student[0].shape
    for name, outs in (("student", student), ("teacher", teacher)):
        for i, x in enumerate(outs):
            _check_matrix("dino_loss", x, f"{name}[{i}]")
            if x.shape != shape:
                raise ValueError(f"dino_loss needs every output shaped {tuple(shape)}, got {tuple(x.shape)} for {name} crop {i}")
    if center is not None and center.shape[-1] != shape[1]:
        raise ValueError(f"dino_loss needs a centre of width {shape[1]}, got shape {tuple(center.shape)}")
    targets = []
    for t in teacher:
        t = t.detach().float()
        if center is not None:
            t = t - center.float()
        targets.append(F.softmax(t / teacher_temp, dim=1))
    return dino_cross_entropy(student, targets, student_temp)


def dino_cross_entropy(student: list[torch.Tensor], targets: list[torch.Tensor], student_temp: float = 0.1) -> torch.Tensor:
    """Mean of -Σ q log softmax(s / τ_s) over every (target crop, student crop) pair of different crops.

    ``targets``: one B×K probability matrix per teacher (global) crop, already detached.
    """
    _check_temperature("dino_cross_entropy (student)", student_temp)
    if not targets or len(student) < 2 or len(targets) > len(student):
        raise ValueError(f"dino_cross_entropy needs at least 2 student crops and 1..{len(student)} targets, got {len(student)} and {len(targets)}")
    log_p = [F.log_softmax(s.float() / student_temp, dim=1) for s in student]
    total, pairs = 0.0, 0
    for i, q in enumerate(targets):
        for v, lp in enumerate(log_p):
            if v == i:
                continue
            total = total - (q * lp).sum(dim=1).mean()
            pairs += 1
    return total / pairs


def _logsumexp_over_rows(x: torch.Tensor, across_ranks: bool) -> torch.Tensor:
    """logsumexp over dim 0 (every rank's rows with ``across_ranks``; a rank may have none)."""
    if not across_ranks:
        return torch.logsumexp(x, dim=0, keepdim=True)
    top = x.amax(dim=0, keepdim=True) if x.shape[0] else x.new_full((1, x.shape[1]), float("-inf"))
    top = dist.all_reduce_max(top)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return top + torch.log(dist.all_reduce_sum(torch.exp(x - top).sum(dim=0, keepdim=True)))


@torch.no_grad()
def dino_sinkhorn_targets(teacher: list[torch.Tensor], teacher_temp: float = 0.07, iterations: int = 3,
                          across_ranks: bool = False) -> list[torch.Tensor]:
    """DINOv2's Sinkhorn-Knopp teacher (Oquab et al. 2023; ``sinkhorn_knopp_teacher`` in dinov2/loss/dino_clstoken_loss.py).

    Replaces centring: exp(t / τ_t) over all the global crops' outputs together is scaled
    alternately so that every prototype gets the same total weight and every image a
    weight of 1 (SwAV's equipartition, Caron et al. 2020), ``iterations`` times.  Returns the
    targets per crop (rows sum to 1).  Computed in the log domain: the same numbers as the
    official code, without exp underflowing at small τ_t.  ``across_ranks``: the prototype
    sums run over every rank's rows, as DINOv2's distributed ``sinkhorn_knopp_teacher``.
    """
    _check_temperature("dino_sinkhorn_targets", teacher_temp)
    if iterations < 1:
        raise ValueError(f"dino_sinkhorn_targets needs at least 1 iteration, got {iterations}")
    log_q = torch.cat([x.detach().float() for x in teacher]) / teacher_temp  # N x K
    n, k = log_q.shape
    for _ in range(iterations):
        log_q = log_q - _logsumexp_over_rows(log_q, across_ranks) - math.log(k)  # each prototype: total 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)  # each image: total 1 (official: 1/N, then x N)
    return list(log_q.exp().chunk(len(teacher)))


def ibot_patch_loss(student: torch.Tensor, targets: torch.Tensor, owner: torch.Tensor, num_crops: int,
                    student_temp: float = 0.1) -> torch.Tensor:
    """iBOT's masked-patch self-distillation (Zhou et al. 2022, eq. 2; ``loss2`` in the official ``iBOTLoss``).

    ``student``: M×K logits of the M hidden patches as the student saw them (mask token in
    place); ``targets``: M×K teacher probabilities for the same patches of the unmasked crop
    (centred and sharpened, or Sinkhorn, by the caller); ``owner``: the crop (0..num_crops-1)
    each patch belongs to.  Each crop's cross-entropy is averaged over its hidden patches and
    the sum is divided by *all* ``num_crops`` crops, masked or not, as the official code does
    (so the weight of the term follows how many crops are masked).
    """
    _check_temperature("ibot_patch_loss", student_temp)
    if num_crops < 1:
        raise ValueError(f"ibot_patch_loss needs num_crops >= 1, got {num_crops}")
    if isinstance(student, torch.Tensor) and student.ndim == 2 and student.shape[0] == 0:
        return student.sum() * 0.0  # no crop masked this step: no term, but a graph to backpropagate through
    _check_matrix("ibot_patch_loss", student, "student")
    if targets.shape != student.shape:
        raise ValueError(f"ibot_patch_loss needs targets shaped like the student's {tuple(student.shape)}, got {tuple(targets.shape)}")
    if owner.shape != student.shape[:1]:
        raise ValueError(f"ibot_patch_loss needs one crop index per hidden patch ({student.shape[0]}), got shape {tuple(owner.shape)}")
    per_patch = -(targets.detach().float() * F.log_softmax(student.float() / student_temp, dim=1)).sum(dim=1)
    owner = owner.to(per_patch.device)
    count = torch.zeros(num_crops, device=per_patch.device).index_add_(0, owner, torch.ones_like(per_patch))
    return (per_patch / count[owner]).sum() / num_crops


def koleo_loss(features: torch.Tensor, eps: float = 1e-8, across_ranks: bool = False) -> torch.Tensor:
    """The Kozachenko-Leonenko entropy regulariser, -mean log (distance to the nearest neighbour).

    Sablayrolles et al. 2019 ("Spreading vectors for similarity search"); DINOv2 (Oquab et al.
    2023, §4) adds it, weight 0.1, on the student's L2-normalised [CLS] features of each global
    crop, so no two images of a batch sit on the same point: a term that rises without bound as
    the features collapse, which DINO's centring and sharpening alone do not have.  ``features``:
    B×D (B >= 2), normalised here; the nearest neighbour is found without gradient, the distance
    to it has one.  ``across_ranks``: neighbours are searched in the *global* batch (gathered with
    gradient), so N processes compute what one does; DINOv2 searches each GPU's batch alone.
    """
    _check_matrix("koleo_loss", features, "features")
    if features.shape[0] < 2:
        raise ValueError(f"koleo_loss needs at least 2 features to find neighbours, got {features.shape[0]}")
    x = F.normalize(features.float(), dim=1, eps=eps)
    everyone = dist.gather(x) if across_ranks else x
    offset = dist.rank() * len(x) if across_ranks else 0
    with torch.no_grad():
        similarity = x @ everyone.t()
        rows = torch.arange(len(x), device=x.device)
        similarity[rows, rows + offset] = -2.0  # below any cosine: an image is not its own neighbour
        nearest = similarity.argmax(dim=1)
    distance = (x - everyone[nearest]).norm(dim=1)
    return -torch.log(distance + eps).mean()


@torch.no_grad()
def dino_center_update(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9,
                       across_ranks: bool = False) -> torch.Tensor:
    """DINO's centre (Caron et al. 2021, eq. 4): c <- m c + (1 - m) mean of the teacher outputs of the batch.

    ``across_ranks``: the mean of the global batch (sum and count all-reduced, as the official code).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"dino_center_update: momentum must be in [0, 1], got {momentum}")
    rows = torch.cat([t.detach().float() for t in teacher])
    if across_ranks:
        total = dist.all_reduce_sum(torch.cat([rows.sum(dim=0), rows.new_tensor([float(len(rows))])]))
        if float(total[-1]) == 0:  # no rank had a row (no hidden patch anywhere): nothing to move the centre to
            return center
        batch_mean = (total[:-1] / total[-1])[None]
    else:
        batch_mean = rows.mean(dim=0, keepdim=True)
    return center * momentum + batch_mean.to(center.dtype) * (1 - momentum)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5e-3, eps: float = 1e-5,
                      across_ranks: bool = False) -> dict[str, torch.Tensor]:
    """Barlow Twins (Zbontar et al. 2021, eq. 1): the cross-correlation of the two views towards the identity.

    Each embedding dimension is standardised over the batch (the paper's affine-free
    batch norm), C = z1ᵀz2 / B, and the loss is Σ(1 - C_ii)² + λ Σ_{i≠j} C_ij².
    Returns the terms and their sum ``loss``; λ = 0 drops the decorrelation term
    (the no-covariance ablation) while the term itself is still reported.  ``across_ranks``:
    the standardisation and C over the global batch (sums all-reduced with gradient, as the
    official code's ``all_reduce(c)``); every rank then holds the global loss.
    """
    _check_pair("barlow_twins_loss", z1, z2)
    if lambda_offdiag < 0:
        raise ValueError(f"barlow_twins_loss: lambda_offdiag must be >= 0, got {lambda_offdiag}")
    z1, z2 = z1.float(), z2.float()
    if across_ranks and dist.is_distributed():
        n = float(dist.world_size() * z1.shape[0])
        standardised = []
        for z in (z1, z2):
            mean = dist.all_reduce_sum(z.sum(0)) / n
            var = dist.all_reduce_sum((z - mean).pow(2).sum(0)) / n
            standardised.append((z - mean) / torch.sqrt(var + eps))
        c = dist.all_reduce_sum(standardised[0].T @ standardised[1]) / n
    else:
        n = z1.shape[0]
        z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
        z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
        c = z1.T @ z2 / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return {"loss": on_diag + lambda_offdiag * off_diag, "on_diag": on_diag, "off_diag": off_diag}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float = 25.0, variance_weight: float = 25.0,
                covariance_weight: float = 1.0, gamma: float = 1.0, eps: float = 1e-4,
                across_ranks: bool = False) -> dict[str, torch.Tensor]:
    """VICReg (Bardes, Ponce & LeCun 2022, eq. 1-6): invariance, variance and covariance terms.

    invariance: mean squared distance of the two views; variance: mean over dimensions
    of relu(γ - sqrt(Var + ε)) for each view, averaged over the views; covariance: the
    squared off-diagonal covariances divided by D, summed over the views.  Returns the
    raw terms and ``loss`` = weighted sum; a weight of 0 drops a term from the loss
    (the ablations) while the term is still reported.  ``across_ranks``: variance and
    covariance over the global batch (gathered with gradient, as the official
    ``FullGatherLayer``); the invariance term is per sample and stays this rank's.
    """
    _check_pair("vicreg_loss", z1, z2)
    for name, w in (("invariance_weight", invariance_weight), ("variance_weight", variance_weight), ("covariance_weight", covariance_weight)):
        if w < 0:
            raise ValueError(f"vicreg_loss: {name} must be >= 0, got {w}")
    z1, z2 = z1.float(), z2.float()
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    if across_ranks:
        z1, z2 = dist.gather(z1), dist.gather(z2)
        n = z1.shape[0]
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)
        variance = variance + F.relu(gamma - std).mean() / 2
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (n - 1)
        covariance = covariance + _off_diagonal(cov).pow(2).sum() / d
    loss = invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}


# --------------------------------------------------------------------------- masked and predictive (MAE, I-JEPA)


def patch_normalise(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's ``norm_pix_loss`` target: each patch minus its mean, over sqrt(var + eps).

    Returns ``(normalised, mean, std)`` with ``mean``/``std`` of shape ``... x 1``, so
    ``normalised * std + mean`` undoes it (how reconstructions are shown).  The
    variance is the unbiased one, exactly as ``target.var(dim=-1)`` in the reference code.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    std = (var + eps).sqrt()
    return (patches - mean) / std, mean, std


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = False) -> torch.Tensor:
    """Mean squared error on the *masked* patches only (He et al. 2022, sec. 3 "Reconstruction target").

    ``pred``, ``target``: ``B x N x K`` patches; ``mask``: ``B x N``, 1 where a patch was
    hidden.  Per-patch MSE (mean over the K pixel values), averaged over hidden patches.
    With ``norm_pix`` the target is each patch normalised by its own mean and std.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"mae_loss: pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} do not match")
    target = target.float()
    if norm_pix:
        target = patch_normalise(target)[0]
    per_patch = (pred.float() - target).pow(2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)


def ijepa_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1") -> torch.Tensor:
    """Distance between predicted and target patch embeddings (Assran et al. 2023, eq. 1).

    The paper writes the average L2 distance; the official code uses
    ``F.smooth_l1_loss`` (Huber with beta 1): ``kind`` picks "mse" or "smooth_l1".
    The target is expected to be layer-normalised already and detached.
    """
    if pred.shape != target.shape:
        raise ValueError(f"ijepa_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred.float(), target.float())
    if kind == "mse":
        return F.mse_loss(pred.float(), target.float())
    raise ValueError(f"ijepa_loss: kind must be 'smooth_l1' or 'mse', got {kind!r}")


# ---------------------------------------------------------------------------
# Cross-modal: CLIP and SigLIP (image-text pairs).
# ---------------------------------------------------------------------------

import math  # noqa: E402 - used only by the cross-modal section below

CLIP_INIT_LOG_SCALE = math.log(1 / 0.07)  # Radford et al. 2021, sec. 2.5: temperature initialised at 0.07
CLIP_MAX_LOG_SCALE = math.log(100.0)  # ... and the logit scale clipped at 100 "to prevent scaling the logits by more than 100"
SIGLIP_INIT_LOG_SCALE = math.log(10.0)  # Zhai et al. 2023, sec. 3.2 / algorithm 1: t' = log 10
SIGLIP_INIT_BIAS = -10.0  # ... and b = -10, so that the many negatives start near their target


def _log_scale(value, max_log_scale: float | None) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    t = t.float()
    if max_log_scale is not None:
        t = t.clamp(max=max_log_scale)
    return t


def _check_positives(name: str, positives: torch.Tensor | None, n: int, device, columns: int | None = None,
                     offset: int = 0) -> torch.Tensor:
    """``n`` × ``columns`` bool: row i's own pair is column ``offset + i`` (this rank's rows of the global batch)."""
    columns = n if columns is None else columns
    rows = torch.arange(n, device=device)
    if positives is None:
        eye = torch.zeros(n, columns, dtype=torch.bool, device=device)
        eye[rows, rows + offset] = True
        return eye
    if positives.shape != (n, columns):
        raise ValueError(f"{name} needs a {n}×{columns} positives mask, got {tuple(positives.shape)}")
    positives = positives.to(device=device, dtype=torch.bool)
    if not bool(positives[rows, rows + offset].all()):
        raise ValueError(f"{name}: every image must be a positive of its own caption (the mask's diagonal must be True)")
    return positives


def clip_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor | float = CLIP_INIT_LOG_SCALE,
              positives: torch.Tensor | None = None, max_log_scale: float | None = CLIP_MAX_LOG_SCALE,
              normalize: bool = True, across_ranks: bool = False) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021, fig. 3): (CE(image→text) + CE(text→image)) / 2.

    logits = exp(log_scale) · norm(image) · norm(text)ᵀ; image i must pick caption i
    among the B captions of the batch and caption i image i among the images.
    ``log_scale`` is the learnable log of the inverse temperature, clamped at
    ``max_log_scale`` (ln 100).  ``positives`` (B×B bool, diagonal True) marks
    other pairs that are just as right, e.g. two images with the same caption
    text: the target then spreads evenly over them instead of calling a correct
    caption a negative (CLIP's web captions rarely repeat; class-name captions do).
    ``across_ranks``: this rank's images against every rank's captions and its captions
    against every rank's images (both gathered with gradient, as open_clip's
    ``gather_with_grad``); ``positives`` is then this rank's rows × the global batch.
    """
    _check_pair("clip_loss", image, text)
    img, txt = image.float(), text.float()
    if normalize:
        img, txt = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    scale = _log_scale(log_scale, max_log_scale).to(img.device).exp()
    if across_ranks:
        all_img, all_txt, offset = dist.gather(img), dist.gather(txt), dist.rank() * len(img)
        i2t_logits, t2i_logits = scale * img @ all_txt.T, scale * txt @ all_img.T
    else:
        offset = 0
        i2t_logits = scale * img @ txt.T
        t2i_logits = i2t_logits.T
    n, columns = i2t_logits.shape
    if positives is None:
        target = torch.arange(n, device=img.device) + offset
        return (F.cross_entropy(i2t_logits, target) + F.cross_entropy(t2i_logits, target)) / 2
    pos = _check_positives("clip_loss", positives, n, img.device, columns, offset).float()
    pos_t = pos if across_ranks else pos.T  # a pair's relation is symmetric: rows × global columns serve both ways
    i2t = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(i2t_logits, dim=1)).sum(1).mean()
    t2i = -(pos_t / pos_t.sum(1, keepdim=True) * F.log_softmax(t2i_logits, dim=1)).sum(1).mean()
    return (i2t + t2i) / 2


def siglip_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor | float = SIGLIP_INIT_LOG_SCALE,
                bias: torch.Tensor | float = SIGLIP_INIT_BIAS, positives: torch.Tensor | None = None,
                max_log_scale: float | None = None, normalize: bool = True, across_ranks: bool = False) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, eq. 2 and algorithm 1).

    Every image-caption pair of the batch is an independent binary problem:
    logits = exp(t')·norm(image)·norm(text)ᵀ + b, label +1 on the diagonal (and on
    ``positives``) and -1 elsewhere, loss = -Σ log σ(label · logit) / B.  No
    softmax couples the pairs, so the loss needs no all-gather of the batch and
    does not depend on its size the way InfoNCE does.  The paper does not clamp
    t'; ``max_log_scale`` can.  ``across_ranks``: this rank's images against every
    rank's captions (gathered with gradient; the paper's chunked exchange computes the
    same pairs), divided by this rank's images, so the mean over ranks is the global loss.
    """
    _check_pair("siglip_loss", image, text)
    img, txt = image.float(), text.float()
    if normalize:
        img, txt = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    scale = _log_scale(log_scale, max_log_scale).to(img.device).exp()
    b = bias.float() if isinstance(bias, torch.Tensor) else torch.tensor(float(bias))
    offset = dist.rank() * len(img) if across_ranks else 0
    if across_ranks:
        txt = dist.gather(txt)
    logits = scale * img @ txt.T + b.to(img.device)
    n = len(img)
    labels = 2 * _check_positives("siglip_loss", positives, n, img.device, logits.shape[1], offset).float() - 1
    return -F.logsigmoid(labels * logits).sum() / n
