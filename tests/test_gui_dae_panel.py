"""The Reconstructions panel labels the denoising autoencoder's columns noisy / reconstructed / clean; MAE keeps its own."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")

from ssl_studio.engine.events import Visuals  # noqa: E402
from ssl_studio.gui.panels import reconstruction_panel  # noqa: E402
from ssl_studio.gui.panels.reconstruction_panel import ReconstructionPanel  # noqa: E402


@pytest.fixture
def headers(monkeypatch):
    """The column headers each drawn picture carries."""
    seen = []
    original = reconstruction_panel.array_to_pixmap

    def recording(arr, headers=(), header_height=18):
        seen.append([title for _, title in headers])
        return original(arr, headers, header_height)

    monkeypatch.setattr(reconstruction_panel, "array_to_pixmap", recording)
    return seen


def _dae_payload(noise="masking", strength=0.5):
    from ssl_studio.models import ConvNet
    from ssl_studio.objectives.base import ObjectiveContext
    from ssl_studio.objectives.dae import DAEParams, DenoisingAE

    torch.manual_seed(0)
    dae = DenoisingAE(ConvNet(image_size=16, width=8), DAEParams(noise=noise, strength=strength), ObjectiveContext(image_size=16))
    return dae.visuals(torch.randn(4, 3, 16, 16))["reconstruction"]


def _event(payload, step=5):
    arrays = {k: v for k, v in payload.items() if isinstance(v, np.ndarray)}
    return Visuals(step=step, kind="reconstruction", arrays=arrays, info={k: v for k, v in payload.items() if k not in arrays})


@pytest.mark.parametrize("noise, words", [("masking", "masking noise on 50 % of pixels"), ("gaussian", "Gaussian noise of 0.50")])
def test_the_denoising_ae_shows_noisy_reconstructed_clean_without_mask_controls(qtbot, headers, noise, words):
    panel = ReconstructionPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.handle_events([_event(_dae_payload(noise))])
    assert headers[-1][:3] == ["noisy", "reconstructed", "clean"] and "pasted" not in headers[-1]
    assert words in panel.status.text() and "reconstruction MSE" in panel.status.text() and "patches" not in panel.status.text()
    assert panel.ratio_slider.isHidden() and panel.new_mask.isHidden()
    assert "reconstruction MSE" in panel.plot.titleLabel.text


def test_mae_keeps_its_four_columns_and_its_mask_slider(qtbot, headers):
    panel = ReconstructionPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.handle_events([_event(_dae_payload())])
    rng = np.random.default_rng(0)
    pics = {k: rng.random((2, 3, 16, 16), dtype=np.float32) for k in ("original", "masked", "reconstruction", "pasted")}
    panel.handle_events([Visuals(step=6, kind="reconstruction", arrays=pics, info={"mask_ratio": 0.75, "seed": 0, "masked_mse": 0.1})])
    assert headers[-1][:4] == ["original", "masked", "reconstruction", "pasted"]
    assert not panel.ratio_slider.isHidden() and "of patches hidden" in panel.status.text()
