"""The window launches the experiment as a torchrun job, follows its run folder live, stops it, and says why it failed.

Two tests run real two-process gloo jobs on loopback (a tiny SimCLR); the others stand a small shell script in
for torchrun, so the window's handling of a job's output, exit and SIGTERM is checked in well under a second.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from ssl_studio.config import RunConfig, config_from_mapping, load_config  # noqa: E402
from ssl_studio.engine import launch  # noqa: E402
from ssl_studio.engine.events import Failed, Finished  # noqa: E402
from ssl_studio.gui.torchrun_session import TorchrunSession  # noqa: E402

JOB_TIMEOUT_MS = 150_000


def tiny(steps: int = 4, **over) -> RunConfig:
    mapping = {
        "objective": {"name": "simclr"},
        "data": {"source": "shapes", "num_images": 128},
        "model": {"width": 16},
        "budget": {"steps": steps},
        "batch_size": 16,
        "probe": {"every": 2, "size": 32, "visuals_every": 0},
        "device": "cpu",
        "precision": "float32",
    }
    mapping.update(over)
    return config_from_mapping(mapping)


def fake_torchrun(tmp_path: Path, body: str) -> Path:
    """A shell script standing in for ``python -m torch.distributed.run``: it ignores its arguments."""
    script = tmp_path / "fake-torchrun.sh"
    script.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def use_fake(monkeypatch, script: Path) -> list[Path]:
    """Run ``script`` instead of torchrun; the returned list receives each job's config file."""
    configs: list[Path] = []
    monkeypatch.setattr("ssl_studio.gui.torchrun_session.torchrun_command",
                        lambda config, *a, **k: configs.append(Path(config)) or [str(script)])
    return configs


def start_job(window, cfg: RunConfig, processes: int = 2) -> bool:
    window.experiment.load_config(cfg)
    window.experiment.processes_spin.setValue(processes)
    return window.start_run()


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_processes_spin_box_is_beside_start_at_one_and_the_job_config_is_the_form(window, tmp_path):
    spin = window.experiment.processes_spin
    assert spin.objectName() == "processesSpin" and spin.value() == 1 and spin.minimum() == 1
    assert spin.parentWidget() is window.experiment.start_button.parentWidget()
    window.experiment.load_config(tiny(steps=7, seed=3, ablations=["no_projector"], batch_size=24))
    form = window.experiment.to_config()
    assert load_config(launch.write_job_config(form, tmp_path)) == form


def test_a_batch_that_does_not_split_is_refused_at_start_naming_the_batch(window):
    assert not start_job(window, tiny(batch_size=15), processes=2)
    assert "batch_size" in window.banner_text and "15" in window.banner_text and "2 processes" in window.banner_text
    assert window.session is None and window.state == "idle"


@pytest.mark.distributed
def test_a_two_process_job_fills_the_loss_panel_and_ends_completed(window, qtbot):
    assert start_job(window, tiny(steps=4))
    session = window.session
    assert isinstance(session, TorchrunSession) and not window.action_pause.isEnabled()
    qtbot.waitUntil(lambda: session.done, timeout=JOB_TIMEOUT_MS)
    assert isinstance(session.terminal, Finished) and session.terminal.status == "completed", session.output[-2000:]
    runs = [p for p in (window.runs_dir).iterdir() if p.is_dir()]
    assert [str(p) for p in runs] == [session.run_dir]
    assert records(runs[0])[0]["world_size"] == 2
    assert list(window.loss_panel.steps.view) == [1, 2, 3, 4]  # every step once, from rank 0's records
    assert window.state == "idle" and window.status_eta.text() == "done"
    assert "2 processes (gloo)" in window.status_device.text()


@pytest.mark.distributed
def test_stop_sends_sigterm_and_the_job_ends_stopped_with_a_checkpoint(window, qtbot):
    assert start_job(window, tiny(steps=100_000))
    session = window.session
    qtbot.waitUntil(lambda: window.loss_panel.steps.n >= 2 or session.done, timeout=JOB_TIMEOUT_MS)  # followed live
    assert not session.done, session.output[-2000:]
    window.experiment.stop_button.click()
    assert window.state == "stopping"
    qtbot.waitUntil(lambda: session.done, timeout=JOB_TIMEOUT_MS)
    assert isinstance(session.terminal, Finished) and session.terminal.status == "stopped", session.output[-2000:]
    run = Path(session.run_dir)
    assert (run / "checkpoints" / "last.pt").is_file()
    assert records(run)[-1]["event"] == "finished" and records(run)[-1]["status"] == "stopped"
    assert window.state == "idle" and window.status_eta.text() == "stopped" and not window.banner_text


def test_a_job_that_fails_shows_its_last_sentence(window, qtbot, tmp_path, monkeypatch):
    use_fake(monkeypatch, fake_torchrun(tmp_path, (
        "echo '[rank1]: Traceback (most recent call last):' >&2\n"
        "echo 'ssl-studio: data.source folder:/nowhere does not exist; choose a folder of images.' >&2\n"
        "echo 'torch.distributed.elastic.multiprocessing.errors.ChildFailedError:' >&2\nexit 1")))
    assert start_job(window, tiny())
    session = window.session
    qtbot.waitUntil(lambda: session.done, timeout=10_000)
    assert isinstance(session.terminal, Failed) and session.terminal.status == "failed"
    assert window.banner_text == "The run failed: data.source folder:/nowhere does not exist; choose a folder of images."
    assert window.state == "idle"


def test_a_python_that_cannot_run_torchrun_is_one_sentence(window, qtbot, tmp_path, monkeypatch):
    use_fake(monkeypatch, fake_torchrun(tmp_path, "echo \"$0: No module named torch.distributed.run\" >&2\nexit 1"))
    assert start_job(window, tiny())
    qtbot.waitUntil(lambda: window.session.done, timeout=10_000)
    assert "no module torch.distributed.run" in window.banner_text and "Processes to 1" in window.banner_text


def test_a_torchrun_that_cannot_be_started_is_one_sentence(qtbot, tmp_path):
    session = TorchrunSession(tiny(out=str(tmp_path / "runs")), 2, python=str(tmp_path / "no-such-python"))
    with qtbot.waitSignal(session.finished, timeout=10_000):
        session.start()
    assert isinstance(session.terminal, Failed) and "Could not start torchrun" in session.terminal.message
    assert "\n" not in session.terminal.message


def test_closing_the_window_stops_a_running_job_first(window, qtbot, tmp_path, monkeypatch):
    got = tmp_path / "got-sigterm"
    configs = use_fake(monkeypatch, fake_torchrun(tmp_path, (
        f"trap 'touch {got}; exit 130' TERM\necho 'run folder: {tmp_path}/nowhere'\n"
        "while true; do sleep 0.05; done")))
    assert start_job(window, tiny())
    session = window.session
    qtbot.waitUntil(lambda: session.process.state() == session.process.ProcessState.Running, timeout=10_000)
    qtbot.waitUntil(lambda: "run folder" in session.output, timeout=10_000)
    window.close()
    qtbot.waitUntil(lambda: session.done and not window.isVisible(), timeout=10_000)
    assert got.exists()  # torchrun got SIGTERM, which it passes to every rank
    assert session.terminal.status == "stopped"
    assert configs and not configs[0].exists()  # the job's temporary config file is gone
