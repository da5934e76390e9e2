"""Launching a run as a local torchrun job, Qt-free: the command line, its run folder, its exit in one sentence.

The window starts ``python -m torch.distributed.run --standalone --nproc_per_node N -m ssl_studio train
--config <file> --out <runs>`` as a child process and follows the run folder rank 0 writes, through the same
``replay_events`` that opens any run folder.  This module holds the parts that need no Qt: the processes
check, the command and its environment, telling the job's run folder among the others, and turning an exit
that left no terminal record into one sentence.  ``--standalone`` lets torchrun pick a free loopback port, so
two jobs never fight over one.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ssl_studio.config import TINY_BATCH, RunConfig, save_config
from ssl_studio.params import ConfigError

TORCHRUN_MODULE = "torch.distributed.run"
RUN_FOLDER_PREFIX = "run folder: "  # the line ``ssl-studio train`` prints on Started (cli.ConsoleProgress)
SENTENCE_PREFIX = "ssl-studio: "  # every CLI failure is one such line on rank 0's stderr
SHUTDOWN_TIMEOUT_S = 300  # how long torchrun lets the ranks save a checkpoint and run the final probe after SIGTERM
LAUNCH_ENV_DROPPED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                      "TORCHELASTIC_RUN_ID")
_STAMPED = re.compile(r"^\d{8}-\d{6}-")


def max_processes() -> int:
    """The spin box's ceiling: one process per core on a CPU, one per GPU on a CUDA machine, whichever is more."""
    cores = os.cpu_count() or 1
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no CUDA runtime: cores decide
        gpus = 0
    return max(1, cores, gpus)


def check_processes(cfg: RunConfig, processes: int) -> None:
    """Refuse before launching what every rank would refuse after loading (a batch that does not split)."""
    if processes < 1:
        raise ConfigError("processes", f"must be 1 or more, got {processes}")
    if processes == 1:
        return
    batch = TINY_BATCH if "tiny_batch" in cfg.ablations else cfg.batch_size
    if batch % processes:
        raise ConfigError("batch_size", f"{batch} images do not split evenly over {processes} processes; "
                                        f"set batch_size to a multiple of {processes} or change Processes (the batch stays the global batch)")


def write_job_config(cfg: RunConfig, folder: str | Path) -> Path:
    """The experiment as the TOML file the job reads with ``--config`` (what ``ssl-studio train`` would re-run)."""
    path = Path(folder) / "job.toml"
    save_config(cfg, path)
    return path


def torchrun_command(config_path: str | Path, out: str | Path, processes: int, python: str | None = None) -> list[str]:
    """The argument list (program first) that trains ``config_path`` on ``processes`` local ranks under ``out``."""
    return [python or sys.executable, "-m", TORCHRUN_MODULE, "--standalone", "--nproc_per_node", str(int(processes)),
            "-m", "ssl_studio", "train", "--config", str(config_path), "--out", str(out), "--quiet"]


def package_root() -> str:
    """The folder holding this ``ssl_studio`` package, so the job runs the same code as the window."""
    return str(Path(__file__).resolve().parents[2])


def job_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the window's, without a torchrun world it may itself sit in, with this package first."""
    env = dict(os.environ if base is None else base)
    for key in LAUNCH_ENV_DROPPED:
        env.pop(key, None)
    paths = [package_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root()]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    env["PYTHONUNBUFFERED"] = "1"  # the run folder line arrives when it is printed, not when a buffer fills
    return env


def run_folder_in(line: str) -> str | None:
    """The run folder a ``run folder: PATH`` line of the job's output names (None for any other line)."""
    line = line.strip()
    if line.startswith(RUN_FOLDER_PREFIX):
        return line[len(RUN_FOLDER_PREFIX):].strip() or None
    return None


def run_folders(out: str | Path) -> set[str]:
    """The names of the folders under ``out`` now (an unreadable or missing ``out`` has none)."""
    try:
        return {p.name for p in Path(out).iterdir() if p.is_dir()}
    except OSError:
        return set()


def find_new_run(out: str | Path, before: Iterable[str], cfg: RunConfig) -> Path | None:
    """The run folder the job made: the one new folder under ``out`` named for ``cfg``'s objective (None while
    there is none, or while several could be it: the job's ``run folder:`` line then decides)."""
    from ssl_studio.engine.runs import _slug

    marker = f"-{cfg.objective.name}-{_slug(cfg.data.source)}"
    seen = set(before)
    new = [name for name in run_folders(out) - seen if _STAMPED.match(name) and marker in name]
    return Path(out) / new[0] if len(new) == 1 else None


def last_sentence(output: str) -> str | None:
    """The last ``ssl-studio:`` line of the job's output, without the prefix: the CLI's one sentence."""
    found = None
    for line in output.splitlines():
        idx = line.find(SENTENCE_PREFIX)
        if idx >= 0 and line[idx + len(SENTENCE_PREFIX):].strip():
            found = line[idx + len(SENTENCE_PREFIX):].strip()
    return found


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(code: int | None, output: str, processes: int, start_error: str | None = None, crashed: bool = False) -> str:
    """One sentence for a job that ended without a finished or failed record in its run folder.

    ``code`` is torchrun's exit status (None when it could not be started), ``output`` its merged
    stdout/stderr, ``start_error`` why the program could not be started at all, ``crashed`` that torchrun
    itself was killed by a signal.
    """
    if crashed:
        return ("torchrun was killed before the run wrote its last record; the run keeps its last checkpoint: "
                "resume it from the runs browser.")
    if start_error is not None or code is None:
        return (f"Could not start torchrun with {sys.executable} ({start_error or 'it did not start'}); "
                "check that this Python can run 'python -m torch.distributed.run', or set Processes to 1.")
    missing = re.search(r"No module named '?([\w.]+)'?", output)
    if missing and missing.group(1) in ("torch", "torch.distributed", TORCHRUN_MODULE, "ssl_studio"):
        return (f"torchrun could not start: this Python has no module {missing.group(1)} ({sys.executable}); "
                "install PyTorch with torch.distributed, or set Processes to 1.")
    sentence = last_sentence(output)
    if sentence:
        return sentence if sentence.endswith((".", "!", "?")) else sentence + "."
    rank_match = re.search(r"rank\s*:\s*(\d+)", output)
    exit_match = re.search(r"exitcode\s*:\s*(-?\d+)", output)
    if exit_match:
        worker = int(exit_match.group(1))
        who = f"process rank {rank_match.group(1)}" if rank_match else "a process"
        how = f"was killed by {_signal_name(-worker)}" if worker < 0 else f"exited with status {worker}"
        return (f"The torchrun job of {processes} processes ended because {who} {how}; the run keeps its last "
                "checkpoint: resume it from the runs browser.")
    if code < 0:
        return f"torchrun was killed by {_signal_name(-code)} before the run wrote its last record; resume it from the runs browser."
    if code == 0:
        return "The torchrun job ended without a finished record in its run folder; open the run folder to see how far it got."
    return (f"The torchrun job of {processes} processes ended with status {code} without saying why; "
            "start the same experiment with Processes set to 1 to see what goes wrong.")
