"""``torchrun -m ssl_studio train`` end to end on this CPU: one run folder, written by rank 0 alone; resume; bad input.

Every launch is PyTorch's own ``torch.distributed.run`` (torchrun) with two gloo processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).parents[1]
TINY = ["--data", "shapes", "--batch-size", "16", "--set", "data.num_images=128", "--set", "model.width=16",
        "--set", "probe.size=32", "--set", "probe.every=2", "--precision", "float32", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ssl_studio", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {[p.name for p in runs]}"
    return runs[0]


def test_two_processes_write_one_complete_run_folder_and_resume_it(tmp_path):
    done = torchrun(["train", *TINY, "--steps", "4", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    run = _only_run(tmp_path)
    for name in ("config.toml", "metrics.jsonl", "report.json", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    records = _records(run)
    events = [r["event"] for r in records]
    assert events.count("started") == 1 and events.count("finished") == 1 and events[-1] == "finished"
    started = records[0]
    assert (started["world_size"], started["backend"], started["batch_size"]) == (2, "gloo", 16)
    assert len(started["devices"]) == 2
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3, 4]  # no rank's record twice
    assert [r["step"] for r in records if r["event"] == "probe"] == [0, 2, 4]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["view_generators"]) == 2 and ckpt["step"] == 4
    assert not torch.equal(ckpt["view_generators"][0], ckpt["view_generators"][1])  # views are drawn per rank
    assert done.stderr.count("completed after 4 steps") == 1  # rank 0 alone prints

    # resume under torchrun with a longer budget: the same folder goes on from step 4
    config = (run / "config.toml").read_text(encoding="utf-8")
    (run / "config.toml").write_text(config.replace("steps = 4", "steps = 6"), encoding="utf-8")
    again = torchrun(["resume", str(run), "--quiet"])
    assert again.returncode == 0, again.stderr[-3000:]
    records = _records(run)
    starts = [r for r in records if r["event"] == "started"]
    assert [s["resumed_from_step"] for s in starts] == [0, 4]
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3, 4, 5, 6]


def test_a_batch_that_does_not_split_over_the_processes_is_one_sentence(tmp_path):
    done = torchrun(["train", *TINY, "--batch-size", "15", "--steps", "2", "--out", str(tmp_path)])
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("ssl-studio:")]
    assert len(lines) == 1, done.stderr[-3000:]  # rank 0 alone says it
    assert "batch_size" in lines[0] and "15" in lines[0] and "2 processes" in lines[0]
