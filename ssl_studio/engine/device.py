"""Where and in what precision to train: CUDA, then MPS, then CPU; bf16 where it is fast."""

from __future__ import annotations

import torch

from ssl_studio.models.flops import cpu_has_fast_bf16


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from ssl_studio.params import ConfigError

        raise ConfigError("device", "is cuda, but no CUDA device is available here; choose auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        from ssl_studio.params import ConfigError

        raise ConfigError("device", "is mps, but no Apple GPU is available here; choose auto or cpu")
    return torch.device(name)


def pick_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32."""
    if requested == "float32":
        return None
    if requested == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def pick_channels_last(requested: bool | None, device: torch.device, backbone: str, autocast_dtype) -> bool:
    """Channels-last helps convolutions under oneDNN/cuDNN (1.3x for the ConvNet in float32 on an
    AVX2-only CPU, see models/convnet.py); a ViT has no convolutions to speed up."""
    if requested is not None:
        return requested
    return backbone in ("convnet", "resnet18") and device.type in ("cpu", "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context for ``dtype`` on ``device``; float32 (``None``) turns autocast off."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
