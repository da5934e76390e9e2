"""Evaluating runs from the runs browser: the background job, the protocol columns, ranks,
agreement, cancel, close while evaluating and a readable refusal for unlabelled data."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QAbstractButton, QComboBox, QDialog, QDoubleSpinBox, QMainWindow, QTableWidget, QWidget

from ssl_studio.cli import main
from ssl_studio.engine import evaluate
from ssl_studio.gui.evaluation import EvaluationJob
from ssl_studio.gui.panels.runs_browser import EvaluateDialog, RunsBrowser

TINY = ["--steps", "3", "--batch-size", "16", "--set", "data.num_images=160", "--set", "model.width=8", "--set", "probe.size=32",
        "--set", "probe.every=0", "--precision", "float32", "--device", "cpu", "--quiet"]
WAIT_MS = 300_000  # two cores shared with other suites: generous, but the waits end as soon as the job does


@pytest.fixture(scope="module")
def made_runs(tmp_path_factory) -> list[Path]:
    """Two tiny finished runs (trained once: training is the slow part)."""
    root = tmp_path_factory.mktemp("evalruns")
    assert main(["train", "--objective", "simclr", "--data", "shapes", "--name", "a", "--seed", "0", *TINY, "--out", str(root)]) == 0
    assert main(["train", "--objective", "supervised", "--data", "shapes", "--name", "b", "--seed", "1", *TINY, "--out", str(root)]) == 0
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(runs) == 2
    return runs


@pytest.fixture(scope="module")
def unlabelled_run(tmp_path_factory) -> Path:
    """A run trained on a flat folder of PNGs: no labels, so no protocol can score it."""
    root = tmp_path_factory.mktemp("flat")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(images / f"img{i:02d}.png")
    out = root / "runs"
    assert main(["train", "--objective", "simclr", "--data", f"folder:{images}", "--name", "flat", *TINY, "--out", str(out)]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture
def runs_root(made_runs, tmp_path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    for p in made_runs:
        shutil.copytree(p, root / p.name)
    return root


@pytest.fixture
def browser(qtbot, runs_root):
    b = RunsBrowser(runs_root)
    qtbot.addWidget(b)
    b.resize(1000, 700)
    b.show()
    yield b
    b.shutdown()


@pytest.fixture
def fast_linear(monkeypatch):
    """One weight decay instead of a sweep of five: the same protocol, a sixth of the L-BFGS fits."""
    monkeypatch.setattr(evaluate, "linear_protocol", functools.partial(evaluate.linear_protocol, weight_decays=(1e-4,)))


def choose(monkeypatch, protocols, epochs=None, seen=None):
    """Answer the Evaluate dialog: record its defaults, tick ``protocols``, press Evaluate."""

    def fake_exec(dialog):
        if seen is not None:
            seen.append(dialog.protocols())
        for name, check in dialog.checks.items():
            check.setChecked(name in protocols)
        if epochs is not None:
            dialog.epochs.setValue(epochs)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(EvaluateDialog, "exec", fake_exec)


def report(path: Path) -> dict:
    f = path / "report.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}


def cell(table: QTableWidget, row: int, col: int) -> str:
    item = table.item(row, col)
    return item.text() if item is not None else ""


def forget_reports(browser) -> None:
    """The trainer's own k-NN and linear results go: what is in report.json afterwards is the GUI's doing."""
    for t in browser.runs():
        (t.path / "report.json").unlink(missing_ok=True)
    browser.refresh()


def columns(table: QTableWidget) -> list[str]:
    return [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]


def test_evaluate_two_runs_then_protocol_columns_ranks_agreement_and_exports(browser, qtbot, monkeypatch, fast_linear, tmp_path):
    paths = [t.path for t in browser.runs()]
    forget_reports(browser)
    browser.select_paths(paths)
    assert browser.evaluate_button.isEnabled()
    assert browser.protocol_table.columnCount() == 0 and "No evaluation results" in browser.protocol_note.text()
    seen: list = []
    choose(monkeypatch, ("knn", "linear"), seen=seen)
    formats: list[str] = []
    set_format = browser.evaluation_progress.setFormat
    monkeypatch.setattr(browser.evaluation_progress, "setFormat", lambda text: (formats.append(text), set_format(text)))

    browser.evaluate_button.click()
    assert seen == [("knn", "linear", "finetune")]  # the dialog's defaults
    assert browser.evaluating and browser.evaluation_progress.isVisible() and browser.cancel_evaluation_button.isVisible()
    assert not browser.evaluate_button.isEnabled()  # one evaluation at a time
    qtbot.waitUntil(lambda: not browser.evaluating, timeout=WAIT_MS)

    assert any("k-NN" in f for f in formats) and any("linear probe" in f for f in formats)
    assert not browser.evaluation_progress.isVisible() and browser.evaluation_message.isVisible()
    assert browser.evaluation_message.text().count("Evaluated ") == 2, browser.evaluation_message.text()
    for p in paths:
        r = report(p)
        assert {"knn", "linear"} <= set(r) and "finetune" not in r
        assert 0.0 <= r["knn"]["k20"] <= 1.0 and 0.0 <= r["linear"]["top1"] <= 1.0
        assert (p / "report.md").read_text(encoding="utf-8").count("|") > 10
    col = {h: c for c, h in enumerate(columns(browser.table))}
    assert {cell(browser.table, r, col["Evaluated"]) for r in range(2)} == {"k-NN, linear"}

    # a column per protocol, a row per run, the scores from report.json
    table = browser.protocol_table
    assert columns(table) == ["k-NN@20", "linear"] and table.rowCount() == 2
    names = [table.verticalHeaderItem(r).text() for r in range(2)]
    assert sorted(names) == sorted(p.name for p in paths)
    for r, name in enumerate(names):
        rep = report(next(p for p in paths if p.name == name))
        assert cell(table, r, 0) == f"{rep['knn']['k20']:.3f}" and cell(table, r, 1) == f"{rep['linear']['top1']:.3f}"

    # agreement: one pair, a number (or "–" if a protocol ties both runs, which tiny runs can)
    cmp = browser.comparison_result
    assert browser.agreement_table.rowCount() == 1 and cell(browser.agreement_table, 0, 0) == "k-NN@20 vs linear"
    tau = cmp.agreement[("knn", "linear")]
    assert cell(browser.agreement_table, 0, 1) == ("–" if tau != tau else f"{tau:+.2f}")
    assert cell(browser.agreement_table, 0, 2) == "2"

    # rank view: the ranks compare_runs gives, 1 and 2 where the scores differ
    browser.rank_view.setChecked(True)
    for c, p in enumerate(("knn", "linear")):
        texts = [cell(table, r, c) for r in range(2)]
        assert texts == [str(x) for x in cmp.ranks[p]]
        assert sorted(texts) == (["1", "2"] if len(set(cmp.scores[p])) == 2 else ["1", "1"])
    browser.rank_view.setChecked(False)

    # exports carry the protocols
    browser.export_comparison_csv(tmp_path / "cmp.csv")
    browser.export_comparison_markdown(tmp_path / "cmp.md")
    csv_lines = (tmp_path / "cmp.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in csv_lines[1:5]] == ["k-NN@20", "k-NN@20 rank", "linear", "linear rank"]
    md = (tmp_path / "cmp.md").read_text(encoding="utf-8")
    assert "## Protocols" in md and "| k-NN@20 | linear |" in md and "(#1)" in md and "Kendall" in md and "## Results" in md


def test_protocol_table_on_known_reports(browser, qtbot):
    """Hand-written report.json sections (the folder is the contract): exact scores, ranks and tau."""
    a, b = sorted(t.path for t in browser.runs())
    for path, knn, linear, ft in ((a, 0.5, 0.6, 0.4), (b, 0.7, 0.4, None)):
        data = {"knn": {"k5": knn, "k20": knn}, "linear": {"top1": linear}}
        if ft is not None:
            data["finetune"] = {"top1": ft}
        (path / "report.json").write_text(json.dumps(data), encoding="utf-8")
    browser.refresh()  # report.json changed: noticed without a new metrics line
    browser.select_paths([a, b])
    table = browser.protocol_table
    assert columns(table) == ["k-NN@20", "linear", "fine-tune"]
    row = {table.verticalHeaderItem(r).text(): r for r in range(2)}
    assert [cell(table, row[a.name], c) for c in range(3)] == ["0.500", "0.600", "0.400"]
    assert [cell(table, row[b.name], c) for c in range(3)] == ["0.700", "0.400", "–"]
    assert table.item(row[b.name], 0).font().bold() and not table.item(row[a.name], 0).font().bold()
    browser.rank_view.setChecked(True)
    assert [cell(table, row[a.name], c) for c in range(3)] == ["2", "1", "1"]
    assert [cell(table, row[b.name], c) for c in range(3)] == ["1", "2", "–"]
    agreement = {cell(browser.agreement_table, r, 0): cell(browser.agreement_table, r, 1) for r in range(browser.agreement_table.rowCount())}
    assert agreement == {"k-NN@20 vs linear": "-1.00", "k-NN@20 vs fine-tune": "–", "linear vs fine-tune": "–"}

    browser.select_paths([a])
    assert browser.agreement_table.rowCount() == 3 and {cell(browser.agreement_table, r, 1) for r in range(3)} == {"–"}
    assert "two or more" in browser.protocol_note.text()


def test_cancel_during_finetune_writes_no_finetune(browser, qtbot, monkeypatch):
    path = browser.runs()[0].path
    forget_reports(browser)
    browser.select_paths([path])
    choose(monkeypatch, ("knn", "finetune"), epochs=200.0)  # 200 steps: minutes on a CPU if the cancel failed
    browser.evaluate_button.click()
    job = browser.evaluation_job
    assert isinstance(job, EvaluationJob) and job.protocols == ("knn", "finetune") and job.finetune_epochs == 200.0
    with qtbot.waitSignal(job.progress, timeout=WAIT_MS, check_params_cb=lambda p, f: p == "finetune"):
        pass
    assert "fine-tuning" in browser.evaluation_progress.format()
    browser.cancel_evaluation_button.click()
    qtbot.waitUntil(lambda: not browser.evaluating, timeout=WAIT_MS)
    assert job.outcome == "cancelled" and not job.running
    r = report(path)
    assert "knn" in r and "finetune" not in r  # what finished before the cancel is kept, nothing partial
    assert "Cancelled" in browser.evaluation_message.text()
    assert browser.evaluate_button.isEnabled()


def test_closing_the_window_while_evaluating_cancels_and_waits(qtbot, runs_root, monkeypatch):
    window = QMainWindow()
    browser = RunsBrowser(runs_root)
    window.setCentralWidget(browser)
    qtbot.addWidget(window)
    window.show()
    path = browser.runs()[0].path
    assert browser.start_evaluation([path], ("finetune",), finetune_epochs=200.0)
    job = browser.evaluation_job
    with qtbot.waitSignal(job.progress, timeout=WAIT_MS, check_params_cb=lambda p, f: p == "finetune"):
        pass
    assert not window.close()  # refused for now: the evaluation is cancelled first...
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)  # ...and the window closes by itself
    assert job.outcome == "cancelled" and not job.running
    assert "finetune" not in report(path)

    # shutdown() (the window's clean-up hook) cancels and waits too
    assert browser.start_evaluation([path], ("finetune",), finetune_epochs=200.0)
    job = browser.evaluation_job
    with qtbot.waitSignal(job.progress, timeout=WAIT_MS, check_params_cb=lambda p, f: p == "finetune"):
        pass
    browser.shutdown()
    assert job.done and not job.running and not browser.evaluating


def test_unlabelled_run_gives_a_readable_message(qtbot, unlabelled_run, monkeypatch):
    browser = RunsBrowser(unlabelled_run.parent)
    qtbot.addWidget(browser)
    browser.show()
    browser.select_paths([unlabelled_run])
    choose(monkeypatch, ("knn", "linear", "finetune"))
    browser.evaluate_button.click()
    qtbot.waitUntil(lambda: not browser.evaluating, timeout=WAIT_MS)
    text = browser.evaluation_message.text()
    assert browser.evaluation_message.isVisible()
    assert text.startswith(f"Could not evaluate {unlabelled_run.name}: ") and "has no labels" in text, text
    assert "Traceback" not in text and "\n" not in text
    assert report(unlabelled_run) == {}
    browser.dismiss_evaluation_button.click()
    assert not browser.evaluation_bar.isVisible()


def test_context_menu_dialog_and_named_controls(browser, qtbot, monkeypatch):
    browser.select_paths([browser.runs()[0].path])
    menu = browser.context_menu()
    actions = {a.objectName(): a for a in menu.actions() if a.objectName()}
    assert {"runsActionOpen", "runsActionEvaluate", "runsActionRerun", "runsActionDelete"} <= set(actions)
    assert actions["runsActionEvaluate"].isEnabled()
    monkeypatch.setattr(EvaluateDialog, "exec", lambda self: QDialog.DialogCode.Rejected)
    actions["runsActionEvaluate"].trigger()
    assert not browser.evaluating and browser.evaluation_job is None
    menu.close()

    dialog = EvaluateDialog(browser, ["a"], text_capable=False)
    assert dialog.protocols() == ("knn", "linear", "finetune")
    assert not dialog.checks["zeroshot"].isEnabled()
    for check in dialog.checks.values():
        check.setChecked(False)
    assert not dialog.findChild(QAbstractButton, "evaluateStart").isEnabled()  # nothing to do
    assert not dialog.epochs.isEnabled()
    dialog.checks["scratch"].setChecked(True)  # fine-tuning from scratch runs at the fine-tuning budget too
    assert dialog.epochs.isEnabled() and dialog.protocols() == ("scratch",)
    controls = [w for w in dialog.findChildren(QWidget) if isinstance(w, (QAbstractButton, QDoubleSpinBox, QComboBox))]
    assert len(controls) >= 8
    for widget in [dialog, *controls]:
        assert widget.objectName() and widget.accessibleName(), widget
    dialog.deleteLater()

    for name in ("evaluateButton", "evaluationProgress", "cancelEvaluationButton", "rankViewCheck", "agreementTable",
                 "protocolComparison", "evaluationMessage", "dismissEvaluationMessage", "evaluationBar"):
        widget = browser.findChild(QWidget, name)
        assert widget is not None and widget.accessibleName(), name
    for widget in browser.findChildren(QWidget):
        if type(widget).__name__ in ("QPushButton", "QCheckBox", "QProgressBar", "QTableWidget", "QComboBox"):
            assert widget.objectName() and widget.accessibleName(), widget
