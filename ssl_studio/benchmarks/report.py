"""``ssl-studio bench``: every benchmark measured side by side in one run, printed as one table."""

from __future__ import annotations

import platform

import torch


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def run_bench(parts: list[str], seconds: float = 3.0, backbones: list[str] | None = None, gui_seconds: float = 20.0) -> str:
    lines = [f"machine: {_machine()}", ""]
    if "views" in parts:
        from ssl_studio.benchmarks.views import bench_views

        r = bench_views(batch_size=256, size=32, seconds=seconds)
        lines += ["## Augmentation (batch 256, 32x32, 2 views per image)", "",
                  "| pipeline | views/s |", "|---|---:|",
                  f"| ssl_studio.data.views (batched) | {r['views_per_s']:,.0f} |",
                  f"| torchvision.transforms.v2, per sample | {r['torchvision_views_per_s']:,.0f} |",
                  f"| ssl_studio.data.views with colour mix (`augment.colour_mix_p = 1`) | {r['colour_mix_views_per_s']:,.0f} |",
                  f"| ratio | {r['ratio']:.1f}x |", ""]
    if "training" in parts:
        from ssl_studio.benchmarks.training import bench_training

        rows = bench_training(backbones=tuple(backbones or ("convnet", "resnet18", "vit")), batch_size=256, image_size=32, seconds=seconds)
        lines += ["## Training step (SimCLR-style: 2 views, projector, NT-Xent, SGD; 32x32)", "",
                  "Step FLOP/s = 3 x forward FLOPs x views/s; the roof is a square matmul in the same precision, timed in the same round-robin.", "",
                  "| backbone | mode | batch | images/s | step GFLOP/s | matmul GFLOP/s | ratio |", "|---|---|---:|---:|---:|---:|---:|"]
        for row in rows:
            lines.append(f"| {row['backbone']} | {row['mode']} | {row.get('batch_size', '')} | {row['images_per_s']:,.0f} | {row['step_flops_per_s'] / 1e9:,.1f} | "
                         f"{row['matmul_flops_per_s'] / 1e9:,.1f} | {row['ratio']:.2f} |")
        lines.append("")
    if "methods" in parts:
        from ssl_studio.benchmarks.methods import bench_methods, methods_table

        lines += methods_table(bench_methods(seconds=max(seconds, 2.0)))
    if "loop" in parts:
        from ssl_studio.benchmarks.loop import bench_loop, loop_table

        lines += loop_table([bench_loop()])
    if "checkpoint" in parts:
        from ssl_studio.benchmarks.checkpoint import bench_checkpoint, checkpoint_table

        lines += checkpoint_table(bench_checkpoint(backbones=tuple(backbones or ("convnet", "resnet18", "vit"))))
    if "distributed" in parts:
        from ssl_studio.benchmarks.distributed import bench_distributed, distributed_table

        lines += distributed_table(bench_distributed(seconds=max(seconds, 2.0)))
    if "gpu" in parts:
        from ssl_studio.benchmarks.gpu import bench_gpu, gpu_table

        lines += gpu_table(bench_gpu(seconds=seconds))
    if "gui" in parts:
        from ssl_studio.gui.benchmark import bench_gui  # Qt lives only under gui/

        r = bench_gui(seconds=gui_seconds)
        lines += ["## Window", ""] + [f"- {k}: {v}" for k, v in r.items()] + [""]
    return "\n".join(lines)
