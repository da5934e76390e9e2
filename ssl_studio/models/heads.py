"""Projector and predictor heads.

Every joint-embedding method puts a small MLP after the backbone: SimCLR's
projector (Chen et al. 2020, 2 layers), MoCo v2's (Chen et al. 2020b), BYOL's
projector and predictor (Grill et al. 2020: Linear-BN-ReLU-Linear, hidden 4096
at ImageNet scale), SimSiam's 3-layer projector ending in a BatchNorm without
affine parameters (Chen & He 2021), Barlow Twins' and VICReg's 3-layer
expanders (Zbontar et al. 2021; Bardes et al. 2022).  One configurable class
covers them all so that the objectives differ only in the numbers they pass.
"""

from __future__ import annotations

from torch import Tensor, nn


class MLPHead(nn.Module):
    """``(Linear-BN-ReLU) x (num_layers-1)`` then ``Linear`` (+ optional affine-free BN).

    Args:
        in_dim: input width (the backbone's ``feature_dim``).
        hidden_dim: width of the hidden layers.
        out_dim: output width.
        num_layers: number of Linear layers (>= 1; 1 gives a plain linear map).
        batch_norm: BatchNorm after every hidden Linear.  When on, those
            Linears drop their bias (BN's shift makes it redundant).
        last_batch_norm: BatchNorm *without* learnable affine after the last
            Linear, as in SimSiam's projector (Chen & He 2021, sec. 4.4).
        last_bias: bias on the last Linear; off when a BN follows it.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
        last_bias: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLPHead needs num_layers >= 1, got {num_layers}")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.num_layers = num_layers
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=last_bias and not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_projector(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, *, batch_norm: bool = True,
                    last_batch_norm: bool = False, last_bias: bool = True) -> MLPHead:
    """A projection head after a backbone of width ``in_dim``, with the head options of ``MLPHead``.

    The one place the objectives' projectors are made (``Objective.build_projector``, which also honours
    the ``no_projector`` ablation), so that they differ only in the numbers and options they pass.
    """
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=num_layers, batch_norm=batch_norm,
                   last_batch_norm=last_batch_norm, last_bias=last_bias)


__all__ = ["MLPHead", "build_projector"]
