"""A small VGG-style ConvNet for live training on a laptop CPU.

The lab's default backbone on CPU: it has to learn something useful in a few
minutes of live training on a 2-core laptop at 32x32, so it was chosen for
throughput, not for peak accuracy: width 32 by default (0.29M parameters),
width 64 matches the lightly benchmark ConvNet's 1.2M.

Layout at width ``w`` (default 32, see "Why width 32" below): seven conv3x3-BN-ReLU layers in four
stages with a 2x2 max-pool after each, then global average pooling::

    32x32: w/2          -> pool -> 16x16: w, w   -> pool
     8x8:  2w, 2w       -> pool ->  4x4: 4w, 4w -> pool -> 2x2 -> GAP -> 4w

``feature_dim = 4w``: 128 at the default width 32 (0.29M parameters, 22
MFLOPs per 32x32 image); 256 at width 64 (1.16M parameters, 87 MFLOPs).  Kaiming (fan-out) init for convs (He et al. 2015).

Why this shape: a training step (forward + backward + SGD on a single-view
loss) of five candidates was measured side by side on this project's dev
machine (AMD EPYC, AVX2 only, PyTorch 2.14, 2 cores shared with other jobs).
Images/s, float32; "2 threads" at batch 256 while the machine was nearly idle,
"1 thread" at batch 128 counting process CPU time, interleaved, which stays
stable under other jobs' load::

    plan             channels per conv           MFLOPs  2 thr.  2 thr. ch-last  1 thr. ch-last
    lightly8         32 32|64 64|128 128|256 256   106      99       188             147
    vgg7 (default)   32|64 64|128 128|256 256       87     232       301             206
    s2stem           32/s2|64 64|128 128|256 256    85     287       342             214
    vgg7_512         32|64 64|128 128|256 512      106      --       323             139
    s2_512           32/s2|64 64|128 128|256 512   104      --        --             144

- The lightly layout's second conv at full resolution costs 18% of the FLOPs
  but about 30% of the time: at 32x32 the BN, ReLU and pool over 32-channel
  maps are memory-bound.  Dropping it makes a step 1.4-1.6x faster.
- A stride-2 first conv (s2stem) is only ~4% faster than vgg7 in the robust
  measurement, but it samples one position in four before any pooling
  (aliasing, Zhang 2019), which hurts under the random-crop augmentations
  every SSL method relies on; vgg7 keeps a stride-1 conv at full resolution
  followed by max-pool for the same price.
- A 512-channel last layer costs ~30% more time for a wider feature; the
  lab's diagnostics and probes work well at 256.
- Precision: channels-last float32 is 1.3x faster than contiguous float32.
  bf16 autocast is ~30x *slower* on this CPU (6 img/s, 9 with channels-last,
  batch 64) because it has no native bf16 (no AVX512_BF16/AMX) and oneDNN
  emulates it; on a CPU that has them bf16 should win, which is why the
  trainer asks ``flops.cpu_has_fast_bf16()``.  Re-measure with
  ``python -m ssl_studio.benchmarks.training``.

Why width 32 (and batch 128 in the run config): learning per CPU-minute,
measured side by side on the same machine (AMD EPYC, 1 thread per run, two
runs at a time on an otherwise idle 2-core machine; SimCLR defaults, 5
minutes on the CIFAR-10 test images with a seeded 90/10 split; k-NN@20 /
linear probe on the held-out tenth)::

    width  batch  steps  k-NN@20  linear
      64    256     97    0.433   0.484
      32    256    288    0.436   0.478
      64    128    177    0.422   0.472
      32    128    550    0.446   0.485

On CIFAR the four are within noise (600-1,000 queries: +-0.015), but on the
procedural shapes, where a few hundred steps are needed before shape beats
colour and texture, width 32 / batch 128 got 352 steps in 3 minutes and
k-NN@20 0.247 (linear 0.345) while width 64 / batch 256 got 55 steps and
0.167 (linear 0.242), below its own initialisation.  Width 32 is 3-4x
faster per image; at width 64 the ConvNet is a better *random* feature
(k-NN@20 0.388 vs 0.333 on CIFAR at initialisation), which is why the
baselines protocol rebuilds the initial backbone at the run's own width.

The layout comparison above held capacity at the reference's 1.2M parameters
(width 64) so that its speed-up was not bought with a smaller model; the
width 32 default is a separate, measured choice.  Other plans stay available
through ``plan=``.
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
