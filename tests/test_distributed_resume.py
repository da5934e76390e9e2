"""Resume with another process count (issue 23, item 4): 2 processes -> 1 and 1 -> 2.

What carries over exactly: the model, the optimiser's state, the global sampler order and position, and the
draws every rank shares (masks, crops' random choices made by ``draw_generator``); the run then computes what
an uninterrupted run computes, to float rounding (the equivalence of N processes and one).  What does not:
each rank's view seed.  A rank that existed before resumes its own generator; a new rank starts from its fresh
per-rank seed, and a rank's share of the batch changes with the count, so the augmentations after the resume
are not those of an uninterrupted run.  The test therefore trains without augmentation (views are the images
themselves), where everything else must agree: the last checkpoint equals that of a run resumed with the
same count.  (A budget extended at the resume changes the schedule, so the reference is resumed likewise.)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import torchrun_jobs as jobs  # noqa: E402

from ssl_studio.cli import main  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("one_thread")]
ARGS = [*jobs.TINY, "--device", "cpu", "--ablate", "no_augmentation"]


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, [p.name for p in runs]
    return runs[0]


def _set_steps(run: Path, steps: int) -> None:
    config = run / "config.toml"
    text = config.read_text(encoding="utf-8")
    assert "steps = 2" in text
    config.write_text(text.replace("steps = 2", f"steps = {steps}"), encoding="utf-8")


def _torchrun(args: list[str]) -> None:
    job, _, err = jobs.run_to_end(args)
    assert job.returncode == 0, err[-3000:]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)
    return float((a.double() - b.double()).norm()) <= rel * float(b.double().norm()) + 1e-6 * b.numel() ** 0.5


def _assert_same_run(got: dict, want: dict, what: str) -> None:
    assert got["step"] == want["step"] == 4
    for key in ("epoch", "position"):
        assert got["sampler"][key] == want["sampler"][key], f"{what}: sampler {key}"
    assert torch.equal(got["sampler"]["order"], want["sampler"]["order"]), f"{what}: sampler order"
    assert torch.equal(got["sampler"]["generator"], want["sampler"]["generator"]), f"{what}: sampler generator"
    assert torch.equal(got["draw_generator"], want["draw_generator"]), f"{what}: the shared draws"
    for name, value in want["objective"].items():
        assert _close(got["objective"][name], value), f"{what}: {name} differs from an uninterrupted run's"
    for pid, state in want["optimizer"]["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                assert _close(got["optimizer"]["state"][pid][name], value), f"{what}: optimiser {name} of parameter {pid}"


def test_resume_with_another_process_count_goes_on_as_if_the_count_had_not_changed(tmp_path):
    # the reference: 2 steps in one process, resumed in one process for 2 more (the schedule is the same on
    # every side: it follows the budget, which the resumes extend from 2 to 4 steps)
    assert main(["train", *ARGS, "--steps", "2", "--out", str(tmp_path / "one-then-one")]) == 0
    reference = _only_run(tmp_path / "one-then-one")
    shutil.copytree(reference, tmp_path / "one-then-two" / reference.name)
    _set_steps(reference, 4)
    assert main(["resume", str(reference), "--quiet"]) == 0
    want = torch.load(reference / "checkpoints" / "last.pt", weights_only=True)

    # 2 processes for 2 steps, then 1 process for 2 more
    _torchrun(["train", *ARGS, "--steps", "2", "--out", str(tmp_path / "two-then-one")])
    run = _only_run(tmp_path / "two-then-one")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["world_size"] == 2
    _set_steps(run, 4)
    assert main(["resume", str(run), "--quiet"]) == 0
    got = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert got["world_size"] == 1
    _assert_same_run(got, want, "2 -> 1 processes")
    starts = [r for r in jobs.records(run) if r["event"] == "started"]
    assert [(s["world_size"], s["resumed_from_step"]) for s in starts] == [(2, 0), (1, 2)]
    assert [r["step"] for r in jobs.records(run) if r["event"] == "step"] == [1, 2, 3, 4]

    # 1 process for 2 steps (the reference's first half), then 2 processes for 2 more
    run = _only_run(tmp_path / "one-then-two")
    _set_steps(run, 4)
    _torchrun(["resume", str(run), "--quiet"])
    got = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert got["world_size"] == 2 and len(got["view_generators"]) == 2
    _assert_same_run(got, want, "1 -> 2 processes")
    starts = [r for r in jobs.records(run) if r["event"] == "started"]
    assert [(s["world_size"], s["resumed_from_step"]) for s in starts] == [(1, 0), (2, 2)]
