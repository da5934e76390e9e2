import math

import numpy as np
import pytest
import torch

from ssl_studio.engine import diagnostics
from ssl_studio.engine.evaluate import knn_accuracy, knn_predict
from ssl_studio.engine.optim import LARS, lr_at


def test_effective_rank_of_known_spectra():
    eye = torch.eye(16)
    assert diagnostics.effective_rank(eye) == pytest.approx(16, rel=1e-4)  # equal singular values: full rank
    one_dim = torch.randn(100, 1) @ torch.randn(1, 16)
    assert diagnostics.effective_rank(one_dim) == pytest.approx(1.0, abs=0.01)


def test_collapse_indicators():
    g = torch.Generator().manual_seed(0)
    healthy = torch.randn(500, 32, generator=g)
    collapsed = torch.ones(500, 32) + 1e-4 * torch.randn(500, 32, generator=g)
    assert abs(diagnostics.mean_cosine(healthy)) < 0.05
    assert diagnostics.mean_cosine(collapsed) > 0.99
    assert diagnostics.dim_std(healthy) == pytest.approx(1 / math.sqrt(32), rel=0.1)
    assert diagnostics.dim_std(collapsed) < 1e-3
    assert diagnostics.collapse_verdict(diagnostics.mean_cosine(collapsed), diagnostics.effective_rank(collapsed), 32) == "representational collapse"
    assert diagnostics.collapse_verdict(diagnostics.mean_cosine(healthy), diagnostics.effective_rank(healthy), 32) is None


def test_spectrum_is_sorted_and_matches_covariance():
    x = torch.randn(200, 4) * torch.tensor([3.0, 2.0, 1.0, 0.1])
    eig = diagnostics.spectrum(x)
    assert np.all(np.diff(eig) <= 1e-12)
    assert eig[0] == pytest.approx(np.cov(x.numpy().T).diagonal().max(), rel=0.2)
    assert diagnostics.pca_2d(x).shape == (200, 2)


def test_knn_hand_built_case():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_predict(bank, labels, queries, k=2).tolist() == [0, 1]
    # with k = 4 every query sees all neighbours; the closer ones win through the exp(sim / t) weights
    assert knn_predict(bank, labels, queries, k=4).tolist() == [0, 1]
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 0]), k=2) == 0.5


def test_lr_schedule_warms_up_then_anneals():
    assert lr_at(0.0, 1.0, 0.1, "cosine") == 0.0
    assert lr_at(0.05, 1.0, 0.1, "cosine") == pytest.approx(0.5)
    assert lr_at(0.1, 1.0, 0.1, "cosine") == pytest.approx(1.0)
    assert lr_at(1.0, 1.0, 0.1, "cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_at(0.7, 1.0, 0.1, "constant") == 1.0


def test_lars_scales_update_by_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5
    w.grad = torch.tensor([0.0, 10.0])  # norm 10
    opt = LARS([w], lr=1.0, momentum=0.0, eta=0.02)
    opt.step()
    # update = lr * eta * ||w|| / ||g|| * g = 0.02 * 0.5 * g
    assert w.detach().tolist() == pytest.approx([3.0, 4.0 - 0.1])
