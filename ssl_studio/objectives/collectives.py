"""The collectives an objective's loss uses under torchrun, and this process's rank (no process-group set-up).

In one process every function here is the identity (or rank 0 of 1), so an objective written with them
computes the same loss alone and on N processes.  Joining and leaving the process group, faults and
synchronised BatchNorm are the engine's (``ssl_studio.engine.distributed``); these live with the objectives
because their losses call them, and objectives sit below the engine.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


# --------------------------------------------------------------------------- collectives with gradient


class _Gather(torch.autograd.Function):
    """all_gather along dim 0; backward: the gradients of every rank summed, this rank's rows returned."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ws = dist.get_world_size()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(parts, x)
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward: the gradient summed over ranks (every rank's loss used the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.contiguous().clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, with gradient (equal row counts on every rank)."""
    if not is_distributed():
        return x
    if x.requires_grad:
        return _Gather.apply(x)
    return gather_no_grad(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over ranks, with gradient (backward sums over ranks)."""
    if not is_distributed():
        return x
    if x.requires_grad:
        return _AllReduceSum.apply(x)
    y = x.detach().contiguous().clone()
    dist.all_reduce(y)
    return y


@torch.no_grad()
def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    y = x.detach().contiguous().clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX)
    return y


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (no gradient): what the step's reported loss and metrics are."""
    if not is_distributed():
        return x
    return all_reduce_sum(x.detach().double()).div_(world_size()).to(x.dtype)


def my_rows(local_rows: int) -> slice:
    """This rank's rows in a tensor gathered from ``local_rows`` rows per rank."""
    r = rank()
    return slice(r * local_rows, (r + 1) * local_rows)


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's equal share (along dim 0) of a global tensor every rank holds."""
    n = x.shape[0] // world_size()
    return x[my_rows(n)]


def global_rows(local_rows: int) -> int:
    return local_rows * world_size()
