"""Backbones and heads (no Qt).

``build_backbone(cfg, image_size)`` is the one place a backbone is made from a
``ModelConfig``; every backbone maps ``B x C x S x S`` images to pooled
features ``B x feature_dim`` and can report its forward FLOPs per image.

- ``convnet``: the CPU default, a small VGG-style ConvNet (see ``convnet.py``
  for why that shape and the throughput measurements behind it).
- ``resnet18``: ResNet-18 with the CIFAR stem (He et al. 2016, sec. 4.2).
- ``vit``: a small ViT (Dosovitskiy et al. 2021) with MAE/I-JEPA/DINO hooks.
"""

from __future__ import annotations

from ssl_studio.models.base import Backbone
from ssl_studio.models.convnet import ConvNet
from ssl_studio.models.heads import MLPHead
from ssl_studio.models.resnet import ResNet18
from ssl_studio.models.vit import DEFAULT_DEPTH, ViT


BACKBONES = ("convnet", "resnet18", "vit")  # the names ``model.backbone`` takes (config.ModelConfig's choices)

# What ``model.width = 0`` means for each backbone: the ConvNet's measured best
# per CPU-minute (docs/studies/convnet-design.md), the standard ResNet-18, half ViT-Tiny's width (96 dims,
# 2.4x the training speed of 192 on a CPU core; docs/studies/vit-on-shapes.md).
DEFAULT_WIDTH = {"convnet": 32, "resnet18": 64, "vit": 32}


def build_backbone(cfg, image_size: int, in_channels: int = 3) -> Backbone:
    """Make the backbone ``cfg.backbone`` at width ``cfg.width`` for ``image_size`` inputs (``cfg``: a ``config.ModelConfig``)."""
    name = cfg.backbone
    width = cfg.width or DEFAULT_WIDTH.get(name, 64)
    if name == "convnet":
        return ConvNet(image_size=image_size, in_channels=in_channels, width=width)
    if name == "resnet18":
        return ResNet18(image_size=image_size, in_channels=in_channels, width=width)
    if name == "vit":
        return ViT(image_size=image_size, in_channels=in_channels, width=width, depth=cfg.depth or DEFAULT_DEPTH, registers=cfg.registers,
                   patch_size=getattr(cfg, "patch_size", 0) or None)
    raise ValueError(f"model.backbone must be one of {', '.join(BACKBONES)}, got {name!r}")


__all__ = ["BACKBONES", "Backbone", "ConvNet", "MLPHead", "ResNet18", "ViT", "build_backbone", "DEFAULT_DEPTH", "DEFAULT_WIDTH"]
