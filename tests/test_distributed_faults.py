"""Faults under torchrun (issue 23, "Bad input and faults"): a rank killed mid-run, SIGTERM to torchrun, a port
already in use, NCCL without CUDA.  Each ends every rank within seconds with one sentence on rank 0's stderr and
in the run's last event, never a hang and never a half-written checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import torchrun_jobs as jobs  # noqa: E402

from ssl_studio.cli import main  # noqa: E402

pytestmark = pytest.mark.distributed
LONG = [*jobs.TINY, "--steps", "100000"]  # a run that only a fault ends


def _ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ssl-studio:")]


def _checkpoint_whole(run) -> dict:
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.pt"], f"a half-written checkpoint was left: {names}"
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds rank 1's process through /proc")
def test_a_rank_killed_mid_run_ends_every_rank_and_the_last_event_names_it(tmp_path):
    job = jobs.start(jobs.torchrun_command(jobs.local_launch(2), ["train", *LONG, "--out", str(tmp_path)]))
    try:
        run = jobs.wait_for_step(tmp_path, job, step=1)
        pids = jobs.rank_pids(job.pid)
        assert set(pids) == {0, 1}, pids
        os.kill(pids[1], signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = jobs.finish(job, timeout=60)
        ended_after = time.monotonic() - killed_at
    finally:
        jobs.kill_group(job)
    assert job.returncode != 0
    assert ended_after < 45, f"the job took {ended_after:.0f} s to end after rank 1 was killed"
    last = jobs.records(run)[-1]
    assert last["event"] == "failed" and last["status"] == "failed", last
    assert "rank 1 ended without a word" in last["message"] and "SIGKILL" in last["message"], last["message"]
    assert "Connection reset" not in last["message"] and "RuntimeError" not in last["message"]
    ours = _ours(err)
    assert ours == [f"ssl-studio: {last['message']}"], err[-3000:]  # rank 0 alone, the same sentence
    ckpt = _checkpoint_whole(run)
    assert ckpt["step"] <= last["step"]


@pytest.mark.skipif(sys.platform.startswith("win"), reason="SIGTERM")
def test_sigterm_to_torchrun_stops_every_rank_after_a_checkpoint(tmp_path):
    job = jobs.start(jobs.torchrun_command(jobs.local_launch(2), ["train", *LONG, "--out", str(tmp_path)]))
    try:
        run = jobs.wait_for_step(tmp_path, job, step=1)
        job.send_signal(signal.SIGTERM)  # what a scheduler, the window's Stop or `kill` sends torchrun
        _, err = jobs.finish(job, timeout=60)
    finally:
        jobs.kill_group(job)
    records = jobs.records(run)
    last = records[-1]
    assert last["event"] == "finished" and last["status"] == "stopped", last
    steps = [r["step"] for r in records if r["event"] == "step"]
    ckpt = _checkpoint_whole(run)
    assert ckpt["step"] == steps[-1] == last["step"]  # the checkpoint holds the last step taken: nothing lost
    assert [r for r in records if r["event"] == "checkpoint"][-1]["step"] == steps[-1]
    ours = _ours(err)  # rank 0 alone says it (and exits 130; torchrun itself then reports its own signal)
    assert len(ours) == 1 and f"stopped at step {steps[-1]} with its checkpoint saved" in ours[0], err[-3000:]
    assert "ssl-studio resume" in ours[0]


def test_a_port_already_in_use_is_one_sentence_naming_it(tmp_path):
    """Rank 0 of a job whose MASTER_PORT is taken (a launcher that leaves the store to rank 0, as plain env:// does)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = jobs.clean_env(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        done = subprocess.run([sys.executable, "-m", "ssl_studio", "train", *jobs.TINY, "--steps", "2", "--out", str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    ours = _ours(done.stderr)
    assert len(ours) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"port {port}" in ours[0] and "already in use" in ours[0] and "--master-port" in ours[0], ours[0]
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="NCCL without CUDA needs a machine without CUDA")
def test_nccl_without_cuda_is_one_sentence_naming_the_setting(tmp_path, monkeypatch, capsys):
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(jobs.free_port()),
                           SSL_STUDIO_BACKEND="nccl").items():
        monkeypatch.setenv(key, value)
    code = main(["train", *jobs.TINY, "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    ours = _ours(err)
    assert len(ours) == 1 and "SSL_STUDIO_BACKEND" in ours[0] and "nccl" in ours[0] and "CUDA" in ours[0], err
    assert not any(tmp_path.iterdir())


def test_an_unknown_backend_is_one_sentence(tmp_path, monkeypatch, capsys):
    for key, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2", SSL_STUDIO_BACKEND="mpi").items():
        monkeypatch.setenv(key, value)
    assert main(["train", *jobs.TINY, "--steps", "2", "--out", str(tmp_path)]) == 2
    ours = _ours(capsys.readouterr().err)
    assert len(ours) == 1 and "SSL_STUDIO_BACKEND" in ours[0] and "'mpi'" in ours[0] and "gloo" in ours[0]
