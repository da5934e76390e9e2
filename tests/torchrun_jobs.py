"""Starting ``torch.distributed.run`` (torchrun) jobs of ``python -m ssl_studio`` from tests, and watching them.

Every wait polls with a deadline (no fixed sleeps); a job still running when its test ends is killed with its
whole process group, so a failing test never leaves ranks behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
TINY = ["--data", "shapes", "--batch-size", "16", "--set", "data.num_images=128", "--set", "model.width=16",
        "--set", "probe.size=32", "--set", "probe.every=0", "--precision", "float32", "--quiet"]
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
              "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "SSL_STUDIO_BACKEND")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and that this test process has not handed out before.

    Binding port 0 may return a port an earlier call returned (it was closed again); two jobs started side by
    side on one port would join each other's store, so every port is handed out once per test session.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables, one thread per process, this worktree importable."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def torchrun_command(launch: list[str], args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "ssl_studio", *args]


def local_launch(nproc: int = 2) -> list[str]:
    return ["--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port", str(free_port())]


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """A job in its own process group (so that a test can end it and every rank it started)."""
    return subprocess.Popen(cmd, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for the job to end by itself within ``timeout`` seconds; kill its group otherwise (and say so)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"the job did not end within {timeout:.0f} s; its stderr ends:\n{err[-3000:]}") from None


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return out


def wait_for_step(out: Path, proc: subprocess.Popen, step: int = 1, timeout: float = 120.0) -> Path:
    """The run folder under ``out`` once its metrics.jsonl holds a step record at ``step`` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before step {step}: {proc.stderr.read()[-3000:]}")
        for run in (p for p in out.iterdir() if p.is_dir()) if out.exists() else ():
            if any(r.get("event") == "step" and r["step"] >= step for r in records(run)):
                return run
        time.sleep(0.05)
    kill_group(proc)
    raise AssertionError(f"no step {step} record within {timeout:.0f} s")


def rank_pids(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the workers a torchrun process started (read from /proc: Linux only)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != launcher_pid:
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


def run_to_end(args: list[str], nproc: int = 2, timeout: float = 180.0, attempts: int = 3) -> tuple[subprocess.Popen, str, str]:
    """A local torchrun job run to its end; started again on another port when the free port found for it was taken
    by another process in between (torchrun then fails before any rank starts, with EADDRINUSE)."""
    for attempt in range(attempts):
        job = start(torchrun_command(local_launch(nproc), args))
        try:
            out, err = finish(job, timeout=timeout)
        finally:
            kill_group(job)
        if job.returncode == 0 or "EADDRINUSE" not in err or attempt == attempts - 1:
            return job, out, err
    raise AssertionError("unreachable")
