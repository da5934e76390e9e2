"""FLOP counting and the machine's matmul roof.

FLOPs are counted, never estimated by hand, with
``torch.utils.flop_counter.FlopCounterMode``: it sees every matmul, convolution
and attention the module really runs, so a backbone whose shape changes never
drifts out of sync with a formula.  It counts 2 FLOPs per multiply-accumulate
and ignores element-wise work (norms, activations), the usual convention.

PyTorch 2.x does not register a formula for the CPU fused attention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``), so attention would
silently count as zero on CPU; :func:`count_flops` adds that mapping.

The "roof" is the FLOP/s of a large square GEMM on this machine with the current
thread count: the best a training step, which is mostly GEMMs and convolutions,
could hope to reach.  Benchmarks report achieved FLOP/s as a ratio of it.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _custom_mapping() -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flop
    return mapping


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU fused attention."""
    return FlopCounterMode(display=False, custom_mapping=_custom_mapping())


def count_flops(module: nn.Module, example_input: torch.Tensor, **kwargs: Any) -> int:
    """Forward FLOPs (2 x MACs) of ``module(example_input, **kwargs)``.

    Runs under ``no_grad`` in eval mode (so BatchNorm running statistics are
    not disturbed) and restores the module's training flag afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), flop_counter() as counter:
            module(example_input, **kwargs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def gemm_callable(dtype: torch.dtype = torch.float32, n: int = 1024, device: str | torch.device = "cpu") -> tuple[Callable[[], None], float]:
    """The faster of ``torch.mm`` and ``F.linear`` for an ``n x n`` GEMM, and its FLOPs per call.

    They reach different kernels on CPU: for bf16 without native bf16
    instructions ``torch.mm`` can fall back to a reference loop (~1 GFLOP/s)
    while ``linear`` goes through oneDNN.  A model's layers use the faster
    path, so the roof should too.  The choice is made at ``n = 256`` (cheap
    even on the slow path); the returned callable synchronises CUDA.
    """
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def make(size: int) -> tuple[Callable[[], None], Callable[[], None]]:
        a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)

        def mm() -> None:
            torch.mm(a, b)
            sync()

        def linear() -> None:
            torch.nn.functional.linear(a, b)
            sync()

        return mm, linear

    def once(fn: Callable[[], None]) -> float:
        fn()  # first call: thread pool, oneDNN primitive creation
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    small_mm, small_linear = make(256)
    use_linear = once(small_linear) <= once(small_mm)
    mm, linear = make(n)
    return (linear if use_linear else mm), 2.0 * n**3


def measure_matmul_flops(dtype: torch.dtype = torch.float32, seconds: float = 1.0, n: int = 1024, device: str | torch.device = "cpu") -> float:
    """FLOP/s of an ``n x n`` GEMM in ``dtype`` on ``device`` with the current thread count.

    The faster of ``torch.mm`` and ``F.linear`` (see :func:`gemm_callable`).
    ``n`` between 1024 and 2048 is large enough to be compute-bound and small
    enough to time in a second on a laptop.
    """
    fn, flops = gemm_callable(dtype, n, device)
    start = time.perf_counter()
    fn()  # warm-up at size n
    first = time.perf_counter() - start
    if first >= seconds:
        return flops / first  # so slow that one call is measurement enough
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return flops * calls / elapsed


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AMX or AVX-512 BF16).

    Without it, PyTorch emulates bf16 on CPU and bf16 autocast is many times
    *slower* than float32 (measured on an AVX2-only AMD EPYC: bf16 convolution
    2-15 GFLOP/s against 60-80 in float32), so the trainer's "auto" precision
    should pick bf16 on CPU only when this returns True.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    if flags:
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    # Not Linux (or no flags line): ask PyTorch what vector ISA it dispatches to.
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old PyTorch
        return False
    return capability in ("AVX512_BF16", "AMX") or "AMX" in capability


__all__ = ["count_flops", "cpu_has_fast_bf16", "flop_counter", "gemm_callable", "measure_matmul_flops"]
