"""BatchNorm over the global batch of every rank (SimCLR's and BYOL's "global BN"), on CPU and GPU.

``nn.SyncBatchNorm`` runs on CUDA only; this one runs wherever ``torch.distributed`` does.  Its forward takes
the rank's per-channel statistics with ATen's fused kernel, gathers every rank's [n, mean, variance] once and combines them in float64, and
normalises with the fused eval-mode kernel; its backward takes the two per-channel sums with ATen's fused
batch-norm backward, all-reduces them once, and forms the input gradient in two fused passes.  Per layer: one
collective forward, one backward, and about the memory traffic of plain BatchNorm (an autograd graph of
elementwise float64 ops cost 3-4x plain BatchNorm on a CPU; docs/scale-out.md).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous()
    dist.all_reduce(t)
    return t


def _gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` stacked in rank order (W x len(t))."""
    rows = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, t.contiguous())
    return torch.stack(rows)


def _combine(rows: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global mean, biased variance and count from each rank's [n, mean, variance] (Chan et al.'s pairwise
    formula: no E[x^2] - mean^2 cancellation when the mean is large beside the spread)."""
    n = rows[:, :1]
    total = n.sum()
    mean = (n * rows[:, 1:1 + c]).sum(0) / total
    var = (n * (rows[:, 1 + c:] + (rows[:, 1:1 + c] - mean) ** 2)).sum(0) / total
    return mean, var, total


def _per_channel_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` along dim 1 in one fused pass (eval-mode batch norm with mean 0 and variance 1)."""
    c = x.shape[1]
    zeros, ones = torch.zeros_like(scale), torch.ones_like(scale)
    return torch.batch_norm(x, scale, shift, zeros, ones, False, 0.0, 0.0, False)


class _GlobalBatchNormFunction(torch.autograd.Function):
    """y = BN(x) with the global batch's mean and variance; returns (y, mean, unbiased variance) for the running stats."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        c = x.shape[1]
        n_local = float(x.numel() // max(c, 1))
        stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        scratch_mean = torch.zeros(c, device=x.device, dtype=stats_dtype)
        scratch_var = torch.ones(c, device=x.device, dtype=stats_dtype)
        mean, var = torch.batch_norm_update_stats(x, scratch_mean, scratch_var, 0.0)  # biased
        gmean, gvar, n = _combine(_gather_rows(torch.cat([mean.new_full((1,), n_local), mean, var]).double()), c)
        mean32, var32 = gmean.to(stats_dtype), gvar.to(stats_dtype)
        w = weight if weight is not None else torch.ones(c, device=x.device, dtype=stats_dtype)
        b = bias if bias is not None else torch.zeros(c, device=x.device, dtype=stats_dtype)
        y = torch.batch_norm(x, w, b, mean32, var32, False, 0.0, eps, False)
        ctx.save_for_backward(x, w, mean32, var32)
        ctx.eps, ctx.n = eps, float(n)
        unbiased = gvar * (n / (n - 1).clamp_min(1.0))
        ctx.mark_non_differentiable(gmean, unbiased)
        return y, gmean, unbiased

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        x, w, mean, var = ctx.saved_tensors
        c = x.shape[1]
        dy = dy.contiguous()
        # The rank's sums of dy*(x-mean)*invstd and dy per channel, fused (the weight's and bias's gradients).
        _, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(dy, x, w, mean, var, None, None, False, ctx.eps,
                                                                      [False, True, True])
        invstd = torch.rsqrt(var + ctx.eps)
        sums = _sum_over_ranks(torch.cat([grad_b, grad_w / invstd])) / ctx.n  # mean dy, mean dy*(x-mean)
        mean_dy, mean_dy_xmu = sums[:c], sums[c:]
        a = w * invstd
        k = invstd * invstd * mean_dy_xmu
        dx = _per_channel_affine(x, -a * k, a * (mean * k - mean_dy))  # x-dependent terms
        dx = torch.addcmul(dx, dy, a.to(dy.dtype).view([1, c] + [1] * (x.dim() - 2)))
        needs = ctx.needs_input_grad
        return dx, grad_w if needs[1] else None, grad_b if needs[2] else None, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (all ranks), on any device.

    The same state_dict keys as ``nn.BatchNorm*d``, so checkpoints move between one and N processes.  Outside
    a process group, or in eval mode, it is plain batch norm.  The weight's and bias's gradients are the rank's
    own share (DDP reduces them like every other parameter's).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N x C x ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _in_process_group()):
            return super().forward(x)
        self._check_input_dim(x)
        weight, bias = (self.weight, self.bias) if self.affine else (None, None)
        y, mean, unbiased = _GlobalBatchNormFunction.apply(x, weight, bias, self.eps)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by ``GlobalBatchNorm`` sharing its parameters and buffers."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var, new.num_batches_tracked = module.running_mean, module.running_var, module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
