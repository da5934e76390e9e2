"""The Qt-free run model: one set of rules for what a run folder's records mean (browser, CLI, compare)."""

from __future__ import annotations

import json
import subprocess
import sys

from ssl_studio.cli import completed_step
from ssl_studio.config import RunConfig
from ssl_studio.engine.compare import compare_runs
from ssl_studio.engine.run_model import RunModel, list_runs, summarize_run
from ssl_studio.engine.runs import RunFolder


def _write(path, records, tail=""):
    with open(path / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def _step(n, **metrics):
    return {"event": "step", "step": n, "loss": 5.0 - 0.1 * n, "metrics": metrics}


def test_model_and_summary_read_the_same_folder_the_same_way(tmp_path):
    (tmp_path / "not-a-run").mkdir()
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    _write(tmp_path, [{"event": "started", "time": 3.0, "objective": "vicreg", "data": "shapes", "steps_per_epoch": 4},
                      _step(1, inv=1.0), _step(2, inv=0.5),
                      {"event": "probe", "step": 2, "knn_acc": 0.4, "effective_rank": 7.5},
                      {"event": "finished", "step": 2, "status": "completed", "summary": {"train_seconds": 1.0}}])
    model = RunModel(tmp_path)
    assert model.update()
    summary = summarize_run(tmp_path)
    assert (summary.objective, summary.data, summary.status, summary.step) == ("vicreg", "shapes", "completed", 2)
    assert (model.objective, model.status, model.step, model.knn, model.rank) == ("vicreg", "completed", 2, 0.4, 7.5)
    assert (summary.knn_acc, summary.effective_rank, summary.started) == (0.4, 7.5, 3.0)
    assert [s.path for s in list_runs(tmp_path.parent)] == [tmp_path]
    assert model.steps_per_epoch == 4 and model.last_end["event"] == "finished"


def test_step_metrics_become_curves_and_are_read_incrementally(tmp_path):
    _write(tmp_path, [{"event": "started", "time": 1.0}, _step(1, inv=1.0, var=0.2, note="text"), _step(2, inv=0.8)])
    model = RunModel(tmp_path)
    model.update()
    assert sorted(model.metric_curves) == ["inv", "var"]  # a string is not a curve
    xs, ys = model.metric_curves["inv"]
    assert list(xs.view) == [1, 2] and list(ys.view) == [1.0, 0.8]
    assert not model.update()  # nothing appended: nothing changed
    _write(tmp_path, [_step(3, inv=0.7)])
    assert model.update()
    assert list(model.metric_curves["inv"][1].view) == [1.0, 0.8, 0.7] and model.records_seen == 4


def test_a_resume_rewinds_the_step_metric_curves_too(tmp_path):
    lines = [{"event": "started", "time": 1.0}] + [_step(n, inv=float(n)) for n in range(1, 6)]
    lines += [{"event": "started", "time": 2.0, "resumed_from_step": 3}, _step(4, inv=40.0)]
    _write(tmp_path, lines)
    model = RunModel(tmp_path)
    model.update()
    xs, ys = model.metric_curves["inv"]
    assert list(xs.view) == [1, 2, 3, 4] and list(ys.view) == [1.0, 2.0, 3.0, 40.0]


def test_completion_for_resume_follows_the_last_start_or_end(tmp_path):
    cfg = RunConfig()
    cfg.budget.steps = 2
    _write(tmp_path, [{"event": "started", "time": 1.0}, _step(1), _step(2),
                      {"event": "finished", "step": 2, "status": "completed", "summary": {}}])
    assert completed_step(tmp_path, cfg) == 2
    _write(tmp_path, [{"event": "started", "time": 2.0, "resumed_from_step": 2}])  # resumed after a budget raise
    assert completed_step(tmp_path, cfg) is None


def test_compare_reads_reports_through_the_model(tmp_path):
    for name, top1 in (("a", 0.5), ("b", 0.7)):
        run = tmp_path / name
        RunFolder(run).write_report("linear", {"top1": top1})
        assert RunModel(run).report()["linear"]["top1"] == top1
    comparison = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert comparison.scores["linear"] == [0.5, 0.7] and comparison.ranks["linear"] == [2, 1]


def test_the_run_model_needs_no_qt():
    code = "import sys, ssl_studio.engine.run_model, ssl_studio.engine.compare; print('PySide6' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
