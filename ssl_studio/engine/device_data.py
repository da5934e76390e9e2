"""Where a run's in-memory uint8 images live, and how a batch of them reaches the device.

On CUDA the whole set is copied to the GPU once when it takes at most ``GPU_SHARE`` of the free memory
(a batch is then an index on the device: no copy per step); otherwise each batch is gathered into pinned
host memory and copied with ``non_blocking=True``, so the copy overlaps the previous step's kernels.
Elsewhere (CPU, MPS) the set stays where it is and a batch is an index into it.
"""

from __future__ import annotations

import torch

GPU_SHARE = 0.25  # of the free GPU memory: the rest is for activations, weights and the optimiser


class DeviceImages:
    """The training set's images (and labels) as the step loop reads them: ``batch(idx)`` -> (images, labels)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, device: torch.device):
        self.device = device
        self.on_device = False
        self.images, self.labels = images, labels
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            size = images.numel() * images.element_size() + (labels.numel() * labels.element_size() if labels is not None else 0)
            if size <= GPU_SHARE * free:
                self.images = images.to(device)
                self.labels = labels.to(device) if labels is not None else None
                self.on_device = True

    @property
    def where(self) -> str:
        return "gpu" if self.on_device else ("pinned host memory" if self.device.type == "cuda" else "host memory")

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.on_device:
            at = idx.pin_memory().to(self.device, non_blocking=True)  # a pageable copy would wait for the stream
            return self.images[at], (self.labels[at] if self.labels is not None else None)
        images = self.images[idx]
        labels = self.labels[idx] if self.labels is not None else None
        if self.device.type == "cuda":
            images = images.pin_memory().to(self.device, non_blocking=True)
            labels = labels.pin_memory().to(self.device, non_blocking=True) if labels is not None else None
            return images, labels
        return images.to(self.device), (labels.to(self.device) if labels is not None else None)
