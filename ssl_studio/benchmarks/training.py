"""Training speed of each backbone in each precision, measured side by side.

One SimCLR-like step: two views through backbone + projector (``MLPHead(feature_dim, 512, 128)``),
NT-Xent (Chen et al. 2020), backward, SGD.  Every (backbone, mode) pair is warmed up, then timed in
round-robin, one step each in turn, so that a load change slows every pair alike and the ratios stay
meaningful.  Modes: float32, channels_last float32, bf16 autocast, channels_last + bf16.

Achieved FLOP/s counts a step as 3x the forward FLOPs (Kaplan et al. 2020, sec. 2.1; ``FlopCounterMode``
over backbone + projector, per view), reported as a ratio to the machine's roof in the same precision:
a 1024 x 1024 GEMM (``measure_matmul_flops``) timed in the same round-robin.  ``cpu_share`` (process
CPU time over wall time x threads) says how much of the cores the run really had; on a shared machine
only the ratios mean something.

A full-batch step can take tens of seconds on a 2-core CPU, so each pair starts at a batch of 4 and
doubles it (up to ``batch_size``) while the next step is predicted to fit a third of ``seconds``; the
batch actually timed is reported (compare rows at similar batch sizes).  Results: docs/studies/cpu-speed.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssl_studio.config import ModelConfig
from ssl_studio.models import MLPHead, build_backbone
from ssl_studio.models.flops import count_flops, cpu_has_fast_bf16, gemm_callable

MODES: dict[str, tuple[bool, bool]] = {  # name -> (channels_last, bf16 autocast)
    "float32": (False, False),
    "channels_last": (True, False),
    "bf16": (False, True),
    "channels_last+bf16": (True, True),
}
PROBE_BATCH = 4


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over 2B embeddings (Chen et al. 2020, eq. 1)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


@dataclass
class _Run:
    backbone: str
    mode: str
    batch_size: int
    flops_per_view: int
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)

    @property
    def timed(self) -> float:
        return sum(self.times)

    def run_once(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.step()
        self.cpu_times.append(time.process_time() - cpu)
        self.times.append(time.perf_counter() - wall)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make_run(backbone: str, mode: str, batch_size: int, image_size: int, width: int, seconds: float, device: torch.device) -> _Run:
    channels_last, bf16 = MODES[mode]
    torch.manual_seed(0)
    model = build_backbone(ModelConfig(backbone=backbone, width=width), image_size)
    head = MLPHead(model.feature_dim, 512, 128)
    net = nn.Sequential(model, head)
    flops_per_view = count_flops(net, torch.zeros(1, 3, image_size, image_size))
    net = net.to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        net = net.to(memory_format=memory_format)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-6)
    views: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def make_step(b: int) -> Callable[[], None]:
        if b not in views:
            g = torch.Generator().manual_seed(b)
            views[b] = tuple(  # type: ignore[assignment]
                torch.randn(b, 3, image_size, image_size, generator=g).to(device).contiguous(memory_format=memory_format)
                for _ in range(2)
            )
        x1, x2 = views[b]

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = nt_xent(net(x1), net(x2))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)

        return step

    def timed(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    # Grow the batch by doubling from 4 while the next step is predicted to
    # fit a third of the time budget; each step also warms up its shape.
    # (Predicting from the tiny batch alone would badly overestimate the cost
    # per image: small batches are dominated by per-layer overheads.)
    b = min(batch_size, PROBE_BATCH)
    step = make_step(b)
    t = timed(step)
    while b < batch_size:
        nb = min(2 * b, batch_size)
        if t * nb / b > seconds / 3:
            break
        b = nb
        step = make_step(b)
        t = timed(step)
    chosen = b
    del views  # keep only the chosen batch's tensors alive (held by the closure)
    return _Run(backbone, mode, chosen, flops_per_view, step)


def bench_training(
    backbones: Sequence[str] = ("convnet", "resnet18", "vit"),
    batch_size: int = 256,
    image_size: int = 32,
    seconds: float = 3.0,
    device: str = "cpu",
    modes: Sequence[str] = tuple(MODES),
    width: int = 0,
    roof_seconds: float | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Images/s and achieved FLOP/s of a SimCLR-like step for every backbone x mode.

    Returns one row per pair: ``backbone``, ``mode``, ``batch_size`` (the one
    actually timed), ``images_per_s`` (source images, each seen as 2 views),
    ``forward_flops_per_view`` (backbone + projector), ``step_flops_per_s``
    (3 x forward x views/s), ``matmul_flops_per_s`` (the same-precision GEMM
    roof), ``ratio`` (achieved / roof) and ``cpu_share``.  The roofs get
    ``roof_seconds`` of GEMMs (default: ``seconds``, so they are sampled over
    the whole window like the steps).  ``threads`` sets PyTorch's thread
    count first (default: leave it as it is).
    """
    dev = torch.device(device)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    # The roofs are timed in the same round-robin as the training steps, so
    # that load from other processes affects both sides of the ratio alike.
    roofs: dict[bool, _Run] = {}
    for bf16 in sorted({MODES[m][1] for m in modes}):
        dtype = torch.bfloat16 if bf16 else torch.float32
        fn, flops = gemm_callable(dtype, 1024, dev)
        fn()
        roofs[bf16] = _Run("gemm", str(dtype), 1024, int(flops), fn)
    runs = [_make_run(b, m, batch_size, image_size, width, seconds, dev) for b in backbones for m in modes]
    budget = {id(r): seconds for r in runs} | {id(r): roof_seconds or seconds for r in roofs.values()}
    everything = list(roofs.values()) + runs
    while True:
        pending = [r for r in everything if r.timed < budget[id(r)]]
        if not pending:
            break
        for r in pending:
            r.run_once()
    roof_flops = {bf16: r.flops_per_view * len(r.times) / r.timed for bf16, r in roofs.items()}
    rows: list[dict] = []
    for r in runs:
        images_per_s = r.batch_size * len(r.times) / r.timed
        step_flops = 3.0 * r.flops_per_view * 2 * images_per_s
        roof = roof_flops[MODES[r.mode][1]]
        rows.append(
            {
                "backbone": r.backbone,
                "mode": r.mode,
                "batch_size": r.batch_size,
                "images_per_s": images_per_s,
                "forward_flops_per_view": r.flops_per_view,
                "step_flops_per_s": step_flops,
                "matmul_flops_per_s": roof,
                "ratio": step_flops / roof if roof > 0 else float("nan"),
                # CPU time over wall time x threads: well below 1 means other
                # processes took the cores and the absolute numbers are low.
                "cpu_share": sum(r.cpu_times) / (r.timed * threads) if dev.type == "cpu" else float("nan"),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'backbone':<9} {'mode':<19} {'batch':>5} {'images/s':>9} {'fwd MFLOP':>9} {'step GFLOP/s':>12} {'roof GFLOP/s':>12} {'ratio':>6} {'cpu share':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['backbone']:<9} {r['mode']:<19} {r['batch_size']:>5} {r['images_per_s']:>9.1f} "
            f"{r['forward_flops_per_view'] / 1e6:>9.1f} {r['step_flops_per_s'] / 1e9:>12.2f} "
            f"{r['matmul_flops_per_s'] / 1e9:>12.2f} {r['ratio']:>6.3f} {r['cpu_share']:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssl_studio.benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="convnet,resnet18,vit")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=0, help="backbone width (0 = each backbone's default)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0 = leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
        f"native CPU bf16: {cpu_has_fast_bf16()}, image {args.image_size}px, SimCLR-like step (2 views + projector + NT-Xent + SGD)"
    )
    rows = bench_training(
        backbones=tuple(args.backbones.split(",")),
        batch_size=args.batch_size,
        image_size=args.image_size,
        seconds=args.seconds,
        device=args.device,
        modes=tuple(args.modes.split(",")),
        width=args.width,
    )
    print(format_table(rows))
    print("step FLOP/s = 3 x forward FLOPs x views/s (backward ~ 2x forward); roof = 1024^2 GEMM in the same precision,")
    print("timed in the same round-robin; cpu share = process CPU time / (wall time x threads), low when the cores are shared.")


if __name__ == "__main__":
    main()
