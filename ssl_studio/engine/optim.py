"""Optimisers and learning-rate schedules.

Schedules are functions of *progress* (the share of the budget done) rather
than of the step number, so a wall-clock budget, whose step count is unknown in
advance, warms up and anneals exactly like a step budget.
"""

from __future__ import annotations

import math

import torch


class LARS(torch.optim.Optimizer):
    """SGD with layer-wise adaptive rate scaling (You et al. 2017), as used by SimCLR and BYOL.

    Each weight's update is scaled by ``eta * ||w|| / ||grad + wd * w||``; groups with
    ``lars_exclude`` (biases, norm layers) get plain SGD, as in the SimCLR code.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    w_norm, d_norm = p.norm(), d.norm()
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, torch.ones_like(w_norm))
                    d = d.mul(trust)
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = d.clone()
                else:
                    state["momentum"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum"], alpha=-group["lr"])


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float) -> torch.optim.Optimizer:
    for g in groups:
        g["lr"] = lr
    if name == "sgd":
        clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
        return torch.optim.SGD(clean, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        clean = [{k: v for k, v in g.items() if k != "lars_exclude"} for g in groups]
        return torch.optim.AdamW(clean, lr=lr, betas=(0.9, 0.95))
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(progress: float, peak: float, warmup_fraction: float, schedule: str, final_fraction: float = 0.0) -> float:
    """Linear warm-up to ``peak`` then cosine (SGDR, Loshchilov & Hutter 2017) or constant."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return peak * progress / warmup_fraction
    if schedule == "constant":
        return peak
    t = (progress - warmup_fraction) / max(1e-12, 1 - warmup_fraction)
    low = peak * final_fraction
    return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * t))
