"""The run queue and the collapse study, end to end on a tiny budget."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.events import Finished, Started, Step
from ssl_studio.engine.queue import RunQueue
from ssl_studio.params import ConfigError
from ssl_studio.studies.collapse import COLUMNS, StudyRow, _observe, collapse_pairs, run_collapse_study

TINY = {"data.num_images": 256, "batch_size": 32, "model.width": 16, "probe.size": 64, "probe.every": 0,
        "precision": "float32"}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(tmp_path, name="simsiam", steps=2, **extra):
    return config_from_mapping({"objective": {"name": name}, "data": {"source": "shapes", "num_images": 256}, "model": {"width": 16},
                                "batch_size": 32, "budget": {"steps": steps}, "probe": {"every": 0, "size": 64},
                                "precision": "float32", "out": str(tmp_path), **extra})


def test_queue_runs_in_order_with_indices_and_shares_data(tmp_path):
    seen = []
    q = RunQueue([tiny_cfg(tmp_path, "simsiam"), tiny_cfg(tmp_path, "byol")], callback=lambda i, e: seen.append((i, e)))
    q.start()
    assert q.join(timeout=300)
    assert [r.status for r in q.results] == ["completed", "completed"]
    assert len({r.run_dir for r in q.results}) == 2 and all((r.run_dir / "config.toml").exists() for r in q.results)
    starts = [(i, e.objective) for i, e in seen if isinstance(e, Started)]
    assert starts == [(0, "simsiam"), (1, "byol")]
    indices = [i for i, _ in seen]
    assert indices == sorted(indices)  # run 1's events only after run 0's
    assert sum(isinstance(e, Finished) for _, e in seen) == 2
    assert len(q._data) == 1  # both runs read the same images, loaded once


def test_queue_stop_ends_the_current_run_and_the_queue(tmp_path):
    control = RunControl()

    def on_event(i, e):
        if isinstance(e, Step) and e.step == 2:
            control.stop()

    q = RunQueue([tiny_cfg(tmp_path, steps=500), tiny_cfg(tmp_path, steps=500)], callback=on_event, control=control)
    results = q.run()
    assert len(results) == 1 and results[0].status == "stopped" and results[0].step == 2
    assert (results[0].run_dir / "checkpoints" / "last.pt").exists()


def test_queue_keeps_going_after_a_failed_run(tmp_path):
    bad = tiny_cfg(tmp_path)
    bad.data.source = "folder:/nonexistent/images"
    q = RunQueue([bad, tiny_cfg(tmp_path)])
    results = q.run()
    assert [r.status for r in results] == ["failed", "completed"]


def test_pairs_come_from_the_broken_presets():
    pairs = collapse_pairs()
    assert len(pairs) >= 10
    for healthy, broken in pairs:
        assert healthy.group == "healthy" and broken.group == "broken" and broken.twin == healthy.name
    names = [b.name for _, b in collapse_pairs(["simsiam"])]
    assert set(names) == {"simsiam-no-stopgrad", "simsiam-no-predictor"}
    with pytest.raises(ConfigError, match="unknown preset"):
        collapse_pairs(["no-such-preset"])


def test_observed_failure_rules():
    healthy = StudyRow("a", "simclr", "-", "healthy", "", "none", knn_k20=0.5, effective_rank=40.0, mean_cosine=0.3, feature_dim=128)
    collapsed = StudyRow("b", "simclr", "x", "broken", "a", "representational collapse", knn_k20=0.1, effective_rank=1.2,
                         mean_cosine=0.99, feature_dim=128)
    slower = StudyRow("c", "simclr", "x", "broken", "a", "slower learning", knn_k20=0.4, effective_rank=30.0, mean_cosine=0.4,
                      feature_dim=128)
    same = StudyRow("d", "simclr", "x", "broken", "a", "slower learning", knn_k20=0.49, effective_rank=30.0, mean_cosine=0.4,
                    feature_dim=128)
    assert _observe(healthy, None) == "none"
    assert _observe(collapsed, healthy) == "representational collapse"
    assert _observe(slower, healthy) == "slower learning"
    assert _observe(same, healthy) == "none"
    squashed = StudyRow("e", "byol", "x", "broken", "a", "representational collapse", knn_k20=0.1, effective_rank=3.0,
                        projector_rank=1.2, mean_cosine=0.6, feature_dim=128)
    assert _observe(squashed, healthy) == "representational collapse"  # the loss space lies on a line


def test_collapse_study_end_to_end(tmp_path):
    lines = []
    study = run_collapse_study(pairs=["simsiam-no-stopgrad", "vicreg-no-variance"], steps=2, out=tmp_path, overrides=TINY,
                               log=lines.append)
    assert study.parent == tmp_path and study.name.endswith("-collapse")
    for name in ("table.md", "table.csv", "figure.png", "study.json"):
        assert (study / name).exists(), name
    with open(study / "table.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["preset"] for r in rows] == ["simsiam", "simsiam-no-stopgrad", "vicreg", "vicreg-no-variance"]
    assert list(rows[0]) == list(COLUMNS)
    assert rows[1]["ablation"] == "no_stop_gradient" and rows[1]["expected failure"] == "representational collapse"
    for r in rows:
        assert r["status"] == "completed" and r["steps"] == "2"
        assert float(r["k-NN@20"]) >= 0 and float(r["effective rank"]) > 0
        assert r["observed failure"] in ("representational collapse", "dimensional collapse", "slower learning", "none")
        assert r["matched"] in ("yes", "no")
    md = (study / "table.md").read_text(encoding="utf-8")
    assert "| simsiam-no-stopgrad | simsiam | no_stop_gradient |" in md
    runs = sorted(p.name for p in (study / "runs").iterdir())
    assert len(runs) == 4 and all((study / "runs" / r / "metrics.jsonl").exists() for r in runs)
    with Image.open(study / "figure.png") as img:
        assert img.width > 600 and img.height > 200
    data = json.loads((study / "study.json").read_text(encoding="utf-8"))
    assert data["budget"] == {"steps": 2} and len(data["rows"]) == 4 and data["rows"][0]["spectrum"]
    assert any("4 runs" in line for line in lines)
    ref = data["reference"]  # the random backbone every healthy method must beat, on the same held-out images
    assert 0.0 <= ref["init_knn_k20"] <= 1.0 and 0.0 <= ref["pixels_knn_k20"] <= 1.0 and ref["chance"] == 0.1
    assert f"the backbone at initialisation reaches k-NN@20 {ref['init_knn_k20']:.3f}" in md
