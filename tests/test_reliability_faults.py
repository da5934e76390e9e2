"""Faults (issue 22, items 4, 6 and 8): a full, read-only or failing disk at every write, kill -9 then resume,
two processes on one runs folder.

Write faults are injected (``torch.save``, ``np.savez_compressed``, ``os.replace`` ... raising
``OSError(errno.ENOSPC)`` and friends); each case asserts one sentence naming the run folder and what to do,
exit status 1 from ``cli.main``, no temporary file left, and the previous checkpoint intact and loadable.
The process cases run ``python -m ssl_studio`` as a user would.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from run_damage import made_run  # noqa: F401 - a fixture
from ssl_studio.cli import main
from ssl_studio.engine import runs as runs_module
from ssl_studio.engine.run_model import summarize_run
from ssl_studio.engine.runs import RunFolder, scan_metrics
from ssl_studio.engine.trainer import Trainer

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
TINY = ["--objective", "simclr", "--data", "shapes", "--steps", "4", "--batch-size", "16", "--set", "data.num_images=128",
        "--set", "model.width=8", "--set", "probe.size=32", "--set", "probe.every=2", "--set", "probe.visuals_every=0",
        "--precision", "float32", "--device", "cpu", "--quiet"]


def disk_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def train(tmp_path, capsys) -> tuple[int, str, Path | None]:
    code = main(["train", "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    return code, err, runs[0] if runs else None


def assert_one_sentence_failure(code: int, err: str, *fragments: str) -> str:
    assert code == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ssl-studio: ") and last.endswith("."), err
    for fragment in fragments:
        assert fragment in last, last
    return last


def assert_no_temporary_files(run: Path) -> None:
    assert not [p for p in run.rglob("*") if ".tmp" in p.name], list(run.rglob("*"))


def fail_on_call(monkeypatch, owner, name: str, n: int, exc: OSError) -> None:
    """``owner.name`` works n - 1 times, then raises ``exc``."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, fake)


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, ("is full", "MB free")),
    (errno.EROFS, ("read-only",)),
    (errno.EACCES, ("Permission denied",)),
    (errno.EIO, ("failed (", "check the disk")),
])
def test_final_checkpoint_write_fails_keeps_the_previous_one(tmp_path, capsys, monkeypatch, code, words):
    fail_on_call(monkeypatch, torch, "save", 2, disk_error(code))  # the first checkpoint (step 0) is written; the final one fails
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, str(run), f"ssl-studio resume {run}", "checkpoints/last.pt", *words)
    assert_no_temporary_files(run)
    monkeypatch.undo()
    assert RunFolder(run, create=False).load_checkpoint()["step"] == 0  # the previous checkpoint, intact
    records = scan_metrics(run).records
    assert records[-1]["event"] == "failed" and records[-1]["status"] == "failed"
    assert summarize_run(run).status == "failed"
    if code == errno.ENOSPC:  # space freed: resume goes on from the kept checkpoint and completes
        assert main(["resume", str(run), "--quiet"]) == 0
        assert "resumed from step 0" in capsys.readouterr().err
        assert summarize_run(run).status == "completed"


def test_snapshot_write_fails(tmp_path, capsys, monkeypatch):
    fail_on_call(monkeypatch, np, "savez_compressed", 2, disk_error(errno.ENOSPC))  # the probe at step 2
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, str(run), "snapshots/probe-0000002.npz", "is full", f"ssl-studio resume {run}")
    assert_no_temporary_files(run)
    monkeypatch.undo()
    assert RunFolder(run, create=False).load_checkpoint()["step"] == 0


def test_report_write_fails(tmp_path, capsys, monkeypatch):
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == "report.json":
            raise disk_error(errno.ENOSPC)
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, str(run), "report.json", "is full", f"ssl-studio resume {run}")
    assert_no_temporary_files(run)
    monkeypatch.undo()
    assert RunFolder(run, create=False).load_checkpoint()["step"] == 4  # the final checkpoint was written before


def test_metrics_write_fails(tmp_path, capsys, monkeypatch):
    real_open = RunFolder._open_metrics
    writes = {"n": 0}

    class FillingUp:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            writes["n"] += 1
            if writes["n"] > 6:
                raise disk_error(errno.ENOSPC)
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(RunFolder, "_open_metrics", lambda self: FillingUp(real_open(self)))
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, str(run), "metrics.jsonl", "is full")
    assert_no_temporary_files(run)
    chunk = scan_metrics(run)
    assert chunk.skipped == 0 and len(chunk.records) == 6  # what reached the disk is intact


def test_config_write_fails_at_start(tmp_path, capsys, monkeypatch):
    def save_config(cfg, path):
        Path(str(path) + ".tmp").write_text("ablations = [", encoding="utf-8")  # half written, as a full disk leaves it
        raise disk_error(errno.ENOSPC)

    monkeypatch.setattr(runs_module, "save_config", save_config)
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, "config.toml", "is full", "start the run again")
    if run is not None:
        assert_no_temporary_files(run)


def test_run_folder_cannot_be_made_at_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: (_ for _ in ()).throw(disk_error(errno.ENOSPC)))
    exit_code, err, run = train(tmp_path, capsys)
    assert_one_sentence_failure(exit_code, err, str(tmp_path), "is full", "start the run again")
    assert run is None


def test_error_txt_on_a_full_disk_does_not_raise(tmp_path, monkeypatch):
    from run_damage import tiny_config

    def boom(self, progress):
        raise RuntimeError("an internal error")

    real_atomic = runs_module.atomic_write

    def atomic_write(final, *a, **k):
        if Path(final).name == "error.txt":
            raise disk_error(errno.ENOSPC)
        return real_atomic(final, *a, **k)

    monkeypatch.setattr(Trainer, "_train_step", boom)
    monkeypatch.setattr(runs_module, "atomic_write", atomic_write)
    result = Trainer(tiny_config(tmp_path)).run()
    assert result.status == "failed" and "internal error" in result.message
    assert not (result.run_dir / "error.txt").exists()
    assert scan_metrics(result.run_dir).records[-1]["event"] == "failed"
    assert_no_temporary_files(result.run_dir)


# -- processes ------------------------------------------------------------------------------------------

# the real CLI, with a short checkpoint interval (so a test can kill between checkpoints) and, optionally,
# every run stamped with the same second (so two runs race for one folder name)
LAUNCH = """
import sys, time
import ssl_studio.engine.trainer as trainer
trainer.CHECKPOINT_EVERY_S = float(sys.argv[1])
if sys.argv[2] == "same-second":
    real = time.strftime
    time.strftime = lambda fmt, *a: "20240101-000000" if fmt == "%Y%m%d-%H%M%S" else real(fmt, *a)
from ssl_studio.cli import main
sys.exit(main(sys.argv[3:]))
"""


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}


def launch(args: list[str], every: float = 20.0, stamp: str = "now") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LAUNCH, str(every), stamp, *args], env=env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the test could act: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def checkpoints(run: Path) -> list[int]:
    return [r["step"] for r in scan_metrics(run).records if r.get("event") == "checkpoint"]


def test_kill_9_then_resume_goes_on_from_the_last_checkpoint(tmp_path):
    args = ["train", "--out", str(tmp_path), *TINY[:4], "--minutes", "0.05", *TINY[6:]]
    args[args.index("probe.every=2")] = "probe.every=0"
    proc = launch(args, every=0.2)
    try:
        run = wait_for(lambda: next((p for p in tmp_path.iterdir() if p.is_dir()), None), proc)
        wait_for(lambda: any(s > 0 for s in checkpoints(run)), proc)  # past its first periodic checkpoint
        time.sleep(random.Random().uniform(0.0, 0.4))  # a random point after it
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert summarize_run(run).status == "interrupted"
    last = checkpoints(run)[-1]
    done = subprocess.run([sys.executable, "-m", "ssl_studio", "resume", str(run), "--quiet"], env=env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed from step {last} (checkpoint of " in done.stderr
    started = [r for r in scan_metrics(run).records if r.get("event") == "started"]
    assert len(started) == 2 and started[1]["resumed_from_step"] == last
    assert summarize_run(run).status == "completed"


def test_two_processes_on_one_runs_folder_in_the_same_second(tmp_path):
    procs = [launch(["train", "--out", str(tmp_path), *TINY], stamp="same-second") for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["20240101-000000-simclr-shapes", "20240101-000000-simclr-shapes-2"]
    for run in runs:
        records = scan_metrics(run).records
        events = [r["event"] for r in records]
        assert events.count("started") == 1 and events.count("finished") == 1 and "failed" not in events
        assert {r["run_dir"] for r in records if "run_dir" in r} == {str(run)}
        assert json.loads((run / "report.json").read_text(encoding="utf-8"))
        assert RunFolder(run, create=False).load_checkpoint()["step"] == 4


def test_checkpoint_benchmark_times_the_real_save(tmp_path):
    from ssl_studio.benchmarks.checkpoint import bench_checkpoint, checkpoint_table

    (row,) = bench_checkpoint(backbones=("convnet",), repeats=1, out=tmp_path, num_images=128)
    assert row["size_mb"] > 0 and row["seconds"] > 0 and row["interval_s"] <= 30 and row["overhead"] == row["seconds"] / row["interval_s"]
    assert "| convnet |" in "\n".join(checkpoint_table([row]))
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_a_file_size_limit_at_the_checkpoint_is_one_sentence_and_keeps_the_previous_one(made_run, tmp_path):
    """A real write limit, not a monkeypatched one: RLIMIT_FSIZE below the checkpoint's size (the kernel's EFBIG; Python
    ignores SIGXFSZ).  Once "Writing checkpoints/last.pt failed (File too large); check the disk", which it is not."""
    import resource
    import shutil

    run = Path(shutil.copytree(made_run, tmp_path / "run"))
    config = run / "config.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("steps = 4", "steps = 6"), encoding="utf-8")
    checkpoint = (run / "checkpoints" / "last.pt").read_bytes()
    limit = len(checkpoint) // 2

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "ssl_studio", "resume", str(run), "--quiet"], capture_output=True, text=True,
                          timeout=120, preexec_fn=cap, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "checkpoints/last.pt" in last and "ulimit -f" in last and f"ssl-studio resume {run}" in last, last
    assert (run / "checkpoints" / "last.pt").read_bytes() == checkpoint
    assert_no_temporary_files(run)
