"""A small VGG-style ConvNet for live training on a laptop CPU.

The lab's default backbone on CPU: it has to learn something useful in a few minutes of live
training on a 2-core laptop at 32x32, so it was chosen for throughput, not peak accuracy.

Layout at width ``w`` (default 32): seven conv3x3-BN-ReLU layers in four stages with a 2x2
max-pool after each, then global average pooling::

    32x32: w/2          -> pool -> 16x16: w, w   -> pool
     8x8:  2w, 2w       -> pool ->  4x4: 4w, 4w -> pool -> 2x2 -> GAP -> 4w

``feature_dim = 4w``: 128 at width 32 (0.29M parameters, 22 MFLOPs per 32x32 image); 256 at
width 64 (1.16M, the lightly benchmark ConvNet's size).  Kaiming (fan-out) init (He et al. 2015).
Why: no second full-resolution conv (memory-bound at 32x32, 1.4-1.6x slower) and no stride-2 stem
(aliasing under random crops, Zhang 2019); width 32 with batch 128 learns the shapes in 3 CPU-minutes
where width 64 / batch 256 does not.  The measurements: docs/studies/convnet-design.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ssl_studio.models.base import Backbone

# A plan is a list of stages; each stage is (channels as a multiple of width,
# number of 3x3 conv-BN-ReLU layers, stride of its first conv).  A 2x2 max-pool
# follows every stage whose entry says so.
Stage = tuple[float, int, int, bool]

PLANS: dict[str, tuple[Stage, ...]] = {
    # The lightly reference layout: 4 stages x 2 convs, pool after each, 2x2 final map.
    "lightly8": ((0.5, 2, 1, True), (1, 2, 1, True), (2, 2, 1, True), (4, 2, 1, True)),
    # The default: first stage a single conv, cheaper at full resolution.
    "vgg7": ((0.5, 1, 1, True), (1, 2, 1, True), (2, 2, 1, True), (4, 2, 1, True)),
    # Stride-2 stem straight to 16x16, then 3 stages of 2 convs.
    "s2stem": ((0.5, 1, 2, False), (1, 2, 1, True), (2, 2, 1, True), (4, 2, 1, False)),
    # vgg7 with a 512-channel last conv (wider features, ~30% slower).
    "vgg7_512": ((0.5, 1, 1, True), (1, 2, 1, True), (2, 2, 1, True), (4, 1, 1, False), (8, 1, 1, True)),
}
DEFAULT_PLAN = "vgg7"


class ConvNet(Backbone):
    """conv3x3-BN-ReLU stages with max-pool downsampling and global average pooling.

    Args:
        image_size: side of the square input.
        in_channels: image channels.
        width: base width; stage channels are multiples of it (default 32, see above).
        plan: a name from ``PLANS`` or an explicit list of stages.
    """

    def __init__(self, image_size: int = 32, in_channels: int = 3, width: int = 32, plan: str | Sequence[Stage] = DEFAULT_PLAN) -> None:
        super().__init__(image_size, in_channels)
        stages = PLANS[plan] if isinstance(plan, str) else tuple(plan)
        self.plan = plan if isinstance(plan, str) else "custom"
        self.width = int(width)
        layers: list[nn.Module] = []
        ch = in_channels
        size = image_size
        for mult, n_convs, stride, pool in stages:
            out = max(8, int(round(mult * width)))
            for i in range(n_convs):
                s = stride if i == 0 else 1
                layers += [nn.Conv2d(ch, out, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                ch = out
                size = (size + 2 - 3) // s + 1
            if pool and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_map(self, x: Tensor) -> Tensor:
        """The last feature map before pooling."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)


__all__ = ["ConvNet", "PLANS", "DEFAULT_PLAN"]
