"""What data parallelism costs on a CPU: two gloo processes of one thread each against one process of two threads.

Both sides run the trainer's own step (views on the device, the objective, backward, DDP's gradient all-reduce,
the optimiser) and the per-step agreement of the ranks (``Trainer._agree_on_next_step``), for SimCLR on the
preset's default ConvNet, at the same global batch, so that the ratio of their images/s is what torchrun
costs next to threads.  Each side is started as its own job (torchrun for the two processes), warmed up, then
timed for ``seconds``; the sides alternate for ``rounds`` rounds so that a change of load on a shared machine
falls on both, and the best round of each side is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssl_studio.cli_args import build_parser, config_from_args

WARMUP_STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(threads: int) -> dict[str, str]:
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
              "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE")
    env = {k: v for k, v in os.environ.items() if k not in launch}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def _side(processes: int, threads: int, batch_size: int, image_size: int, seconds: float, timeout: float) -> dict:
    """One timed job: ``processes`` ranks (torchrun when more than one) of ``threads`` threads each."""
    with tempfile.TemporaryDirectory(prefix="ssl-studio-bench-") as tmp:
        result = Path(tmp) / "result.json"
        worker = ["-m", "ssl_studio.benchmarks.distributed", "--worker", "--threads", str(threads), "--batch-size", str(batch_size),
                  "--image-size", str(image_size), "--seconds", str(seconds), "--out", tmp, "--result", str(result)]
        if processes > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                   "--master_port", str(_free_port()), *worker]
        else:
            cmd = [sys.executable, *worker]
        done = subprocess.run(cmd, env=_clean_env(threads), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not result.exists():
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
            raise RuntimeError(f"the {processes}-process side of the benchmark failed (exit {done.returncode}): {tail[0]}")
        return json.loads(result.read_text(encoding="utf-8"))


def bench_distributed(batch_size: int = 256, image_size: int = 32, seconds: float = 10.0, rounds: int = 2,
                      timeout: float = 600.0) -> dict:
    """images/s of 1 process x 2 threads and 2 gloo processes x 1 thread, alternated ``rounds`` times; their ratio."""
    one, two = [], []
    for _ in range(rounds):
        one.append(_side(1, 2, batch_size, image_size, seconds, timeout))
        two.append(_side(2, 1, batch_size, image_size, seconds, timeout))
    best_one = max(one, key=lambda r: r["images_per_s"])
    best_two = max(two, key=lambda r: r["images_per_s"])
    return {"batch_size": batch_size, "image_size": image_size, "one_process": best_one, "two_processes": best_two,
            "rounds": {"one_process": [r["images_per_s"] for r in one], "two_processes": [r["images_per_s"] for r in two]},
            "ratio": best_two["images_per_s"] / best_one["images_per_s"], "load_average": _load()}


def _load() -> float | None:
    """The machine's 1-minute load average: above the core count, the sides shared the cores with other work."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def distributed_table(r: dict) -> list[str]:
    one, two = r["one_process"], r["two_processes"]
    return [f"## Data parallel on this CPU (SimCLR, default ConvNet, global batch {r['batch_size']}, {r['image_size']}x{r['image_size']})", "",
            "| side | images/s | step ms | rounds (images/s) |", "|---|---:|---:|---|",
            f"| 1 process x 2 threads | {one['images_per_s']:,.1f} | {one['step_ms']:,.0f} | "
            f"{', '.join(f'{v:,.1f}' for v in r['rounds']['one_process'])} |",
            f"| 2 gloo processes x 1 thread (torchrun) | {two['images_per_s']:,.1f} | {two['step_ms']:,.0f} | "
            f"{', '.join(f'{v:,.1f}' for v in r['rounds']['two_processes'])} |",
            f"| ratio (2 processes / 1 process) | {r['ratio']:.2f} | | |", "",
            f"Load average at the end: {r['load_average']} on {os.cpu_count()} cores (above the core count, other work shared them).", ""]


# --------------------------------------------------------------------------- one side's process (or rank)


def _worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from ssl_studio.engine import distributed
    from ssl_studio.engine.trainer import Trainer

    parsed = build_parser().parse_args([
        "train", "--preset", "simclr", "--data", "shapes", "--device", "cpu", "--precision", "float32", "--quiet",
        "--batch-size", str(args.batch_size), "--set", f"data.num_images={max(4 * args.batch_size, 256)}",
        "--set", f"data.resolution={args.image_size}", "--set", "probe.every=0", "--set", "probe.visuals_every=0",
        "--set", f"workers={args.threads}", "--steps", "1000000", "--out", args.out])
    trainer = Trainer(config_from_args(parsed))
    try:
        trainer._setup()
        trainer.last_checkpoint = time.perf_counter() + 1e9  # no checkpoint falls due inside the timing

        def step() -> None:
            trainer._agree_on_next_step()  # what every step of a torchrun job pays
            trainer._train_step(0.5)

        for _ in range(WARMUP_STEPS):
            step()
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        n = int(distributed.agree([max(1.0, args.seconds / max(first, 1e-6)) if trainer.world.is_main else 0.0])[0])
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        dt = time.perf_counter() - t0
        if trainer.world.is_main:
            Path(args.result).write_text(json.dumps({"images_per_s": n * args.batch_size / dt, "step_ms": 1000 * dt / n,
                                                     "steps": n, "world_size": trainer.world.world_size,
                                                     "threads": torch.get_num_threads()}), encoding="utf-8")
    finally:
        if trainer.lock is not None:
            trainer.lock.release()
        distributed.barrier()
        distributed.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="run one side's process (the benchmark starts these itself)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--result", default=None)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    r = bench_distributed(args.batch_size, args.image_size, args.seconds, args.rounds)
    print("\n".join(distributed_table(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
