"""ResNet-18 with the CIFAR stem.

The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 32x32 image to
8x8 before the first block and throws away most of the spatial detail small
images have.  For CIFAR, He et al. (2016, sec. 4.2) start with a single 3x3
stride-1 conv and no pooling; SimCLR (Chen et al. 2020, appendix B.9) and
nearly every CIFAR SSL benchmark since (solo-learn, lightly) use ResNet-18
with exactly that stem, which makes results comparable with published tables.

Width scales every stage by ``width / 64`` (64 is the standard ResNet-18:
stages of 64/128/256/512 channels, 11.2M parameters, ~1.1 GFLOPs at 32x32),
and ``feature_dim = 8 x width``.  No pretrained weights are ever loaded.
"""

from __future__ import annotations

from torch import Tensor, nn

from ssl_studio.models.base import Backbone


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut (He et al. 2016, fig. 2)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            # Option B of He et al. (2016): projection shortcut where shapes change.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(Backbone):
    """ResNet-18 (2-2-2-2 BasicBlocks), CIFAR stem, global average pool.

    Args:
        image_size: side of the square input (any size >= 8 works; the stem
            keeps full resolution, the three stride-2 stages divide it by 8).
        in_channels: image channels.
        width: channels of the first stage (64 = standard ResNet-18).
        zero_init_residual: start each block's last BN at gamma = 0 so every
            block begins as the identity; this steadies early training with
            large batches and learning rates (Goyal et al. 2017, sec. 5.1).
    """

    def __init__(self, image_size: int = 32, in_channels: int = 3, width: int = 64, zero_init_residual: bool = True) -> None:
        super().__init__(image_size, in_channels)
        w = int(width)
        self.width = w
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = w
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            out_ch = w * mult
            stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * w
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. (2015) fan-out init, as torchvision's ResNet.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_map(self, x: Tensor) -> Tensor:
        """The last feature map ``B x 8w x S/8 x S/8`` (before pooling)."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.forward_map(x)).flatten(1)


__all__ = ["BasicBlock", "ResNet18"]
