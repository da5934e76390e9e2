"""The GPU path (issue 23, item 7) where the CPU can check it, and on CUDA where it cannot.

The step values' late reading is exercised on the CPU by making every step's values look pending (as a CUDA
step's are): the records stay complete and in order, and a run that diverges (a loss caught a step late,
or weights gone infinite after a finite loss) still leaves only a finite checkpoint.  The benchmark's DataLoader side runs on the CPU at a tiny size; the data-parallel
CPU benchmark runs tiny; CUDA-only checks skip without a GPU.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ssl_studio.config import config_from_mapping
from ssl_studio.engine import step_values, trainer as trainer_module
from ssl_studio.engine.device_data import DeviceImages
from ssl_studio.engine.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny(tmp_path, **overrides):
    mapping = {"objective": {"name": "simclr"}, "data": {"source": "shapes", "num_images": 128}, "model": {"width": 8},
               "batch_size": 16, "budget": {"steps": 6}, "probe": {"size": 32, "every": 3, "visuals_every": 0},
               "precision": "float32", "device": "cpu", "out": str(tmp_path)}
    mapping.update(overrides)
    return config_from_mapping(mapping)


class _NotYet:
    """Stands for a CUDA event: the values count as pending until read."""

    def synchronize(self) -> None:
        pass


@pytest.fixture
def deferred(monkeypatch):
    real = step_values.StepValues.of.__func__

    def of(cls, *args, **kwargs):
        values = real(cls, *args, **kwargs)
        values.ready = _NotYet()
        return values

    monkeypatch.setattr(step_values.StepValues, "of", classmethod(of))


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_values_read_a_step_late_keep_every_record_in_order(tmp_path, deferred):
    result = Trainer(tiny(tmp_path)).run()
    assert result.status == "completed", result.message
    order = [(r["event"], r["step"]) for r in _records(result.run_dir) if r["event"] in ("step", "probe")]
    assert order == [("probe", 0), ("step", 1), ("step", 2), ("step", 3), ("probe", 3), ("step", 4), ("step", 5), ("step", 6),
                     ("probe", 6)]
    steps = [r for r in _records(result.run_dir) if r["event"] == "step"]
    assert all(math.isfinite(r["loss"]) and "contrastive_acc" in r["metrics"] for r in steps)


def test_a_loss_that_diverges_while_read_late_leaves_only_a_good_checkpoint(tmp_path, deferred, monkeypatch):
    monkeypatch.setattr(trainer_module, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint falls due before every step
    result = Trainer(tiny(tmp_path, optim={"optimizer": "sgd", "lr": 1e12}, budget={"steps": 30})).run()
    assert result.status.startswith("diverged at step"), result.status
    assert "optim.lr" in result.message and "last good checkpoint is kept" in result.message
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] <= int(result.status.rsplit(" ", 1)[1])
    assert all(torch.isfinite(v).all() for v in ckpt["objective"].values() if v.dtype.is_floating_point)
    assert _records(result.run_dir)[-1]["event"] == "failed"


def test_device_images_on_the_cpu_are_the_set_indexed():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(20)
    placed = DeviceImages(images, labels, torch.device("cpu"))
    idx = torch.tensor([3, 1, 7])
    got, got_labels = placed.batch(idx)
    assert not placed.on_device and torch.equal(got, images[idx]) and torch.equal(got_labels, labels[idx])


@cuda
def test_device_images_live_on_the_gpu_when_they_fit():
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    placed = DeviceImages(images, torch.arange(20), torch.device("cuda"))
    idx = torch.tensor([3, 1, 7])
    got, labels = placed.batch(idx)
    assert placed.on_device and got.is_cuda and torch.equal(got.cpu(), images[idx]) and labels.tolist() == [3, 1, 7]


@cuda
def test_a_cuda_run_reads_its_values_late_and_completes(tmp_path):
    result = Trainer(tiny(tmp_path, device="cuda", precision="auto")).run()
    assert result.status == "completed", result.message
    assert [r["step"] for r in _records(result.run_dir) if r["event"] == "step"] == [1, 2, 3, 4, 5, 6]


def test_the_dataloader_side_of_the_gpu_benchmark_runs_on_the_cpu():
    from ssl_studio.benchmarks.gpu import bench_gpu

    r = bench_gpu(batch_size=8, backbone="convnet", seconds=0.2, rounds=1, workers=1, device="cpu", sides=("dataloader",), width=8)
    assert r["best"]["dataloader"]["images_per_s"] > 0 and r["best"]["dataloader"]["steps"] >= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip sentence is for machines without CUDA")
def test_the_gpu_benchmark_without_cuda_is_one_sentence():
    from ssl_studio.benchmarks.gpu import bench_gpu, gpu_table

    lines = gpu_table(bench_gpu())
    assert any("No CUDA device here" in line for line in lines)


@pytest.mark.distributed
def test_the_data_parallel_cpu_benchmark_gives_a_ratio():
    from ssl_studio.benchmarks.distributed import bench_distributed, distributed_table

    r = bench_distributed(batch_size=16, seconds=0.2, rounds=1, timeout=240)
    assert r["one_process"]["world_size"] == 1 and r["two_processes"]["world_size"] == 2
    assert r["two_processes"]["threads"] == 1 and r["one_process"]["threads"] == 2
    assert r["ratio"] > 0 and any("ratio" in line for line in distributed_table(r))
