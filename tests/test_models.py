"""Backbones, heads and FLOP counting: shapes, gradients, the ViT hooks.

Small widths and batches keep the whole file to a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import pytest
import torch

from ssl_studio.config import ConfigError, ModelConfig, RunConfig, validate_config
from ssl_studio.models import Backbone, MLPHead, build_backbone
from ssl_studio.models.flops import count_flops, cpu_has_fast_bf16, measure_matmul_flops
from ssl_studio.models.vit import ViT, default_patch_size, sincos_pos_embed

BACKBONES = ("convnet", "resnet18", "vit")


def make(name: str, width: int = 16, image_size: int = 32) -> Backbone:
    torch.manual_seed(0)
    return build_backbone(ModelConfig(backbone=name, width=width), image_size)


@pytest.mark.parametrize("name", BACKBONES)
def test_shape_backward_and_flops(name: str) -> None:
    model = make(name)
    x = torch.randn(4, 3, 32, 32)
    y = model(x)
    assert y.shape == (4, model.feature_dim)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    flops = model.flops_per_image()
    assert flops == model.flops_per_image()  # cached
    # Plausible: more than the parameter count (every weight is used at least
    # once per image, 2 FLOPs per MAC) and below 10 GFLOPs at width 16.
    n_params = sum(p.numel() for p in model.parameters())
    assert 2 * n_params * 0.5 < flops < 10e9


def test_default_widths() -> None:
    assert make("vit", width=64).feature_dim == 192
    assert 256 <= make("convnet", width=64).feature_dim <= 512
    # ResNet-18 with the CIFAR stem at 32x32: 512 features, ~0.56 GMACs = ~1.1 GFLOPs, 11.2M params.
    resnet = make("resnet18", width=64)
    assert resnet.feature_dim == 512
    assert 1.0e9 < resnet.flops_per_image() < 1.25e9
    assert 11.0e6 < sum(p.numel() for p in resnet.parameters()) < 11.4e6


def test_count_flops_linear_exact() -> None:
    layer = torch.nn.Linear(10, 7, bias=False)
    assert count_flops(layer, torch.zeros(3, 10)) == 2 * 3 * 10 * 7


def test_vit_flops_include_attention() -> None:
    model = make("vit", width=16)
    n, d = 1 + model.num_patches, model.embed_dim
    attention = model.depth * 2 * (2 * n * n * d)  # QK^T and AV, 2 FLOPs per MAC
    linear = model.depth * 2 * n * 12 * d * d
    assert model.flops_per_image() >= attention + linear


@pytest.mark.parametrize("name", BACKBONES)
def test_bf16_autocast_and_channels_last(name: str) -> None:
    model = make(name).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, model.feature_dim)
    assert torch.isfinite(y.float()).all()
    y.float().mean().backward()
    model.eval()
    with torch.no_grad():
        a = model(x)
        b = model(x.contiguous())
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_other_image_sizes() -> None:
    for name in BACKBONES:
        model = make(name, width=8, image_size=64)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, model.feature_dim)
    assert default_patch_size(32) == 4
    assert default_patch_size(64) == 8
    assert default_patch_size(28) == 4
    assert default_patch_size(8) == 2
    with pytest.raises(ValueError, match="resolution"):
        default_patch_size(31)


# ---- ViT hooks -------------------------------------------------------------


@pytest.fixture(scope="module")
def vit() -> ViT:
    torch.manual_seed(0)
    model = ViT(image_size=32, width=16, depth=3)
    return model.eval()


def test_vit_sizes(vit: ViT) -> None:
    assert vit.patch_size == 4 and vit.grid_size == 8 and vit.num_patches == 64
    assert vit.embed_dim == 48 and vit.num_heads == 3 and vit.depth == 3
    assert ViT(32).embed_dim == 96 and make("vit", width=0).embed_dim == 96  # the lab default: half ViT-Tiny
    assert ViT(32, width=64).embed_dim == 192  # ViT-Tiny's width


def test_patchify_round_trip(vit: ViT) -> None:
    x = torch.randn(2, 3, 32, 32)
    patches = vit.patchify(x)
    assert patches.shape == (2, 64, 4 * 4 * 3)
    assert torch.equal(vit.unpatchify(patches), x)
    # Patch 1 is the second 4x4 block of the first row, pixels row-major, channel last.
    torch.testing.assert_close(patches[0, 1].reshape(4, 4, 3), x[0, :, 0:4, 4:8].permute(1, 2, 0))


def test_keep_sees_only_kept_patches(vit: ViT) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    keep = torch.stack([torch.randperm(64)[:16] for _ in range(2)])
    with torch.no_grad():
        tokens = vit.forward_tokens(x, keep)
        assert tokens.shape == (2, 17, vit.embed_dim)
        # Scramble every dropped patch: the output must not move.
        patches = vit.patchify(x)
        dropped = torch.ones(2, 64, dtype=torch.bool)
        dropped[torch.arange(2).unsqueeze(1), keep] = False
        noisy = patches.clone()
        noisy[dropped] = torch.randn_like(noisy[dropped]) * 10
        tokens2 = vit.forward_tokens(vit.unpatchify(noisy), keep)
        torch.testing.assert_close(tokens, tokens2)
        # And changing a kept patch does move it.
        kept = patches.clone()
        kept[0, keep[0, 0]] += 1.0
        assert not torch.allclose(tokens, vit.forward_tokens(vit.unpatchify(kept), keep))
        # Keeping all patches in order is the full forward.
        full = vit.forward_tokens(x)
        torch.testing.assert_close(vit.forward_tokens(x, torch.arange(64).expand(2, -1)), full)


def test_attention_maps(vit: ViT) -> None:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = vit.attention_maps(x)
        tokens, maps2 = vit.forward_with_attention(x)
        plain = vit.forward_tokens(x)
    assert len(maps) == vit.depth
    for m in maps:
        assert m.shape == (2, vit.num_heads, 65, 65)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, vit.num_heads, 65))
        assert (m >= 0).all()
    torch.testing.assert_close(tokens, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps[0], maps2[0])
    keep = torch.arange(10).expand(2, -1)
    assert vit.attention_maps(x, keep)[0].shape == (2, vit.num_heads, 11, 11)


def test_registers_join_the_sequence_and_leave_the_output() -> None:
    torch.manual_seed(0)
    vit = build_backbone(ModelConfig(backbone="vit", width=16, registers=4), 32).eval()
    assert vit.num_registers == 4 and "4 registers" in vit.describe()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, maps = vit.forward_with_attention(x)
        assert tokens.shape == (2, 65, vit.embed_dim)  # [CLS] then the 64 patches, as without registers
        assert vit.forward_tokens(x, torch.arange(10).expand(2, -1)).shape == (2, 11, vit.embed_dim)
        for m in maps:
            assert m.shape == (2, vit.num_heads, 65, 65)
            rows = m.sum(-1)  # what the [CLS] and patches gave each other; the rest went to the registers
            assert (rows < 1 - 1e-4).all() and (rows > 0).all()
        # the registers take part: other register values give another feature
        before = vit(x)
        vit.register_tokens.add_(1.0)
        assert not torch.allclose(before, vit(x))
    with pytest.raises(ConfigError) as err:
        validate_config(RunConfig(model=ModelConfig(backbone="convnet", registers=2)))
    assert err.value.field == "model.registers"


def test_vit_depth_is_a_setting_and_0_keeps_the_default() -> None:
    from ssl_studio.config import RunConfig, validate_config
    from ssl_studio.models import DEFAULT_DEPTH
    from ssl_studio.params import ConfigError

    default = build_backbone(ModelConfig(backbone="vit", width=8), 32)
    assert len(default.blocks) == DEFAULT_DEPTH == 6 and f"depth {DEFAULT_DEPTH}," in default.describe()
    shallow = build_backbone(ModelConfig(backbone="vit", width=8, depth=2), 32).eval()
    assert len(shallow.blocks) == 2 and "depth 2," in shallow.describe()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert len(shallow.attention_maps(x)) == 2 and shallow(x).shape == (3, shallow.embed_dim)
    with pytest.raises(ConfigError) as err:
        validate_config(RunConfig(model=ModelConfig(backbone="convnet", depth=2)))
    assert err.value.field == "model.depth" and "only applies to the ViT" in str(err.value)


def test_sincos_pos_embed() -> None:
    pe = sincos_pos_embed(16, 4)
    assert pe.shape == (16, 16)
    assert len({tuple(row.tolist()) for row in pe}) == 16  # every position distinct
    with pytest.raises(ValueError):
        sincos_pos_embed(10, 4)


def test_coarse_pos_embed_spans_the_full_grid() -> None:
    """A 4x4 table spread over an 8x8 extent sits on the fine grid's corners and stays distinct."""
    fine, coarse = sincos_pos_embed(16, 8), sincos_pos_embed(16, 4, extent=8)
    assert coarse.shape == (16, 16)
    torch.testing.assert_close(coarse[0], fine[0])  # top-left
    torch.testing.assert_close(coarse[15], fine[63])  # bottom-right
    assert not torch.allclose(coarse[5], fine[9])  # inner points are between fine positions, not on them
    assert len({tuple(row.tolist()) for row in coarse}) == 16
    torch.testing.assert_close(sincos_pos_embed(16, 8, extent=8), fine)


def test_vit_takes_local_crops_at_their_own_size(vit: ViT) -> None:
    """DINO/SwAV local crops enter with a quarter of the tokens; sizes off the patch grid are refused."""
    assert vit.accepts(16) and vit.accepts(32) and not vit.accepts(18) and not vit.accepts(2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert vit.forward_tokens(x).shape == (2, 1 + 16, vit.embed_dim)
        assert vit(x).shape == (2, vit.embed_dim)
    with pytest.raises(ValueError, match="multiple of 4"):
        vit(torch.randn(1, 3, 18, 18))


# ---- heads -----------------------------------------------------------------


def test_mlp_head_shapes() -> None:
    x = torch.randn(8, 32)
    head = MLPHead(32, 64, 16)
    assert head(x).shape == (8, 16)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == 2
    deep = MLPHead(32, 64, 16, num_layers=3, last_batch_norm=True)
    out = deep(x)
    assert out.shape == (8, 16)
    last = deep.net[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine
    torch.testing.assert_close(out.mean(0), torch.zeros(16), atol=1e-5, rtol=0)  # train-mode BN centres
    plain = MLPHead(32, 64, 16, num_layers=1, batch_norm=False, last_bias=False)
    assert plain(x).shape == (8, 16)
    assert plain.net[0].bias is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(x).shape == (8, 16)
    with pytest.raises(ValueError):
        MLPHead(4, 4, 4, num_layers=0)


def test_build_backbone_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="model.backbone"):
        build_backbone(ModelConfig(backbone="alexnet"), 32)


def test_machine_helpers() -> None:
    assert isinstance(cpu_has_fast_bf16(), bool)
    assert measure_matmul_flops(torch.float32, seconds=0.05, n=256) > 0


def test_bench_training_smoke() -> None:
    from ssl_studio.benchmarks.training import bench_training, format_table

    rows = bench_training(backbones=("convnet",), modes=("channels_last",), batch_size=4, seconds=0.01, width=8)
    assert len(rows) == 1
    row = rows[0]
    assert row["backbone"] == "convnet" and row["mode"] == "channels_last" and row["batch_size"] == 4
    assert row["images_per_s"] > 0 and row["matmul_flops_per_s"] > 0 and row["ratio"] > 0
    assert "convnet" in format_table(rows)


def test_bf16_cpu_attention_is_explicit_and_matches_the_fused_kernel() -> None:
    """Under bf16 autocast on a CPU the ViT takes explicit attention (faster there); it must give what SDPA gives."""
    from ssl_studio.models.vit import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(3, 17, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, probs = attn(x)
        qkv = attn.qkv(x).reshape(3, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
        fused = torch.nn.functional.scaled_dot_product_attention(*qkv.unbind(0)).transpose(1, 2).reshape(3, 17, 32)
        fused = attn.proj(fused)
    assert probs is None and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), fused.float(), rtol=0.05, atol=0.02)
    out.float().square().mean().backward()
    assert attn.qkv.weight.grad is not None and attn.qkv.weight.grad.abs().sum() > 0


def test_vit_patch_size_is_a_setting_checked_against_the_resolution() -> None:
    vit = build_backbone(ModelConfig(backbone="vit", width=8, patch_size=8), 32)
    assert vit.patch_size == 8 and vit.grid_size == 4 and "8-px patches (4x4)" in vit.describe()
    assert build_backbone(ModelConfig(backbone="vit", width=8), 32).patch_size == default_patch_size(32) == 4
    for model, resolution, words in ((ModelConfig(backbone="convnet", patch_size=8), 32, "only applies to the ViT"),
                                     (ModelConfig(backbone="vit", patch_size=5), 32, "data.resolution (32) into a grid"),
                                     (ModelConfig(backbone="vit", patch_size=32), 32, "data.resolution (32) into a grid")):
        cfg = RunConfig(model=model)
        cfg.data.resolution = resolution
        with pytest.raises(ConfigError) as err:
            validate_config(cfg)
        assert err.value.field == "model.patch_size" and words in str(err.value)
