"""``ssl-studio bench``'s methods part: each method's own training step, timed by part, side by side."""

from __future__ import annotations

import pytest

from ssl_studio.benchmarks.methods import PARTS, bench_methods, methods_table


def test_each_method_gets_a_rate_and_shares_that_add_up() -> None:
    rows = bench_methods((("simclr", "convnet"), ("ijepa", "vit")), batch_size=8, seconds=0.01, warmup=0)
    assert [r["method"] for r in rows] == ["simclr", "ijepa"]
    for r in rows:
        assert r["steps"] >= 2 and r["images_per_s"] > 0 and r["batch_size"] == 8
        assert sum(r["shares"].values()) == pytest.approx(1.0)
        assert all(r["shares"][p] >= 0 for p in PARTS) and r["shares"]["forward"] > 0
    assert "ViT, embed 96" in rows[1]["backbone"]
    table = "\n".join(methods_table(rows))
    assert "| simclr | convnet | 8 |" in table and "| ijepa | ViT" in table
