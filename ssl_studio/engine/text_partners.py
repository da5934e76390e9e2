"""Which run answers beside a text run: the other LM objective, trained on the same data with the same vocabulary.

Exercise E2 compares a causal and a masked LM; a question put to one text run is also put to a run
of the other objective whose token ids mean the same (an identical ``tokenizer.json``).  The default
partner is the newest finished one; the others (stopped, interrupted, still running: any with a
checkpoint) can be chosen instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssl_studio.engine.trained import TEXT_OBJECTIVES
from ssl_studio.regular_file import read_regular


@dataclass
class TextRun:
    """A text run that can answer: its folder, objective, status and when its checkpoint was written."""

    path: Path
    objective: str
    status: str
    step: int
    saved: float

    @property
    def finished(self) -> bool:
        return self.status == "completed"

    def label(self) -> str:
        """Short enough for a narrow combo: objective, when its checkpoint was saved, status and step."""
        import time

        when = time.strftime("%m-%d %H:%M", time.localtime(self.saved))
        return f"{self.objective}, {self.step:,} steps" + ("" if self.finished else f" ({self.status})") + f", {when}"


def other_objective(objective: str) -> str:
    return "masked-lm" if objective == "causal-lm" else "causal-lm"


def _tokenizer_text(run: Path) -> str | None:
    try:
        return read_regular(Path(run) / "tokenizer.json").decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def partner_runs(run_dir: str | Path, objective: str, source: str, runs_dir: str | Path | None = None) -> list[TextRun]:
    """Runs of the other text objective on ``source`` with ``run_dir``'s vocabulary, under ``runs_dir`` (default: the
    folder holding ``run_dir``), that have a checkpoint: finished ones first, newest first within each."""
    from ssl_studio.engine.run_model import RunModel

    run_dir = Path(run_dir)
    root = Path(runs_dir) if runs_dir is not None else run_dir.parent
    vocabulary = _tokenizer_text(run_dir)
    if objective not in TEXT_OBJECTIVES or vocabulary is None or not root.is_dir():
        return []
    wanted = other_objective(objective)
    found: list[TextRun] = []
    for path in root.iterdir():
        checkpoint = path / "checkpoints" / "last.pt"
        if not path.is_dir() or path.resolve() == run_dir.resolve() or not checkpoint.is_file():
            continue
        if _tokenizer_text(path) != vocabulary:
            continue
        model = RunModel(path)
        model.update()
        flat = model.config_flat or {}
        if not model.config_ok or flat.get("objective.name") != wanted or flat.get("data.source") != source:
            continue
        found.append(TextRun(path, wanted, model.status, int(model.step), checkpoint.stat().st_mtime))
    found.sort(key=lambda r: (not r.finished, -r.saved))
    return found


def default_partner(runs: list[TextRun]) -> TextRun | None:
    """The newest finished partner, or None."""
    return next((r for r in runs if r.finished), None)


def no_partner_sentence(objective: str, source: str, runs_dir: str | Path) -> str:
    other = other_objective(objective)
    return (f"No finished {other} run on {source} with this vocabulary in {runs_dir}: only the {objective} model answers; "
            f"train one ('ssl-studio train --objective {other} --data {source}') to compare.")


__all__ = ["TextRun", "default_partner", "no_partner_sentence", "other_objective", "partner_runs"]
