"""The contract every backbone keeps.

A backbone maps a batch of images ``B x C x S x S`` (float, normalised by the
data pipeline) to pooled features ``B x feature_dim``.  Every evaluation
(linear probe, k-NN, spectrum, embedding scatter) reads these features, and
every objective puts its own heads on top of them, so the contract is kept
deliberately small.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn


class Backbone(nn.Module):
    """Base class: ``feature_dim``, ``image_size``, ``in_channels`` and a cached FLOP count."""

    feature_dim: int
    image_size: int
    in_channels: int
    # A Transformer over patch tokens (the ViT): ``forward_tokens``, ``attention_maps``, ``grid_size`` and
    # ``depth`` exist, so the attention panels and diagnostics and the masked objectives can use it.
    has_attention: ClassVar[bool] = False

    def __init__(self, image_size: int, in_channels: int = 3) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.in_channels = int(in_channels)
        self._flops_per_image: int | None = None

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def accepts(self, size: int) -> bool:
        """Whether ``size`` x ``size`` inputs go through as they are (globally pooled ConvNets take any size)."""
        return True

    def flops_per_image(self) -> int:
        """Forward FLOPs (2 x MACs) for one image at the built size, counted once and cached.

        Counted with ``FlopCounterMode`` on a zero image of batch 1 on the
        module's current device; BatchNorm and other element-wise work is not
        counted (the usual convention).
        """
        if self._flops_per_image is None:
            from ssl_studio.models.flops import count_flops

            try:
                p = next(self.parameters())
                device, dtype = p.device, p.dtype
            except StopIteration:  # pragma: no cover - every backbone has parameters
                device, dtype = torch.device("cpu"), torch.float32
            x = torch.zeros(1, self.in_channels, self.image_size, self.image_size, device=device, dtype=dtype)
            self._flops_per_image = count_flops(self, x)
        return self._flops_per_image

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
