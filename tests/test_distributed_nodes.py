"""Two machines, simulated on loopback (issue 23, item 5): two torchrun "nodes" of one process each, joined by
torchrun's static rendezvous (node 0 hosts the store), write the same run folder as one node with two processes.

Same records in metrics.jsonl apart from clocks, throughput and device names; the same report.json; the same
tensors in the final checkpoint (bit for bit: the same ring all-reduce of two ranks runs on both sides).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import torchrun_jobs as jobs  # noqa: E402

pytestmark = pytest.mark.distributed
ARGS = [*jobs.TINY, "--steps", "3"]
CLOCKS = {"time", "images_per_s", "elapsed_s", "eta_s", "devices", "run_dir", "train_seconds", "resumed_from_time", "snapshot", "seconds"}


def _comparable(value):
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in CLOCKS}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, [p.name for p in runs]
    return runs[0]


def _tensors(value, prefix=""):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{prefix}/{i}")


def test_two_nodes_of_one_process_write_what_one_node_of_two_writes(tmp_path):
    one_node, two_nodes = tmp_path / "one-node", tmp_path / "two-nodes"
    port = str(jobs.free_port())
    node_jobs = [jobs.start(jobs.torchrun_command(
        ["--nnodes", "2", "--node-rank", str(node), "--nproc_per_node", "1", "--master-addr", "127.0.0.1",
         "--master-port", port],
        ["train", *ARGS, "--out", str(two_nodes)])) for node in (0, 1)]
    local_job = jobs.start(jobs.torchrun_command(jobs.local_launch(2), ["train", *ARGS, "--out", str(one_node)]))
    try:
        results = [jobs.finish(job, timeout=240) for job in (*node_jobs, local_job)]
    finally:
        for job in (*node_jobs, local_job):
            jobs.kill_group(job)
    for job, (_, err) in zip((*node_jobs, local_job), results):
        assert job.returncode == 0, err[-3000:]

    a, b = _only_run(one_node), _only_run(two_nodes)
    ra, rb = jobs.records(a), jobs.records(b)
    assert ra[0]["world_size"] == rb[0]["world_size"] == 2 and len(rb[0]["devices"]) == 2
    assert [_comparable(r) for r in rb] == [_comparable(r) for r in ra]
    import json

    for name in sorted(p.name for p in a.glob("report*.json")):
        assert _comparable(json.loads((b / name).read_text())) == _comparable(json.loads((a / name).read_text())), name
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    ta, tb = dict(_tensors(ca)), dict(_tensors(cb))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), f"{key} differs between two nodes and one node of two processes"
