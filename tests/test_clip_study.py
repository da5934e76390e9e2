"""The CLIP study end to end on a tiny budget: three runs, seen/unseen scores, table, figure."""

import csv
import json

import pytest
import torch

from ssl_studio.params import ConfigError
from ssl_studio.studies.clip import METHODS, run_clip_study


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"data.num_images": 300, "model.width": 8, "batch_size": 32, "probe.every": 0, "probe.size": 32, "probe.visuals_every": 0,
        "precision": "float32"}


def test_clip_study_end_to_end(tmp_path):
    lines = []
    study = run_clip_study(out=tmp_path, steps=3, held_out=["red-triangle", "blue-circle"], overrides=TINY, log=lines.append)
    assert study.name.endswith("-clip")
    for name in ("table.md", "table.csv", "study.json", "figure.png"):
        assert (study / name).is_file(), name
    payload = json.loads((study / "study.json").read_text())
    rows = {r["method"]: r for r in payload["rows"]}
    assert list(rows) == list(METHODS) and payload["held_out"] == ["red-triangle", "blue-circle"]
    assert all(r["status"] == "completed" and r["steps"] == 3 for r in rows.values())
    for m in ("clip", "siglip"):
        r = rows[m]
        assert 0 <= r["zs_top1"] <= 1 and r["zs_unseen"] is not None and r["zs_seen"] is not None
        assert r["i2t_r5"] is not None and r["t2i_r1"] is not None and r["clf_top1"] is None
        assert r["lin_unseen"] is not None
    sup = rows["supervised"]
    assert sup["zs_top1"] is None and sup["clf_top1"] is not None and sup["clf_unseen"] is not None
    table = (study / "table.md").read_text()
    assert "zero-shot unseen" in table and "red-triangle" in table
    with open(study / "table.csv", newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + len(METHODS)
    assert any("scoring seen and unseen" in line for line in lines)


def test_clip_study_refuses_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="minutes-per-run"):
        run_clip_study(out=tmp_path, minutes_per_run=0)
    with pytest.raises(ConfigError, match="only the shapes source"):
        run_clip_study(data="digits", out=tmp_path, steps=2, held_out=["red-triangle"])
    with pytest.raises(ConfigError, match="magenta"):
        run_clip_study(out=tmp_path, steps=2, held_out=["magenta-triangle"])
    assert not any(tmp_path.iterdir())  # nothing was created
