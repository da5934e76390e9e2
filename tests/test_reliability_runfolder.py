"""Damaged run folders (issue 22, items 3 and 6): every file truncated, zeroed, garbage, missing or a folder;
metrics lines that are not JSON objects; two runs claiming one folder; a killed run told from a live one.

Each case asserts the outcome: the run is still listed, one sentence names the damaged file, reading and
replaying it never raises, and nothing written before is lost.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from run_damage import DAMAGES, FILES, SPECIALS, copy_run, damage, made_run, put_special, tiny_config  # noqa: F401 - made_run is a fixture
from ssl_studio.engine.run_lock import RunLock, run_is_live
from ssl_studio.engine.run_model import list_runs, summarize_run
from ssl_studio.engine.runs import RunFolder, new_run_dir, read_metrics, record_to_event, replay_events, scan_metrics
from ssl_studio.engine.trainer import Trainer

pytestmark = pytest.mark.reliability


def one_sentence(text: str) -> bool:
    return text.endswith(".") and "\n" not in text and "Traceback" not in text


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", list(FILES))
def test_damaged_file_is_listed_with_one_sentence(made_run, tmp_path, name, how):
    run = copy_run(made_run, tmp_path, "run")
    damage(run, name, how)
    (summary,) = list_runs(tmp_path)
    assert summary.path == run
    if name == "report.json" and how == "missing":
        assert summary.problem is None  # a run not evaluated yet is not damaged
    else:
        assert summary.problem is not None and FILES[name] in summary.problem, summary.problem
        assert one_sentence(summary.problem), summary.problem
    events, _ = replay_events(run)  # never raises, whatever the damage
    if name != "metrics.jsonl":
        assert summary.status == "completed" and summary.step == 4 and len(events) > 4


def test_nul_bytes_and_lines_that_are_not_objects_are_skipped_and_counted(tmp_path):
    good = {"event": "step", "step": 1, "epoch": 0.1, "loss": 2.0, "lr": 0.1, "images_per_s": 10.0, "elapsed_s": 1.0,
            "progress": 0.5, "eta_s": 1.0}
    lines = [b"\x00" * 40 + b'{"event": "step"}', json.dumps(good).encode(), b"[1, 2, 3]", b'"just a string"', b"42",
             b"\xff\xfe not utf-8", b"{ half an object"]
    (tmp_path / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    chunk = scan_metrics(tmp_path)
    assert chunk.records == [good] and chunk.skipped == 6 and chunk.tail == 0
    assert read_metrics(tmp_path)[0] == [good]
    events, _ = replay_events(tmp_path)
    assert len(events) == 1 and events[0].loss == 2.0


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"event":"step","step":1}\n{"event":"step","st', encoding="utf-8")
    folder = RunFolder(tmp_path)
    folder.append({"event": "failed", "step": 1, "status": "failed", "message": "x"})
    folder.close()
    chunk = scan_metrics(tmp_path)
    assert [r["event"] for r in chunk.records] == ["step", "failed"] and chunk.skipped == 1


def test_lines_whose_values_do_not_fit_the_event_are_dropped_not_raised(tmp_path):
    assert record_to_event({"event": "step", "step": "seven", "epoch": 0, "loss": 1, "lr": 1, "images_per_s": 1,
                            "elapsed_s": 1, "progress": 0, "eta_s": None}) is None
    assert record_to_event({"event": ["step"]}) is None
    assert record_to_event([1, 2]) is None  # type: ignore[arg-type]
    # a snapshot named outside the run folder is not read
    outside = tmp_path / "outside.npz"
    outside.write_bytes(b"PK")
    run = tmp_path / "run"
    run.mkdir()
    ev = record_to_event({"event": "visuals", "step": 1, "kind": "x", "info": {}, "snapshot": "../outside.npz"},
                         RunFolder(run, create=False))
    assert ev is not None and ev.arrays == {}


def test_two_runs_started_in_the_same_second_get_separate_folders(tmp_path, monkeypatch):
    real = time.strftime
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20240101-000000" if fmt == "%Y%m%d-%H%M%S" else real(fmt, *a))
    cfg = tiny_config(tmp_path)
    barrier = threading.Barrier(8)
    made, errors = [], []

    def start(i):
        try:
            barrier.wait()
            path = new_run_dir(cfg)
            folder = RunFolder(path)
            folder.append({"event": "started", "who": i})
            folder.close()
            made.append(path)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(made)) == 8
    assert sorted(p.name for p in made)[0] == "20240101-000000-simclr-shapes"
    for path in made:
        (record,) = read_metrics(path)[0]  # each folder holds exactly its own run's record
        assert record["event"] == "started"
    assert sorted(read_metrics(p)[0][0]["who"] for p in made) == list(range(8))


def test_a_run_nobody_holds_is_interrupted(made_run, tmp_path):
    run = copy_run(made_run, tmp_path, "run")
    records, _ = read_metrics(run)
    kept = [r for r in records if r["event"] not in ("finished", "evaluated")]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    lock = RunLock(run).acquire()
    try:
        assert run_is_live(run) and summarize_run(run).status == "running"
    finally:
        lock.release()
    assert not run_is_live(run)
    assert summarize_run(run).status == "interrupted"


def test_a_second_process_cannot_train_a_held_run(made_run, tmp_path):
    run = copy_run(made_run, tmp_path, "run")
    lock = RunLock(run).acquire()
    try:
        result = Trainer(RunFolder(run, create=False).read_config(), run_dir=run, resume=True).run()
    finally:
        lock.release()
    assert result.status == "failed" and "being trained by another process" in result.message and str(run) in result.message
    assert (run / "checkpoints" / "last.pt").read_bytes() == (made_run / "checkpoints" / "last.pt").read_bytes()


# -- issue 22, second pass: what stands under a file's name may not be a file at all ---------------------------------

def finishes_within(seconds: float, fn):
    """``fn()``'s result, failing (not hanging the suite) if it has not returned within ``seconds``: a read of a
    named pipe waits for a writer forever, and one of /dev/zero never ends."""
    box: dict = {}

    def call():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still reading after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.mark.parametrize("what", SPECIALS)
@pytest.mark.parametrize("name", list(FILES))
def test_a_pipe_or_device_in_place_of_a_file_is_listed_without_waiting(made_run, tmp_path, name, what):
    """The runs browser (and so the window) once waited forever on a named pipe called metrics.jsonl, config.toml or
    report.json, and read /dev/zero until memory ran out; now the run is listed with one sentence naming the file."""
    run = copy_run(made_run, tmp_path, "run")
    put_special(run / name, what)
    (summary,) = finishes_within(20, lambda: list_runs(tmp_path))
    assert summary.problem is not None and FILES[name] in summary.problem and one_sentence(summary.problem), summary.problem
    if name != "snapshots":
        assert ("named pipe" if what == "fifo" else "a device") in summary.problem
    events, _ = finishes_within(20, lambda: replay_events(run))
    assert (len(events) == 0) == (name == "metrics.jsonl")


@pytest.mark.parametrize("what", ["fifo", "dev-zero", "link-out"])
def test_records_are_never_appended_through_a_pipe_a_device_or_a_link(tmp_path, what):
    """A resumed run in such a folder would have blocked (a pipe), lost its records (a device), or appended them to
    whatever file the link names; now the write is refused in one sentence and the other file is untouched."""
    import os

    from ssl_studio.engine.run_writes import RunWriteError

    folder = RunFolder(tmp_path / "run")
    victim = tmp_path / "someone-elses.txt"
    victim.write_text("keep me", encoding="utf-8")
    {"fifo": lambda p: os.mkfifo(p), "dev-zero": lambda p: os.symlink("/dev/zero", p),
     "link-out": lambda p: os.symlink(victim, p)}[what](folder.metrics_path)
    with pytest.raises(RunWriteError) as caught:
        finishes_within(20, lambda: folder.append({"event": "step", "step": 1}))
    assert "metrics.jsonl" in caught.value.message and "not a file" in caught.value.message
    assert one_sentence(caught.value.message) and victim.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("what", ["fifo", "link-out"])
def test_a_stale_temporary_file_is_never_written_through(tmp_path, what):
    """A checkpoint's leftover ``last.pt.tmp`` that is a link (or a pipe) once made the next save overwrite the file
    it names (or wait forever); the save now replaces it."""
    import os

    import torch

    folder = RunFolder(tmp_path / "run")
    victim = tmp_path / "someone-elses.txt"
    victim.write_text("keep me", encoding="utf-8")
    tmp = folder.checkpoint_path.with_suffix(".pt.tmp")
    os.mkfifo(tmp) if what == "fifo" else os.symlink(victim, tmp)
    finishes_within(20, lambda: folder.save_checkpoint({"step": 1, "objective": {"w": torch.ones(2)}}))
    assert victim.read_text(encoding="utf-8") == "keep me" and not os.path.lexists(tmp)
    assert torch.load(folder.checkpoint_path, weights_only=True)["step"] == 1


@pytest.mark.parametrize("what", ["folder", "fifo", "link-out"])
def test_a_lock_that_is_not_a_file_refuses_the_resume_and_changes_nothing(made_run, tmp_path, what):
    """A ``.lock`` folder once ended the resume as a failed run (exit 1) and recorded the completed run as failed; a
    ``.lock`` link made the lock write its JSON into the file it names."""
    import os

    run = copy_run(made_run, tmp_path, "run")
    victim = tmp_path / "someone-elses.txt"
    victim.write_text("keep me", encoding="utf-8")
    lock = run / ".lock"
    if lock.exists():
        lock.unlink()
    {"folder": lambda p: p.mkdir(), "fifo": lambda p: os.mkfifo(p), "link-out": lambda p: os.symlink(victim, p)}[what](lock)
    metrics = (run / "metrics.jsonl").read_bytes()
    result = finishes_within(60, lambda: Trainer(RunFolder(run, create=False).read_config(), run_dir=run, resume=True).run())
    assert result.status == "failed" and str(lock) in result.message and "not a file" in result.message, result.message
    assert one_sentence(result.message)
    assert (run / "metrics.jsonl").read_bytes() == metrics and victim.read_text(encoding="utf-8") == "keep me"
    assert summarize_run(run).status == "completed"
    assert not run_is_live(run)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_report_holding_nan_or_infinity_is_damaged_not_ranked(made_run, tmp_path, capsys, number):
    """``compare`` once ranked a hand-edited ``"k20": NaN`` (or 1e400, read as inf) first; the lab's writers store
    NaN as null, so such a report is named as damaged and its numbers are never shown as results."""
    from ssl_studio.cli import main
    from ssl_studio.engine.run_model import RunModel

    run = copy_run(made_run, tmp_path, "run")
    (run / "report.json").write_text('{"knn": {"k20": %s, "k5": 0.5}}' % number, encoding="utf-8")
    (summary,) = list_runs(tmp_path)
    assert "report.json is damaged" in summary.problem and one_sentence(summary.problem), summary.problem
    assert RunModel(run).report() == {}
    code = main(["compare", str(run)])
    out = capsys.readouterr()
    assert code == 2 and "nan" not in out.out.lower() and "inf" not in out.out.lower(), out
