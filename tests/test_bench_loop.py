"""``ssl-studio bench``'s loop part: a real Trainer run, its wall time split into the step, host work, writing, probes, checkpoints."""

from __future__ import annotations

import pytest

from ssl_studio.benchmarks.loop import PARTS, bench_loop, loop_table


def test_a_tiny_run_reports_every_part_with_shares_that_add_up() -> None:
    r = bench_loop(steps=3, batch_size=8, probe_size=32, num_images=120)
    assert r["steps"] == 3 and r["batch_size"] == 8 and r["images_per_s"] > 0
    assert set(r["shares"]) == set(PARTS) and sum(r["shares"].values()) == pytest.approx(1.0)
    assert all(r["shares"][p] >= 0 for p in PARTS)
    for part in ("views", "step", "host", "writing", "probes", "checkpoints"):  # each was really timed
        assert r["per_step"][part] > 0, part
    assert r["probes"] >= 1 and r["checkpoints"] >= 2  # the step-0 probe; the first and the last checkpoint
    assert r["probe_s"] > 0 and r["checkpoint_s"] > 0
    table = "\n".join(loop_table([r, r], labels=["before", "after"]))
    assert "| before | 3 |" in table and "| after | 3 |" in table and "probes" in table
