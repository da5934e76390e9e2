"""Shared by the reliability battery: one tiny finished run, and the ways a file of a run folder gets damaged.

Not a test module: ``test_reliability_runfolder`` and ``test_reliability_window`` import
the ``made_run`` fixture and ``damage`` from here.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from ssl_studio.config import config_from_mapping

# what can happen to a file: a copy cut short, a power cut (zeroed blocks), garbage, a deletion, a folder in its place
DAMAGES = ("truncated", "zeroed", "garbage", "missing", "directory")
# every file of a run folder, and the word the sentence about it must contain
FILES = {
    "metrics.jsonl": "metrics.jsonl",
    "config.toml": "config.toml",
    "report.json": "report.json",
    "snapshots": "snapshot",  # every .npz in it
    "checkpoints/last.pt": "last.pt",
}


def tiny_config(out: Path, **over):
    mapping = {
        "objective": {"name": "simclr"},
        "data": {"source": "shapes", "num_images": 128},
        "model": {"width": 8},
        "batch_size": 16,
        "budget": {"steps": 4},
        "probe": {"every": 2, "size": 32, "visuals_every": 2},
        "device": "cpu",
        "precision": "float32",
        "workers": 1,
        "out": str(out),
    }
    mapping.update(over)
    return config_from_mapping(mapping)


@pytest.fixture(scope="session")
def made_run(tmp_path_factory) -> Path:
    """One finished run with every file a run folder holds (snapshots, checkpoint, report), made once."""
    from ssl_studio.engine.trainer import Trainer

    result = Trainer(tiny_config(tmp_path_factory.mktemp("made"))).run()
    assert result.status == "completed", result.message
    run = Path(result.run_dir)
    assert (run / "report.json").is_file() and list((run / "snapshots").glob("*.npz")) and (run / "checkpoints" / "last.pt").is_file()
    return run


def _damage_file(path: Path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "truncated":
        cut = len(data) // 2
        while cut > 1 and data[cut - 1:cut] == b"\n":  # cut mid-line, as a copy cut short does
            cut -= 1
        path.write_bytes(data[:cut])
    elif how == "zeroed":
        path.write_bytes(b"\x00" * len(data))
    elif how == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(max(len(data), 64))))
    elif how == "missing":
        path.unlink()
    elif how == "directory":
        path.unlink()
        path.mkdir()
        (path / "stray").write_text("x", encoding="utf-8")
    else:
        raise ValueError(how)


def damage(run: Path, name: str, how: str, seed: int = 0) -> None:
    """Damage ``name`` (a file of the run, or every .npz under snapshots) the way ``how`` says."""
    rng = random.Random(f"{name}-{how}-{seed}")
    targets = sorted((run / "snapshots").glob("*.npz")) if name == "snapshots" else [run / name]
    for path in targets:
        _damage_file(path, how, rng)


# what may stand under a file's name without being a file: a read of either never ends (it waits, or reads forever)
SPECIALS = ("fifo", "dev-zero")


def put_special(path: Path, what: str) -> None:
    """A named pipe, or a link to /dev/zero, in place of ``path`` (a file of the run, or every snapshot)."""
    targets = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    for target in targets:
        target.unlink()
        os.mkfifo(target) if what == "fifo" else os.symlink("/dev/zero", target)


def copy_run(made: Path, root: Path, name: str) -> Path:
    dest = root / name
    shutil.copytree(made, dest)
    os.utime(dest)
    return dest
