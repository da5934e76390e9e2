"""Multi-crop forward passes shared by SwAV and DINO (Caron et al. 2020, §3.2).

Crops of one resolution go through the network in one concatenated batch (the
official code's trick: two forward passes for 2 global + N local crops rather
than 2 + N), and the outputs come back in the order of the views.

A backbone declares which input sizes it takes with ``accepts(size)``.  The
ViT takes any whole number of patches (a 16 px local crop is a 4x4 grid, a
quarter of the tokens of a 32 px image, with the position table spread over it
as DINO's ``interpolate_pos_encoding`` does); a crop a backbone refuses is
resized to ``image_size`` before the pass, which keeps its content at the cost
of the compute a full-size crop needs.  The ConvNets, globally pooled, take
every size (``Backbone.accepts``'s default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def fits(backbone: nn.Module, size: int) -> bool:
    """Whether ``backbone`` accepts ``size`` x ``size`` inputs as they are."""
    return bool(backbone.accepts(size))


def forward_crops(fn: Callable[[torch.Tensor], Any], views: list[torch.Tensor], backbone: nn.Module) -> list[Any]:
    """``fn`` applied to every view, one pass per resolution, outputs in view order.

    ``fn`` returns a tensor, or a tuple of tensors (say features and head outputs), each
    split back per view; a view's output is then the tuple of its parts.
    """
    groups: dict[int, list[int]] = {}
    for i, v in enumerate(views):
        groups.setdefault(v.shape[-1], []).append(i)
    out: list[Any] = [None] * len(views)
    for size, idx in groups.items():
        x = torch.cat([views[i] for i in idx])
        if not fits(backbone, size):
            target = int(backbone.image_size)
            x = F.interpolate(x, size=(target, target), mode="bilinear", align_corners=False)
        y = fn(x)
        if isinstance(y, tuple):
            for i, parts in zip(idx, zip(*(part.chunk(len(idx)) for part in y))):
                out[i] = parts
        else:
            for i, part in zip(idx, y.chunk(len(idx))):
                out[i] = part
    return out


__all__ = ["fits", "forward_crops"]
