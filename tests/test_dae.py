"""The denoising autoencoder: its corruptions, its loss, its broken twin, and a tiny run through the CLI."""

import json

import torch

from ssl_studio.cli import main
from ssl_studio.models import ConvNet
from ssl_studio.models.vit import ViT
from ssl_studio.objectives.base import Batch, ObjectiveContext
from ssl_studio.objectives.dae import DAEParams, DenoisingAE, corrupt, spatial_code_shape


def test_masking_noise_hides_the_asked_share_of_pixel_locations_in_every_channel():
    x = torch.randn(8, 3, 32, 32) + 5.0  # nothing is zero before corruption
    out = corrupt(x, "masking", 0.3, torch.Generator().manual_seed(0))
    hidden = out == 0
    assert abs(hidden.float().mean().item() - 0.3) < 0.02
    assert (hidden.all(1) | ~hidden.any(1)).all()  # a location is hidden in all channels or none
    assert torch.equal(out[~hidden], x[~hidden])


def test_gaussian_noise_has_the_asked_spread_and_no_noise_is_the_identity():
    x = torch.zeros(4, 3, 32, 32)
    out = corrupt(x, "gaussian", 0.5, torch.Generator().manual_seed(0))
    assert abs(out.std().item() - 0.5) < 0.02
    assert corrupt(x, "gaussian", 0.0) is x


def test_the_no_noise_twin_sees_its_clean_input_and_visuals_fit_the_reconstruction_panel():
    ctx = ObjectiveContext(image_size=16, ablations=frozenset({"no_noise"}))
    dae = DenoisingAE(ConvNet(image_size=16, width=8), DAEParams(), ctx)
    x = torch.randn(4, 3, 16, 16)
    out = dae.training_step(Batch(views=[x], images=x, indices=torch.arange(4)), 0.0)
    assert out.metrics["noisy_mse"].item() == 0.0 and torch.isfinite(out.loss)
    payload = dae.visuals(x)["reconstruction"]
    assert {"original", "masked", "reconstruction", "pasted"} <= set(payload) and payload["original"].shape == (4, 3, 16, 16)


def test_the_denoising_ae_trains_through_the_cli(tmp_path):
    argv = ["train", "--objective", "denoising-ae", "--data", "shapes", "--steps", "2", "--batch-size", "16", "--out", str(tmp_path),
            "--set", "data.num_images=128", "--set", "model.width=16", "--set", "probe.size=32", "--precision", "float32", "--quiet"]
    assert main(argv) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "visuals" and e.get("kind") == "reconstruction" for e in events) or any(
        p.name.startswith("visuals") or "reconstruction" in p.name for p in (run / "snapshots").iterdir())


def test_the_spatial_decoder_reads_the_feature_map_or_the_patch_tokens_and_rebuilds_the_image_size():
    ctx = ObjectiveContext(image_size=16)
    x = torch.randn(2, 3, 16, 16)
    conv, vit = ConvNet(image_size=16, width=8), ViT(image_size=16, width=8, depth=1)
    assert spatial_code_shape(conv, 3, 16) == (32, 1) and spatial_code_shape(vit, 3, 16) == (24, 8)  # ViT: 8x8 patch tokens
    for backbone in (conv, vit):
        spatial = DenoisingAE(backbone, DAEParams(decoder="spatial"), ctx)
        pooled = DenoisingAE(backbone, DAEParams(decoder="pooled"), ctx)
        assert spatial.spatial and not pooled.spatial
        assert spatial.reconstruct_from(x).shape == pooled.reconstruct_from(x).shape == x.shape


def test_reconstruction_errors_tell_a_copier_from_a_denoiser():
    dae = DenoisingAE(ConvNet(image_size=16, width=8), DAEParams(noise="masking", strength=0.5), ObjectiveContext(image_size=16))
    x = torch.randn(8, 3, 16, 16)
    dae.reconstruct_from = lambda t: t  # a perfect copier: zero error on clean inputs, and it keeps the noise
    errors = dae.reconstruction_errors(x, torch.Generator().manual_seed(0))
    assert errors["from_clean"] == 0.0 and abs(errors["from_noisy"] - errors["noisy_input"]) < 1e-6 and errors["noisy_input"] > 0.3
