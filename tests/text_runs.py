"""Shared by the text lab's ask tests: a .txt file of the test's own and two tiny runs trained on it.

Not a test module: ``test_text_ask_cli`` and ``test_gui_text_ask`` build their module fixtures from here.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = "the a socket file open close read write buffer stream thread lock queue data value number text line path name".split()
TINY = ["--batch-size", "16", "--set", "data.resolution=16", "--set", "model.width=48", "--set", "model.depth=1",
        "--set", "probe.size=32", "--precision", "float32", "--quiet", "--steps", "2"]


def write_own_text(path: Path, sentences: int = 600, capitalise: bool = True) -> Path:
    """Seeded sentences of twelve words from WORDS, one paragraph, written to ``path``."""
    rng = random.Random(0)
    words = (" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(sentences))
    path.write_text(" ".join((w.capitalize() if capitalise else w) + "." for w in words))
    return path


def train_causal_and_masked(root: Path) -> tuple[Path, Path, Path]:
    """(causal run, masked run, their runs folder): two steps each on one unlabelled .txt file."""
    from ssl_studio.cli import main

    text = write_own_text(root / "own.txt")
    out = root / "runs"
    made = {}
    for objective in ("causal-lm", "masked-lm"):
        assert main(["train", "--objective", objective, "--data", f"text:{text}", "--out", str(out), *TINY]) == 0
        (made[objective],) = [p for p in out.iterdir() if p.is_dir() and objective in p.name]
    return made["causal-lm"], made["masked-lm"], out
