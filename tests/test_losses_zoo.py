"""The zoo's pure losses against hand-computed values and their published formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_studio.objectives import losses as L


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- regression losses -----------------------------------------------------------------

def test_byol_regression_hand_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 0.0], [2.0, 0.0]])  # cos 1 and cos 0
    assert L.byol_regression(p, z).item() == pytest.approx((0.0 + 2.0) / 2)
    assert L.byol_regression(p, -p).item() == pytest.approx(4.0)


def test_negative_cosine_hand_values():
    p = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    z = torch.tensor([[2.0, 2.0], [0.0, 1.0]])
    assert L.negative_cosine(p, z).item() == pytest.approx(-(1.0 + 0.0) / 2)


def test_byol_is_two_plus_two_negative_cosine():
    p, z = _rand(8, 5, seed=1), _rand(8, 5, seed=2)
    assert L.byol_regression(p, z).item() == pytest.approx(2 + 2 * L.negative_cosine(p, z).item(), abs=1e-5)


@pytest.mark.parametrize("fn", [L.byol_regression, L.negative_cosine, L.infonce])
def test_pair_losses_reject_bad_shapes(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        fn(torch.zeros(1, 3), torch.zeros(1, 3))


# -- InfoNCE ---------------------------------------------------------------------------

def test_infonce_with_queue_hand_value():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 0.5
    # row 0: positive cos 1, negatives 0 and -1; row 1: positive 1, negatives 1 and 0
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(-2)))
    row1 = -math.log(math.exp(2) / (math.exp(2) + math.exp(2) + math.exp(0)))
    assert L.infonce_with_queue(q, k, queue, t).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_infonce_with_empty_queue_falls_back_to_batch_negatives():
    q, k = _rand(6, 4, seed=3), _rand(6, 4, seed=4)
    a = L.infonce_with_queue(q, k, torch.zeros(0, 4), 0.2)
    assert a.item() == pytest.approx(L.infonce(q, k, 0.2).item())
    with pytest.raises(ValueError, match="queue"):
        L.infonce_with_queue(q, k, torch.zeros(5, 3), 0.2)
    with pytest.raises(ValueError, match="temperature"):
        L.infonce_with_queue(q, k, None, 0.0)


def test_infonce_matches_cross_entropy_formula():
    q, k = _rand(5, 3, seed=5), _rand(5, 3, seed=6)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = qn @ kn.T / 0.3
    expected = -torch.log_softmax(logits, 1).diagonal().mean()
    assert L.infonce(q, k, 0.3).item() == pytest.approx(expected.item(), rel=1e-5)
    sym = L.mocov3_loss(q, k, q, k, 0.3)  # (q1, q2, k1, k2): ctr(q1, k2) + ctr(q2, k1)
    assert sym.item() == pytest.approx(2 * 0.3 * (L.infonce(q, k, 0.3) + L.infonce(k, q, 0.3)).item(), rel=1e-5)


# -- SwAV ------------------------------------------------------------------------------

def test_sinkhorn_rows_exact_and_columns_balanced():
    scores = F.normalize(_rand(64, 8, seed=7), dim=1)
    q = L.sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    assert q.shape == (64, 8)
    assert torch.all(q >= 0)
    torch.testing.assert_close(q.sum(1), torch.ones(64), atol=1e-5, rtol=0)  # each sample: a distribution
    # with enough iterations the prototype marginals converge to B/K: doubly stochastic up to scale
    q50 = L.sinkhorn_knopp(scores, epsilon=0.05, iterations=50)
    torch.testing.assert_close(q50.sum(1), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(q50.sum(0), torch.full((8,), 64 / 8), atol=1e-2, rtol=0)
    # 3 iterations already spread the mass far more evenly than the raw softmax
    raw = F.softmax(scores / 0.05, dim=1).sum(0)
    assert (q.sum(0) - 8).abs().max() < (raw - 8).abs().max()


def test_sinkhorn_one_iteration_by_hand():
    scores = torch.tensor([[0.1, 0.0], [0.1, 0.0], [0.0, 0.1]])
    eps = 0.1
    q = torch.exp(scores / eps)
    q = q / q.sum()
    q = q / q.sum(0, keepdim=True) / 2
    q = q / q.sum(1, keepdim=True) / 3
    torch.testing.assert_close(L.sinkhorn_knopp(scores, eps, 1), q * 3)


def test_sinkhorn_survives_tiny_epsilon():
    q = L.sinkhorn_knopp(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), epsilon=1e-3, iterations=3)
    assert torch.isfinite(q).all()
    with pytest.raises(ValueError, match="epsilon"):
        L.sinkhorn_knopp(torch.zeros(2, 2), epsilon=0.0)
    with pytest.raises(ValueError, match="scores"):
        L.sinkhorn_knopp(torch.zeros(2))


def test_swav_swapped_loss_hand_value():
    s1 = torch.tensor([[1.0, 0.0]])
    s2 = torch.tensor([[0.0, 1.0]])
    q1 = torch.tensor([[1.0, 0.0]])
    q2 = torch.tensor([[0.5, 0.5]])
    t = 1.0
    lp1, lp2 = torch.log_softmax(s1 / t, 1), torch.log_softmax(s2 / t, 1)
    expected = (-(q1 * lp2).sum() - (q2 * lp1).sum()) / 2
    assert L.swav_swapped_loss([s1, s2], [q1, q2], t).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="at least 2 crops"):
        L.swav_swapped_loss([s1], [q1], t)


# -- DINO ------------------------------------------------------------------------------

def test_dino_loss_hand_value_and_skips_same_view():
    s = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]])]
    t = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])]
    c = torch.tensor([[1.0, 0.0]])
    st, tt = 0.5, 0.25
    targets = [F.softmax((x - c) / tt, 1) for x in t]
    logp = [F.log_softmax(x / st, 1) for x in s]
    terms = [-(targets[i] * logp[v]).sum() for i in range(2) for v in range(3) if v != i]
    assert L.dino_loss(s, t, c, st, tt).item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)
    # without centring the centre is simply not subtracted
    targets0 = [F.softmax(x / tt, 1) for x in t]
    terms0 = [-(targets0[i] * logp[v]).sum() for i in range(2) for v in range(3) if v != i]
    assert L.dino_loss(s, t, None, st, tt).item() == pytest.approx(torch.stack(terms0).mean().item(), rel=1e-6)


def test_dino_loss_gives_no_gradient_to_the_teacher():
    s = [_rand(4, 6, seed=i).requires_grad_() for i in range(3)]
    t = [_rand(4, 6, seed=10 + i).requires_grad_() for i in range(2)]
    L.dino_loss(s, t, torch.zeros(1, 6)).backward()
    assert all(x.grad is not None for x in s)
    assert all(x.grad is None for x in t)
    with pytest.raises(ValueError, match="centre"):
        L.dino_loss(s, t, torch.zeros(1, 5))


def test_dino_center_follows_batch_mean():
    center = torch.tensor([[1.0, 2.0]])
    t = [torch.tensor([[0.0, 0.0], [2.0, 4.0]]), torch.tensor([[4.0, 0.0], [2.0, 0.0]])]
    new = L.dino_center_update(center, t, momentum=0.9)
    batch_mean = torch.tensor([[2.0, 1.0]])
    torch.testing.assert_close(new, 0.9 * center + 0.1 * batch_mean)
    torch.testing.assert_close(L.dino_center_update(center, t, momentum=0.0), batch_mean)


# -- Barlow Twins and VICReg -----------------------------------------------------------

def test_barlow_identical_decorrelated_views_give_zero():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # standardised, uncorrelated
    terms = L.barlow_twins_loss(z, z, 5e-3, eps=0.0)
    assert terms["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_barlow_hand_value():
    z1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    # standardised already; C = z1^T z2 / 2 = [[1, -1], [1, -1]]
    terms = L.barlow_twins_loss(z1, z2, lambda_offdiag=0.5, eps=0.0)
    assert terms["on_diag"].item() == pytest.approx((1 - 1) ** 2 + (-1 - 1) ** 2)
    assert terms["off_diag"].item() == pytest.approx(1 + 1)
    assert terms["loss"].item() == pytest.approx(4 + 0.5 * 2)
    no_cov = L.barlow_twins_loss(z1, z2, lambda_offdiag=0.0, eps=0.0)
    assert no_cov["loss"].item() == pytest.approx(no_cov["on_diag"].item())
    assert no_cov["off_diag"].item() == pytest.approx(2.0)  # still measured


def test_vicreg_hand_values():
    z1 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    z2 = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    terms = L.vicreg_loss(z1, z2, eps=0.0)
    assert terms["invariance"].item() == pytest.approx((0 + 1 + 0 + 1) / 4)
    # z1: std (unbiased) sqrt(2) per dim -> hinge 0; z2: dim0 sqrt(2) -> 0, dim1 0 -> 1; mean over dims /2 views
    assert terms["variance"].item() == pytest.approx((0.0 + 0.5) / 2)
    # z1: cov (unbiased) [[2, 2], [2, 2]], two off-diagonal entries 2 -> (4 + 4) / D = 4; z2: off-diagonal 0
    assert terms["covariance"].item() == pytest.approx(4.0)
    assert terms["loss"].item() == pytest.approx(25 * 0.5 + 25 * 0.25 + 1 * 4.0)
    no_var = L.vicreg_loss(z1, z2, variance_weight=0.0, eps=0.0)
    assert no_var["loss"].item() == pytest.approx(25 * 0.5 + 4.0)
    no_cov = L.vicreg_loss(z1, z2, covariance_weight=0.0, eps=0.0)
    assert no_cov["loss"].item() == pytest.approx(25 * 0.5 + 25 * 0.25)
    with pytest.raises(ValueError, match="variance_weight"):
        L.vicreg_loss(z1, z2, variance_weight=-1)


def test_losses_are_float32_under_bf16_inputs():
    a, b = _rand(8, 16, seed=1).bfloat16(), _rand(8, 16, seed=2).bfloat16()
    for value in (L.byol_regression(a, b), L.negative_cosine(a, b), L.infonce(a, b), L.barlow_twins_loss(a, b)["loss"],
                  L.vicreg_loss(a, b)["loss"], L.dino_loss([a, b], [b], None), L.swav_swapped_loss([a, b], [F.softmax(b.float(), 1)])):
        assert value.dtype == torch.float32
