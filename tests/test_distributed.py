"""Two gloo processes compute what one process computes, for every objective (issue 23, item 3).

The two ranks are started once for the whole file (a subprocess pair on 127.0.0.1) and run every case
of ``distributed_equivalence``; this process computes the one-process reference on the concatenated
batches meanwhile.  Per case: the step-1 loss agrees to a relative error under 1e-5, the step-1
gradients (DDP-averaged) to 1e-4 of their norm, and every parameter and buffer after 5 SGD steps to
1e-4, on both ranks (EMA teachers, queues and centres included: they must be the same on every rank).
BatchNorm is synchronised in the two-process runs of every case (see ``distributed_equivalence``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import distributed_equivalence as eq  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("one_thread")]

WORLD = 2
DEADLINE_S = 240.0
CASES = list(eq.cases())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Start the two ranks, compute the references while they run, and wait for both (with a deadline)."""
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    port = _free_port()
    script = str(Path(eq.__file__))
    procs = [subprocess.Popen([sys.executable, script, str(r), str(WORLD), str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    try:
        torch.manual_seed(0)
        references = {case: eq.run(case) for case in CASES}
        deadline = time.monotonic() + DEADLINE_S
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        logs = [p.communicate()[0] for p in procs]
    codes = [p.returncode for p in procs]
    return references, out, codes, logs


def _load(out: Path, case: str, rank: int, codes, logs) -> dict:
    path = out / f"{case}-rank{rank}.pt"
    if not path.exists():
        pytest.fail(f"rank {rank} wrote no result for {case} (exit codes {codes}); its output ends:\n{logs[rank][-3000:]}")
    result = torch.load(path, weights_only=True)
    if "error" in result:
        pytest.fail(f"rank {rank} failed on {case}: {result['error']}")
    return result


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    """Relative to the tensor's norm; values that stay near zero (a bias before a BatchNorm gets no gradient in
    exact arithmetic, only rounding noise) are held to 1e-6 per element instead."""
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)
    return float((a.double() - b.double()).norm()) <= rel * float(b.double().norm()) + 1e-6 * b.numel() ** 0.5


@pytest.mark.parametrize("case", CASES)
def test_two_processes_equal_one(two_ranks, case):
    references, out, codes, logs = two_ranks
    ref = references[case]
    for rank in range(WORLD):
        got = _load(out, case, rank, codes, logs)
        loss_err = abs(float(got["loss"]) - float(ref["loss"])) / max(abs(float(ref["loss"])), 1e-12)
        assert loss_err < 1e-5, f"{case}: rank {rank}'s step-1 loss {float(got['loss'])!r} vs one process {float(ref['loss'])!r}"
        names = set(ref["grads"]) | set(got["grads"])
        for name in sorted(names):  # a gradient DDP left at None where one process has none is the same
            g, r = got["grads"].get(name), ref["grads"].get(name)
            g = torch.zeros_like(r) if g is None else g
            r = torch.zeros_like(g) if r is None else r
            assert _close(g, r, 1e-4), f"{case}: rank {rank}'s step-1 gradient of {name} differs from one process's"
        assert set(got["state"]) == set(ref["state"])
        for name, value in ref["state"].items():
            assert _close(got["state"][name], value, 1e-4), f"{case}: rank {rank}'s {name} after {eq.STEPS} steps differs from one process's"

