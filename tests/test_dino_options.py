"""DINO's optional parts: the Sinkhorn-Knopp teacher (DINOv2), a frozen prototype layer early on,
BN in the head, and the step diagnostics that explain a flat or sharp teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssl_studio.models import build_backbone
from ssl_studio.config import ModelConfig
from ssl_studio.objectives import Batch, ObjectiveContext
from ssl_studio.objectives import dino as dino_mod
from ssl_studio.objectives import losses as L


pytestmark = pytest.mark.usefixtures("one_thread")


def make_dino(**params):
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone="convnet", width=8), 32)
    p = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16) | params
    return dino_mod.DINO(bb, dino_mod.DINO.parse_params(p), ObjectiveContext(image_size=32, num_classes=10, batch_size=8))


def batch():
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g),
             torch.randn(8, 3, 16, 16, generator=g), torch.randn(8, 3, 16, 16, generator=g)]
    return Batch(views=views, images=torch.zeros(8, 3, 32, 32, dtype=torch.uint8), indices=torch.arange(8))


def official_sinkhorn(t, temp, iterations=3):
    """dinov2/loss/dino_clstoken_loss.py ``sinkhorn_knopp_teacher``, one process."""
    q = torch.exp(t / temp).t()
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def test_dino_sinkhorn_targets_match_the_official_code_and_balance():
    g = torch.Generator().manual_seed(0)
    t = [0.3 * torch.randn(6, 5, generator=g), 0.3 * torch.randn(6, 5, generator=g)]
    q = L.dino_sinkhorn_targets(t, 0.1, 3)
    assert len(q) == 2 and q[0].shape == (6, 5)
    torch.testing.assert_close(torch.cat(q), official_sinkhorn(torch.cat(t), 0.1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat(q).sum(1), torch.ones(12))
    many = torch.cat(L.dino_sinkhorn_targets(t, 0.1, 50))
    torch.testing.assert_close(many.sum(0), torch.full((5,), 12 / 5), rtol=1e-3, atol=1e-3)  # equipartition


def test_dino_sinkhorn_targets_survive_a_sharp_temperature():
    t = [torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])]
    q = torch.cat(L.dino_sinkhorn_targets(t, 0.005, 3))  # exp(400) would overflow the official form
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(1), torch.ones(2))


def test_dino_cross_entropy_is_dino_loss_on_its_own_targets():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(4, 6, generator=g) for _ in range(3)]
    t = [torch.randn(4, 6, generator=g) for _ in range(2)]
    c = torch.randn(1, 6, generator=g)
    targets = [F.softmax((x - c) / 0.04, dim=1) for x in t]
    torch.testing.assert_close(L.dino_cross_entropy(s, targets, 0.1), L.dino_loss(s, t, c, 0.1, 0.04))


def test_dino_sinkhorn_teacher_is_used_and_learns():
    obj = make_dino(teacher_centering="sinkhorn")
    b = batch()
    out = obj.training_step(b, 0.5)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert obj.head.last_v.grad is not None
    assert obj.teacher_head.last_v.grad is None
    ref = make_dino()
    assert not torch.isclose(out.loss, ref.training_step(b, 0.5).loss)  # a different target from centring


def test_dino_freeze_last_layer_only_early():
    obj = make_dino(freeze_last_layer=0.2)
    b = batch()
    obj.training_step(b, 0.1).loss.backward()
    assert obj.head.last_v.grad is None
    assert obj.head.mlp[0].weight.grad is not None
    obj.zero_grad()
    obj.training_step(b, 0.3).loss.backward()
    assert obj.head.last_v.grad is not None


def test_dino_bn_in_head_is_optional():
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in make_dino().head.modules())
    head = make_dino(use_bn_in_head=True).head
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == 2


def test_dino_step_diagnostics_are_finite():
    obj = make_dino()
    metrics = obj.training_step(batch(), 0.0).metrics
    for key in ("teacher_entropy", "teacher_info", "center_norm", "common_mode", "img_std", "protos_used",
                "student_entropy", "teacher_view_agree"):
        assert key in metrics and torch.isfinite(torch.as_tensor(float(metrics[key]))), key
    assert 1 <= metrics["protos_used"] <= 16
    assert 0.0 <= float(metrics["common_mode"]) <= 1.0 + 1e-6


def test_dino_on_a_convnet_defaults_to_the_recipe_that_learns_there():
    from ssl_studio.config import config_from_mapping, load_config
    from ssl_studio.engine.build import objective_params, resolved_optim
    from ssl_studio.presets import presets_dir

    conv = config_from_mapping({"objective": {"name": "dino"}})  # what `ssl-studio train --objective dino` runs
    p = objective_params(conv)
    assert (p.use_bn_in_head, p.out_dim, p.local_crops, p.base_momentum) == (True, 128, 0, 0.9)
    assert resolved_optim(conv) == ("lars", 0.3, 1e-6)
    resnet = config_from_mapping({"objective": {"name": "dino"}, "model": {"backbone": "resnet18"}})
    assert objective_params(resnet) == p and resolved_optim(resnet) == resolved_optim(conv)
    # on the ViT the paper's settings stay
    vit = config_from_mapping({"objective": {"name": "dino"}, "model": {"backbone": "vit"}})
    assert objective_params(vit) == dino_mod.DINOParams()
    assert resolved_optim(vit) == ("adamw", 5e-4, 0.04)
    # values the user gives win, field by field
    mine = config_from_mapping({"objective": {"name": "dino", "out_dim": 1024, "use_bn_in_head": False},
                                "optim": {"optimizer": "adamw"}})
    q = objective_params(mine)
    assert (q.out_dim, q.use_bn_in_head, q.local_crops, q.base_momentum) == (1024, False, 0, 0.9)
    assert resolved_optim(mine) == ("adamw", 0.3, 1e-6)
    # the dino preset writes out exactly this recipe
    preset = load_config(presets_dir() / "dino.toml")
    assert objective_params(preset) == p and resolved_optim(preset) == resolved_optim(conv)


# ---------------------------------------------------------------- iBOT's masked-patch distillation


def make_ibot(**params):
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone="vit", width=8), 32)
    p = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, ibot_loss_weight=1.0) | params
    return dino_mod.DINO(bb, dino_mod.DINO.parse_params(p), ObjectiveContext(image_size=32, num_classes=10, batch_size=8))


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5])
def test_blockwise_masks_hide_exactly_the_asked_share(ratio):
    from ssl_studio.objectives.masking import blockwise_patch_mask, num_masked

    mask = blockwise_patch_mask([ratio] * 50, 8, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (50, 64) and mask.dtype == torch.bool
    assert (mask.sum(1) == num_masked(64, ratio)).all()


def test_blockwise_masks_come_in_blocks():
    """Hidden patches touch other hidden patches far more often than a random set of the same size does."""
    from ssl_studio.objectives.masking import blockwise_patch_mask, random_patch_mask

    def neighbour_share(mask):
        m = mask.view(-1, 8, 8).float()
        pad = F.pad(m, (1, 1, 1, 1))
        neighbours = pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]
        return ((neighbours > 0).float() * m).sum() / m.sum()

    g = torch.Generator().manual_seed(1)
    blocks = blockwise_patch_mask([0.3] * 200, 8, generator=g)
    scattered = random_patch_mask(200, 64, 0.3, generator=g).mask
    assert neighbour_share(blocks) > 0.95
    assert neighbour_share(blocks) > neighbour_share(scattered) + 0.1


def test_vit_mask_token_hides_the_patch_and_keeps_its_place():
    torch.manual_seed(0)
    vit = build_backbone(ModelConfig(backbone="vit", width=8), 32).eval()
    token = torch.randn(vit.embed_dim)
    x = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, vit.num_patches, dtype=torch.bool)
    mask[:, 0] = True  # the top-left 4x4 patch
    out = vit.forward_tokens(x, mask=mask, mask_token=token)
    assert out.shape == (2, 1 + vit.num_patches, vit.embed_dim)
    changed = x.clone()
    changed[:, :, :4, :4] += 5.0  # only the hidden patch's pixels
    torch.testing.assert_close(vit.forward_tokens(changed, mask=mask, mask_token=token), out)
    assert not torch.allclose(vit.forward_tokens(changed), vit.forward_tokens(x))  # without the mask they count
    with pytest.raises(ValueError, match="mask must be"):
        vit.forward_tokens(x, mask=mask[:, :10], mask_token=token)


def test_ibot_patch_loss_hand_value():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    owner = torch.tensor([0, 0, 2])  # crop 0 hides two patches, crop 1 none, crop 2 one
    ce = -(q * F.log_softmax(s.detach() / 0.5, dim=1)).sum(1)
    expected = ((ce[0] + ce[1]) / 2 + ce[2]) / 3
    loss = L.ibot_patch_loss(s, q, owner, num_crops=3, student_temp=0.5)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    empty = torch.zeros(0, 2, requires_grad=True)
    assert L.ibot_patch_loss(empty, empty.detach(), torch.zeros(0, dtype=torch.long), num_crops=3) == 0
    with pytest.raises(ValueError, match="one crop index per hidden patch"):
        L.ibot_patch_loss(s, q, owner[:2], num_crops=3)


def test_ibot_trains_the_mask_token_and_keeps_a_patch_centre():
    obj = make_ibot()
    b = batch()
    out = obj.training_step(b, 0.5)
    m = out.metrics
    torch.testing.assert_close(out.loss.detach(), m["cls_loss"] + m["patch_loss"])
    assert float(m["patch_loss"]) > 0 and 0 < m["masked_patches"] < 64
    out.loss.backward()
    assert obj.mask_token.grad is not None and obj.mask_token.grad.abs().sum() > 0
    assert not hasattr(obj.teacher_backbone, "mask_token")  # the teacher always sees whole crops
    groups = obj.parameter_groups(0.04)
    assert any(id(obj.mask_token) in {id(p) for p in g["params"]} for g in groups if g["weight_decay"] == 0)
    obj.after_step(0.5)
    assert obj.patch_center.abs().sum() > 0
    half = make_ibot(ibot_loss_weight=0.5).training_step(b, 0.5)
    torch.testing.assert_close(half.loss.detach(), half.metrics["cls_loss"] + 0.5 * half.metrics["patch_loss"])


def test_ibot_is_off_by_default_and_needs_a_vit():
    from ssl_studio.params import ConfigError

    plain = make_dino()
    assert dino_mod.DINOParams().ibot_loss_weight == 0
    assert not hasattr(plain, "mask_token") and "patch_center" not in plain.state_dict()
    with pytest.raises(ConfigError, match="ibot_loss_weight"):
        make_dino(ibot_loss_weight=1.0)  # a ConvNet has no patch tokens
    with pytest.raises(ConfigError, match="ibot_mask_ratio_min"):
        make_ibot(ibot_mask_ratio_min=0.6, ibot_mask_ratio_max=0.4)


def test_ibot_step_without_hidden_patches_is_dino():
    obj = make_ibot(ibot_mask_probability=0.0)
    out = obj.training_step(batch(), 0.5)
    assert float(out.metrics["patch_loss"]) == 0.0 and out.metrics["masked_patches"] == 0.0
    torch.testing.assert_close(out.loss.detach(), out.metrics["cls_loss"])
    out.loss.backward()
    obj.after_step(0.5)
    assert obj.patch_center.abs().sum() == 0  # no hidden patch, no centre update


def test_ibot_settings_are_checked_when_the_config_is_read():
    from ssl_studio.config import config_from_mapping
    from ssl_studio.params import ConfigError

    with pytest.raises(ConfigError, match="ibot_loss_weight.*'convnet'"):
        config_from_mapping({"objective": {"name": "dino", "ibot_loss_weight": 1.0}})
    with pytest.raises(ConfigError, match="ibot_mask_ratio_min"):
        config_from_mapping({"objective": {"name": "dino", "ibot_mask_ratio_min": 0.6}, "model": {"backbone": "vit"}})
    cfg = config_from_mapping({"objective": {"name": "dino", "ibot_loss_weight": 1.0}, "model": {"backbone": "vit"}})
    assert cfg.objective.params["ibot_loss_weight"] == 1.0


# ---------------------------------------------------------------- DINOv2's KoLeo regulariser


def test_koleo_loss_hand_value_and_gradient_spreads_the_closest_pair():
    # Three unit vectors: a and b 0.2 rad apart, c opposite a.  Nearest neighbours: a<->b, c->b.
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([torch.cos(torch.tensor(0.2)), torch.sin(torch.tensor(0.2))])
    c = torch.tensor([-1.0, 0.0])
    x = (3.0 * torch.stack([a, b, c])).requires_grad_()  # scaled: the loss normalises its input
    loss = L.koleo_loss(x)
    d_ab = (a - b).norm()
    d_c = (c - b).norm()  # b is a hair closer to c than a is
    torch.testing.assert_close(loss, -(2 * torch.log(d_ab) + torch.log(d_c)) / 3)
    loss.backward()
    # descending the loss moves a and b apart along the circle
    step = 0.01 * x.grad
    moved = F.normalize(x.detach() - step, dim=1)
    assert (moved[0] - moved[1]).norm() > d_ab


def test_koleo_loss_grows_without_bound_as_features_collapse():
    g = torch.Generator().manual_seed(0)
    spread = L.koleo_loss(torch.randn(32, 16, generator=g))
    centre = torch.randn(1, 16, generator=g)
    near = L.koleo_loss(centre + 1e-3 * torch.randn(32, 16, generator=g))
    nearer = L.koleo_loss(centre + 1e-5 * torch.randn(32, 16, generator=g))
    assert spread < near < nearer
    with pytest.raises(ValueError, match="at least 2"):
        L.koleo_loss(torch.randn(1, 4))
    with pytest.raises(ValueError, match="B×D"):
        L.koleo_loss(torch.randn(4))


@pytest.mark.parametrize("maker", [make_dino, make_ibot])
def test_dino_koleo_term_is_added_on_the_student_global_features(maker):
    b = batch()
    plain = maker().training_step(b, 0.5)
    assert "koleo_loss" not in plain.metrics  # off by default
    out = maker(koleo_loss_weight=0.1).training_step(b, 0.5)
    m = out.metrics
    torch.testing.assert_close(m["distillation_loss"], plain.loss.detach())  # the rest of the loss is unchanged
    torch.testing.assert_close(out.loss.detach(), m["distillation_loss"] + 0.1 * m["koleo_loss"])
    obj = maker(koleo_loss_weight=0.1)
    with torch.no_grad():
        feats = obj.backbone(torch.cat(b.views[:2])).chunk(2) if maker is make_dino else None
    if feats is not None:  # the sum over the two global crops (one pass, as BN sees them), each crop's batch on its own
        torch.testing.assert_close(m["koleo_loss"], L.koleo_loss(feats[0]) + L.koleo_loss(feats[1]))
    assert float(m["koleo_loss"]) > 0

