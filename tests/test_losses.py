import math

import pytest
import torch

from ssl_studio.objectives.losses import contrastive_accuracy, nt_xent


def test_nt_xent_matches_hand_computed_value():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each anchor: positive similarity 1, two negatives with similarity 0
    assert nt_xent(z, z.clone(), temperature=1.0).item() == pytest.approx(math.log(2 + math.e) - 1, abs=1e-6)
    assert nt_xent(z, z.clone(), temperature=0.5).item() == pytest.approx(math.log(2 + math.e ** 2) - 2, abs=1e-6)


def test_nt_xent_is_symmetric_in_its_views_and_scale_invariant_when_normalised():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert nt_xent(a, b).item() == pytest.approx(nt_xent(b, a).item(), rel=1e-6)
    assert nt_xent(3 * a, b).item() == pytest.approx(nt_xent(a, b).item(), rel=1e-5)
    # plain dot products (the "no temperature normalisation" ablation) are not scale invariant
    assert nt_xent(3 * a, b, temperature=1.0, normalize=False).item() != pytest.approx(nt_xent(a, b, temperature=1.0, normalize=False).item())


def test_nt_xent_rewards_aligned_views():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(16, 8, generator=g)
    assert nt_xent(a, a + 0.01 * torch.randn(16, 8, generator=g)) < nt_xent(a, torch.randn(16, 8, generator=g))
    assert contrastive_accuracy(a, a) == 1.0


def test_nt_xent_validates_inputs():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0)
