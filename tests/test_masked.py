"""Masked and predictive objectives (MAE, I-JEPA), their mask samplers and losses, and the ViT attention helpers."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_studio.config import AugmentConfig, ModelConfig, config_from_mapping, load_config
from ssl_studio.engine import attention
from ssl_studio.engine.build import build_objective, effective_augment
from ssl_studio.models import build_backbone
from ssl_studio.models.vit import ViT
from ssl_studio.objectives import Batch, ObjectiveContext, all_objectives
from ssl_studio.objectives.losses import ijepa_loss, mae_loss, patch_normalise
from ssl_studio.objectives.masking import MultiBlockSampler, block_candidates, block_shape, num_masked, random_patch_mask
from ssl_studio.presets import presets_dir


pytestmark = pytest.mark.usefixtures("one_thread")


def make(name, width=16, ablations=(), **params):
    cls = all_objectives()[name]
    torch.manual_seed(0)
    bb = build_backbone(ModelConfig(backbone="vit", width=width), 32)
    ctx = ObjectiveContext(image_size=32, ablations=frozenset(ablations), batch_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return cls(bb, cls.parse_params(params), ctx)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return ViT(image_size=32, width=16, depth=2).eval()


# ---- patches and masking ------------------------------------------------------------


def test_patchify_unpatchify_round_trip(vit):
    x = torch.randn(2, 3, 32, 32)
    patches = vit.patchify(x)
    assert patches.shape == (2, 64, 4 * 4 * 3)
    torch.testing.assert_close(vit.unpatchify(patches), x, rtol=0, atol=0)
    # patch 9 is row 1, column 1: pixels 4..7 x 4..7, (row, col, channel) order
    torch.testing.assert_close(patches[0, 9], x[0, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_random_mask_keeps_exactly_the_requested_ratio(ratio):
    g = torch.Generator().manual_seed(1)
    m = random_patch_mask(8, 64, ratio, generator=g)
    n_mask = num_masked(64, ratio)
    assert n_mask == round(ratio * 64)
    assert m.mask.sum(1).tolist() == [n_mask] * 8
    assert m.keep.shape == (8, 64 - n_mask) and m.masked.shape == (8, n_mask)
    for b in range(8):
        both = torch.cat([m.keep[b], m.masked[b]])
        assert sorted(both.tolist()) == list(range(64))  # a partition of the patches
        assert not m.mask[b, m.keep[b]].any() and m.mask[b, m.masked[b]].all()
    # restore puts [visible, masked] tokens back at their positions
    tokens = torch.cat([m.keep, m.masked], 1)
    torch.testing.assert_close(torch.gather(tokens, 1, m.restore), torch.arange(64).expand(8, -1))
    # masks differ between samples, and a seed repeats them
    assert len({tuple(r.tolist()) for r in m.mask}) > 1 or ratio == 0.0
    again = random_patch_mask(8, 64, ratio, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.mask, m.mask)


def test_encoder_sees_only_visible_patches(vit):
    x = torch.randn(3, 3, 32, 32)
    m = random_patch_mask(3, vit.num_patches, 0.75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = vit.forward_tokens(x, m.keep)
        assert tokens.shape == (3, 1 + 16, vit.embed_dim)
        y = vit.patchify(x)
        y[m.mask] = torch.randn_like(y[m.mask]) * 5  # scramble every hidden patch
        again = vit.forward_tokens(vit.unpatchify(y), m.keep)
    torch.testing.assert_close(tokens, again)


def test_mae_prediction_ignores_hidden_pixels():
    mae = make("mae", decoder_dim=32, decoder_depth=1).eval()
    x = torch.randn(2, 3, 32, 32)
    m = random_patch_mask(2, 64, 0.75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = mae.forward_masked(x, m)
        y = mae.backbone.patchify(x)
        y[m.mask] = 3.0
        pred2 = mae.forward_masked(mae.backbone.unpatchify(y), m)
    assert pred.shape == (2, 64, 48)
    torch.testing.assert_close(pred, pred2)


def test_mae_reconstruct_honours_ratio_and_seed():
    mae = make("mae", decoder_dim=32, decoder_depth=1)
    x = torch.randn(4, 3, 32, 32)
    out = mae.reconstruct(x, mask_ratio=0.5, seed=3)
    assert out["mask"].shape == (4, 64) and out["mask"].sum(1).tolist() == [32] * 4
    assert out["mask_ratio"] == 0.5 and out["seed"] == 3
    for k in ("original", "masked", "reconstruction", "pasted"):
        assert out[k].shape == (4, 3, 32, 32) and out[k].min() >= 0 and out[k].max() <= 1
    same = mae.reconstruct(x, mask_ratio=0.5, seed=3)
    other = mae.reconstruct(x, mask_ratio=0.5, seed=4)
    assert (same["mask"] == out["mask"]).all() and (other["mask"] != out["mask"]).any()
    assert mae.reconstruct(x, mask_ratio=0.9, seed=3)["mask"].sum(1).tolist() == [58] * 4
    # visible patches pasted back are the original pixels; hidden ones in the masked input are grey
    vis = torch.from_numpy(~out["mask"]).reshape(4, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand(-1, 3, -1, -1)
    torch.testing.assert_close(torch.from_numpy(out["pasted"])[vis], torch.from_numpy(out["original"])[vis])
    torch.testing.assert_close(torch.from_numpy(out["masked"])[~vis], torch.full_like(torch.from_numpy(out["masked"])[~vis], 0.5))
    assert math.isfinite(out["masked_mse"])
    assert set(mae.visuals(x)) == {"reconstruction"}


# ---- I-JEPA blocks ------------------------------------------------------------------


def test_block_shapes_lie_in_the_published_ranges():
    assert set(block_candidates(8, (0.15, 0.2), (0.75, 1.5))) == {(3, 4), (4, 3)}
    for us in (0.0, 0.3, 0.99):
        for ua in (0.0, 0.5, 0.99):
            h, w = block_shape(8, (0.15, 0.2), (0.75, 1.5), us, ua)
            assert 0.15 <= h * w / 64 <= 0.2 and 0.75 <= h / w <= 1.5
            assert block_shape(8, (0.85, 1.0), (1.0, 1.0), us, ua) == (8, 8)
    # a 14x14 grid (the paper's 224 px / 16) has many candidates, all in range
    for h, w in block_candidates(14, (0.15, 0.2), (0.75, 1.5)):
        assert 0.15 <= h * w / 196 <= 0.2 and 0.75 <= h / w <= 1.5


@pytest.mark.parametrize("grid", [8, 14])
def test_multiblock_masks_never_overlap_and_stay_rectangular(grid):
    sampler = MultiBlockSampler(grid)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        m = sampler(16, generator=g)
        n = grid * grid
        assert m.context_mask.shape == (16, n) and m.target_masks.shape == (16, 4, n)
        assert not (m.context_mask.unsqueeze(1) & m.target_masks).any()  # context never sees a target patch
        assert m.context.shape[0] == 16 and (m.context_mask.sum(1) == m.context.shape[1]).all()
        assert m.context.shape[1] >= sampler.min_keep
        th, tw = m.block_shapes["target"]
        assert 0.15 <= th * tw / n <= 0.2 and 0.75 <= th / tw <= 1.5
        assert m.targets.shape == (16, 4, th * tw)
        for b in range(16):
            assert torch.equal(m.context_mask[b].nonzero().flatten(), m.context[b])
            for t in range(4):
                cells = m.target_masks[b, t].reshape(grid, grid)
                rows, cols = cells.any(1).nonzero().flatten(), cells.any(0).nonzero().flatten()
                assert len(rows) == th and len(cols) == tw and cells.sum() == th * tw  # one solid th x tw block
                assert torch.equal(m.target_masks[b, t].nonzero().flatten(), m.targets[b, t])


# ---- losses -------------------------------------------------------------------------


def test_mae_loss_counts_masked_patches_only():
    pred = torch.zeros(1, 4, 3)
    target = torch.tensor([[[1.0, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]]])
    mask = torch.tensor([[0, 1, 0, 1]])
    assert mae_loss(pred, target, mask).item() == pytest.approx((4 + 16) / 2)
    t = torch.tensor([[[1.0, 2, 3]]])
    normed, mean, std = patch_normalise(t)
    assert normed[0, 0].tolist() == pytest.approx([-1 / math.sqrt(1 + 1e-6), 0, 1 / math.sqrt(1 + 1e-6)], rel=1e-5)
    torch.testing.assert_close(normed * std + mean, t)
    assert mae_loss(normed, t, torch.ones(1, 1), norm_pix=True).item() == pytest.approx(0.0, abs=1e-10)


def test_ijepa_loss_values():
    p, t = torch.zeros(2, 3), torch.tensor([[0.5, 2.0, 0.0], [0.0, 0.0, 0.0]])
    assert ijepa_loss(p, t, "mse").item() == pytest.approx((0.25 + 4) / 6)
    assert ijepa_loss(p, t, "smooth_l1").item() == pytest.approx((0.5 * 0.25 + 1.5) / 6)
    with pytest.raises(ValueError):
        ijepa_loss(p, t, "l3")


# ---- attention ----------------------------------------------------------------------


def test_cls_attention_sums_to_one(vit):
    a = attention.cls_attention(vit, torch.randn(2, 3, 32, 32))
    assert a.shape == (2, vit.num_heads, 64)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, vit.num_heads))
    assert (a >= 0).all()


def test_attention_mask_keeps_the_mass_with_fewest_patches():
    attn = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    assert attention.attention_mask(attn, 0.6).tolist() == [[False, True, False, True, False]]  # 0.4 + 0.3 >= 0.6
    assert attention.attention_mask(attn, 0.75).tolist() == [[False, True, False, True, True]]
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(20, 64, generator=g) ** 4
    maps = maps / maps.sum(-1, keepdim=True)
    mask = attention.attention_mask(maps, 0.6)
    kept = (maps * mask).sum(-1)
    assert (kept >= 0.6 - 1e-6).all()
    for row, m in zip(maps, mask):  # dropping its weakest kept patch leaves less than 60 %
        k = int(m.sum())
        top = torch.sort(row, descending=True).values
        assert top[:k].sum() >= 0.6 - 1e-6 and top[: k - 1].sum() < 0.6
    grid = attention.attention_mask(maps.reshape(20, 8, 8), 0.6, dims=2)
    assert torch.equal(grid.reshape(20, 64), mask)


def test_mask_iou_hand_built():
    patches = torch.zeros(2, 4, 4, dtype=torch.bool)
    patches[0, :2, :2] = True  # 4 patches top-left
    patches[1, 0, 0] = True
    pixels = torch.zeros(2, 16, 16, dtype=torch.bool)  # 4 px patches
    pixels[0, :8, 2:8] = True  # columns 2..7: patch column 0 is half object (counts), column 1 whole
    pixels[0, :4, 8:12] = True  # one more patch, outside the attention mask
    pixels[1, 8:, 8:] = True
    grid = attention.object_masks_on_grid(pixels, 4)
    assert grid[0].sum() == 5 and grid[0, :2, :2].all()
    iou = attention.mask_iou(patches, pixels)
    assert iou[0].item() == pytest.approx(4 / 5) and iou[1].item() == 0.0
    empty = attention.mask_iou(torch.zeros(1, 4, 4, dtype=torch.bool), torch.zeros(1, 16, 16, dtype=torch.bool))
    assert torch.isnan(empty).all()


def test_attention_by_region_hand_built():
    """A 2x2 grid of 4-px patches: one patch wholly object, one crossed by its outline, two background."""
    pixels = torch.zeros(1, 8, 8, dtype=torch.bool)
    pixels[0, :4, :4] = True  # patch (0, 0) inside
    pixels[0, :4, 4:5] = True  # one column of patch (0, 1): the outline crosses it
    attn = torch.tensor([[[2.0, 1.0], [1.0, 0.0]]])  # normalised to 0.5 / 0.25 / 0.25 / 0
    regions = attention.attention_by_region(attn, pixels)
    assert regions["inside"].item() == pytest.approx(0.5)
    assert regions["outline"].item() == pytest.approx(0.25)
    assert regions["background"].item() == pytest.approx(0.25)
    assert [regions[k + "_share"].item() for k in attention.REGIONS] == pytest.approx([0.25, 0.25, 0.5])
    flat = attention.attention_by_region(attn.reshape(1, 4), pixels)  # B x N maps give the same
    assert all(torch.allclose(flat[k], regions[k]) for k in regions)


def test_object_background_auc_hand_built():
    """A 2x2 grid of 4-px patches: patch (0, 0) object, patch (0, 1) crossed by the outline (left out), two background."""
    pixels = torch.zeros(3, 8, 8, dtype=torch.bool)
    pixels[:, :4, :4] = True
    pixels[:, :4, 4:5] = True
    attn = torch.tensor([[[4.0, 9.0], [1.0, 2.0]],   # object above both background patches (the outline patch does not count)
                         [[1.0, 0.0], [3.0, 1.0]],   # object below one background patch, tied with the other: (0 + 0.5) / 2
                         [[1.0, 1.0], [1.0, 1.0]]])  # uniform: no separation
    auc = attention.object_background_auc(attn, pixels)
    assert auc.tolist() == pytest.approx([1.0, 0.25, 0.5])
    flipped = attention.object_background_auc(-attn[:1], pixels[:1])  # the same map with its ranking reversed
    assert flipped.item() == pytest.approx(0.0)
    no_ground = attention.object_background_auc(attn[:1], torch.ones(1, 8, 8, dtype=torch.bool))  # nothing to separate from
    assert torch.isnan(no_ground).all()


def test_object_background_auc_counts_every_object_background_pair():
    """The sorted computation equals the definition over all (object, background) patch pairs, ties half."""
    g = torch.Generator().manual_seed(0)
    attn = torch.randint(0, 5, (40, 8, 8), generator=g).float()  # few values: many ties
    pixels = torch.zeros(40, 32, 32, dtype=torch.bool)
    for i in range(40):
        x, y = torch.randint(4, 28, (2,), generator=g).tolist()
        pixels[i, max(0, y - 7):y + 7, max(0, x - 7):x + 7] = True
    share = attention.object_share_on_grid(pixels, 8).reshape(40, -1)
    flat = attn.reshape(40, -1)
    expected = []
    for a, s in zip(flat, share):
        obj, ground = a[s >= 0.5], a[s <= 1e-6]
        expected.append(((obj[:, None] > ground[None]).float() + 0.5 * (obj[:, None] == ground[None]).float()).mean().item())
    assert attention.object_background_auc(attn, pixels).tolist() == pytest.approx(expected)


class _FakeViT:
    """A backbone whose attention maps are given, to check the distance arithmetic."""

    grid_size, patch_size, depth = 2, 4, 2

    def __init__(self, maps):
        self.maps = maps

    def attention_maps(self, images):
        return self.maps


def test_mean_attention_distance_hand_built():
    n = 4  # a 2x2 grid of 4-px patches, plus [CLS]
    local = torch.eye(1 + n).reshape(1, 1, 5, 5)  # every query attends to itself: distance 0
    uniform = torch.full((1, 1, 5, 5), 1 / 5)
    fake = _FakeViT([local, uniform])
    d = attention.mean_attention_distance(fake, None)
    # uniform over the 4 patches: from any corner, distances 0, 4, 4, 4*sqrt(2)
    assert d[0] == pytest.approx(0.0) and d[1] == pytest.approx((0 + 4 + 4 + 4 * math.sqrt(2)) / 4)
    assert attention.mean_attention_distance(fake, None, per_head=True)[1] == [pytest.approx(d[1])]


def test_attention_visuals_payload(vit):
    x = torch.randn(3, 3, 32, 32)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    out = attention.attention_visuals(vit, x, masks, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert out["heads"].shape == (3, vit.num_heads, 8, 8) and out["mean"].shape == (3, 8, 8)
    assert out["mask"].dtype == bool and out["object"].sum() == 3 * 16 and out["image"].shape == (3, 3, 32, 32)
    assert 0.0 <= out["iou"] <= 1.0
    assert out["iou"] == pytest.approx(attention.attention_overlap(vit, x, masks)["iou"])
    assert attention.attention_visuals(torch.nn.Linear(2, 2), x) is None


# ---- objectives ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_batch():
    from ssl_studio.config import DataConfig
    from ssl_studio.data import load_imageset
    from ssl_studio.data.views import ViewMaker

    data = load_imageset(DataConfig(source="shapes", num_images=64), seed=0)
    images = data.images[:16]
    vm = ViewMaker(AugmentConfig(), data.resolution, data.mean, data.std)
    return images, vm.plain(images), vm(images, 2, 2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,params", [("mae", {"decoder_dim": 32, "decoder_depth": 1}), ("ijepa", {"predictor_depth": 1}),
                                         ("dino", {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32, "local_crops": 0})])
def test_objective_trains_on_a_fixed_batch(name, params, shapes_batch):
    images, plain, views = shapes_batch
    obj = make(name, **params)
    n = obj.num_global_views + obj.num_local_views
    batch = Batch(views=[plain] * obj.num_global_views if n == 1 else views[:n], images=images, indices=torch.arange(16), plain=plain)
    opt = torch.optim.AdamW([p for p in obj.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    torch.manual_seed(0)
    for step in range(10):
        obj.train()
        out = obj.training_step(batch, step / 10)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        obj.after_step(step / 10)
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses)
    if name != "dino":  # DINO's loss is a moving target (teacher temperature warm-up, centre): finite is the check
        assert sum(losses[-3:]) / 3 < losses[0], losses
    feats = obj.eval().embed(plain)
    assert feats.shape == (16, obj.backbone.embed_dim) and torch.isfinite(feats).all()


def test_ijepa_visuals_and_target_encoder():
    ij = make("ijepa", predictor_depth=1)
    assert ij.attention_backbone is ij.target_encoder and not any(p.requires_grad for p in ij.target_encoder.parameters())
    out = ij.visuals(torch.randn(4, 3, 32, 32))["ijepa"]
    assert out["context_mask"].shape == (4, 64) and out["target_masks"].shape == (4, 4, 64)
    assert not (out["context_mask"][:, None] & out["target_masks"]).any()
    assert out["cosine"].shape == (4, 4) and -1 <= out["mean_cosine"] <= 1
    assert ij.predictor.dim == 24  # half the 48-wide encoder
    no_ema = make("ijepa", ablations=("no_ema",), predictor_depth=1)
    assert no_ema.target_encoder is None and no_ema.attention_backbone is no_ema.backbone


def test_masked_objectives_need_a_vit_and_keep_paper_augmentations(tmp_path):
    from ssl_studio.params import ConfigError

    for name in ("mae", "ijepa"):
        cls = all_objectives()[name]
        assert cls.backbones == ("vit",) and cls.num_global_views == 1
        cfg = config_from_mapping({"objective": {"name": name}, "model": {"backbone": "vit"}})
        aug = effective_augment(cfg)
        assert aug.jitter_p == 0.0 and aug.grayscale_p == 0.0
        cfg = config_from_mapping({"objective": {"name": name}, "augment": {"jitter_p": 0.5}, "model": {"backbone": "vit"}})
        assert effective_augment(cfg).jitter_p == 0.5  # the user's choice wins
    # a backbone the person chose that does not fit is refused (one chosen by nobody is the ViT: test_objective_contract)
    cfg = config_from_mapping({"objective": {"name": "mae"}, "model": {"backbone": "convnet"}, "data": {"num_images": 64}})
    from ssl_studio.data import load_imageset

    data = load_imageset(cfg.data, seed=0)
    with pytest.raises(ConfigError, match="model.backbone"):
        build_objective(cfg, data)
    cfg.model.backbone = "vit"
    obj = build_objective(cfg, data)
    assert obj.context.mean == tuple(data.mean) and obj.context.std == tuple(data.std)


def test_presets_load():
    for name, objective in (("mae", "mae"), ("ijepa", "ijepa"), ("dino-vit", "dino"), ("ibot-vit", "dino")):
        cfg = load_config(presets_dir() / f"{name}.toml")
        assert cfg.objective.name == objective and cfg.model.backbone == "vit"
    ibot = load_config(presets_dir() / "ibot-vit.toml")
    assert ibot.objective.params["ibot_loss_weight"] == 1.0
    assert effective_augment(ibot).crop_scale_min == 0.4  # DINO's global crops, not the shapes data's 0.85


def test_trainer_emits_attention_for_vit_objectives(tmp_path):
    from ssl_studio.engine.events import Probe, Visuals
    from ssl_studio.engine.trainer import Trainer

    cfg = config_from_mapping({"objective": {"name": "mae", "decoder_dim": 32, "decoder_depth": 1},
                               "data": {"source": "shapes", "num_images": 128}, "model": {"backbone": "vit", "width": 16},
                               "batch_size": 16, "budget": {"steps": 2}, "probe": {"every": 0, "size": 32, "visuals_every": 0},
                               "precision": "float32", "out": str(tmp_path)})
    events = []
    result = Trainer(cfg, callback=events.append).run()
    assert result.status == "completed", result.message
    probes = [e for e in events if isinstance(e, Probe)]
    assert probes[0].step == 0 and all(p.attention_iou is not None and 0 <= p.attention_iou <= 1 for p in probes)
    assert all(p.attention_auc is not None and 0 <= p.attention_auc <= 1 for p in probes)
    kinds = {e.kind: e for e in events if isinstance(e, Visuals)}
    assert set(kinds) == {"reconstruction", "attention"}
    att = kinds["attention"]
    b = att.arrays["heads"].shape[0]
    assert 1 <= b <= 16 and att.arrays["heads"].shape[1:] == (3, 8, 8) and att.arrays["mask"].shape == (b, 8, 8)
    assert att.info["iou"] is not None
    assert (result.run_dir / "snapshots" / f"visuals-attention-{result.step:07d}.npz").exists()


def test_ijepa_block_ranges_are_checked_at_config_time():
    from ssl_studio.params import ConfigError

    with pytest.raises(ConfigError, match="objective.target_scale_min"):
        config_from_mapping({"objective": {"name": "ijepa", "target_scale_min": 0.3, "target_scale_max": 0.2}, "model": {"backbone": "vit"}})


def test_a_panel_request_is_served_between_steps_with_the_asked_ratio(tmp_path):
    """The reconstruction panel's slider reaches the running model through RunControl, not a queued slot."""
    from ssl_studio.config import config_from_mapping
    from ssl_studio.engine.control import RunControl
    from ssl_studio.engine.events import Step, Visuals
    from ssl_studio.engine.trainer import Trainer

    control, seen = RunControl(), []

    def callback(event):
        if isinstance(event, Step) and event.step == 2:
            control.request_visuals({"kind": "reconstruction", "mask_ratio": 0.5, "seed": 3})
        if isinstance(event, Visuals) and event.kind == "reconstruction":
            seen.append(event)

    cfg = config_from_mapping({"objective": {"name": "mae"}, "model": {"backbone": "vit", "width": 16}, "data": {"num_images": 128},
                               "batch_size": 16, "budget": {"steps": 4}, "probe": {"every": 0, "size": 32, "visuals_every": 0},
                               "precision": "float32", "out": str(tmp_path)})
    assert Trainer(cfg, callback=callback, control=control).run().status == "completed"
    requested = [e for e in seen if e.info.get("requested")]
    assert len(requested) == 1 and requested[0].step == 2
    assert requested[0].info["mask_ratio"] == pytest.approx(0.5, abs=0.05)
    assert requested[0].arrays["mask"].mean() == pytest.approx(0.5, abs=0.05)


def test_visuals_start_at_initialisation_and_follow_their_cadence(tmp_path):
    """A ViT run's attention (and MAE's reconstructions) arrive at step 0, before any training, then every
    ``probe.visuals_every`` steps and at the end (only at the end with 0): the panels show at once, with the
    network at initialisation."""
    from ssl_studio.engine.events import Step, Visuals
    from ssl_studio.engine.trainer import Trainer

    def run(visuals_every, name):
        events = []
        cfg = config_from_mapping({"objective": {"name": "mae", "decoder_dim": 32, "decoder_depth": 1},
                                   "data": {"source": "shapes", "num_images": 128}, "model": {"backbone": "vit", "width": 16},
                                   "batch_size": 16, "budget": {"steps": 5}, "name": name,
                                   "probe": {"every": 0, "size": 32, "visuals_every": visuals_every},
                                   "precision": "float32", "out": str(tmp_path)})
        result = Trainer(cfg, callback=events.append).run()
        assert result.status == "completed", result.message
        return result, events

    result, events = run(2, "every2")
    attention = [e for e in events if isinstance(e, Visuals) and e.kind == "attention"]
    assert [e.step for e in attention] == [0, 2, 4, 5]
    first_step = next(i for i, e in enumerate(events) if isinstance(e, Step))
    assert events.index(attention[0]) < first_step  # drawn before the first update
    assert {e.step for e in events if isinstance(e, Visuals) and e.kind == "reconstruction"} == {0, 2, 4, 5}
    assert (result.run_dir / "snapshots" / "visuals-attention-0000000.npz").exists()
    _, quiet = run(0, "at-the-end")
    assert {e.step for e in quiet if isinstance(e, Visuals)} == {5}
