"""What is wrong with a run folder, in one sentence: the runs browser shows it beside the run.

A power cut, a full disk, a copy cut short or a hand edit can leave any file of a
run folder truncated, zeroed, full of garbage, missing, or a folder in its place.
The run is still listed (its other files may hold hours of results); these checks
say which file is damaged and what that costs.  They are cheap: a stat, a few bytes
of each zip archive (snapshots and checkpoints are zip files: a local-header magic at
the start, an end-of-central-directory record at the end), and a parse of the small
text files.  Nothing here raises for a damaged file.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Iterable

from ssl_studio.regular_file import open_regular, read_regular, special_kind

ZIP_MAGIC = b"PK\x03\x04"
ZIP_END = b"PK\x05\x06"
ZIP_END_MIN = 22  # an end-of-central-directory record without a comment


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def loads_finite(raw: bytes) -> object:
    """JSON as the lab writes it: UTF-8, and every number finite (its writers store NaN as null), so a NaN or 1e400
    that a hand edit or another tool put in a report is refused (``ValueError``), never ranked as a result."""
    return json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)


def _kind(path: Path) -> str | None:
    """'missing', 'unreadable', what stands there when it is not a file ("a folder", "a named pipe (FIFO)",
    "a device", ...), or None (a regular file)."""
    try:
        if not path.exists():
            return "missing"
        if not path.is_file():
            return special_kind(path) or "not a regular file"
    except OSError:
        return "unreadable"
    return None


def _not_a_file(kind: str) -> str:
    return f"is {kind}, not a file"


def zip_problem(path: Path) -> str | None:
    """How a zip-based file (.npz snapshot, .pt checkpoint) is damaged, as a predicate ("is cut off"), or None."""
    kind = _kind(path)
    if kind == "missing":
        return "is missing"
    if kind not in (None, "unreadable"):
        return _not_a_file(kind)
    try:
        size = path.stat().st_size
        if size == 0:
            return "is empty"
        with open_regular(path) as fh:
            head = fh.read(4)
            if head != ZIP_MAGIC:
                return "is damaged (zeroed or garbage)" if size >= ZIP_END_MIN else "is cut off"
            if size < ZIP_END_MIN:
                return "is cut off"
            fh.seek(max(0, size - ZIP_END_MIN - 1024))  # a short archive comment is allowed
            tail = fh.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if ZIP_END not in tail:
        return "is cut off (truncated)"
    return None


def config_problem(run_dir: Path) -> str | None:
    path = run_dir / "config.toml"
    kind = _kind(path)
    if kind == "missing":
        return "config.toml is missing, so the run cannot be re-run, resumed or evaluated"
    if kind not in (None, "unreadable"):
        return f"config.toml {_not_a_file(kind)}, so the run cannot be re-run, resumed or evaluated"
    try:
        raw = read_regular(path)
    except OSError as exc:
        return f"config.toml cannot be read ({exc.strerror or type(exc).__name__})"
    if not raw.strip(b"\x00 \t\r\n"):
        return "config.toml is empty or zeroed, so the run cannot be re-run, resumed or evaluated"
    try:
        mapping = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "config.toml is damaged (not valid TOML), so the run cannot be re-run, resumed or evaluated"
    missing = [t for t in _config_tables() if not isinstance(mapping.get(t), dict)]
    if missing:  # the lab writes every table: a file without its last ones was cut off
        return (f"config.toml is incomplete (no [{missing[-1]}] table: cut off?), so re-running it would not repeat the run; "
                "restore it from a copy")
    try:
        from ssl_studio.config import load_config

        load_config(path)
    except Exception as exc:  # noqa: BLE001 - any refusal is a note, not a crash
        detail = str(exc).rstrip(".")
        return f"config.toml holds a setting this version cannot use ({detail})"
    return None


def _config_tables() -> list[str]:
    """The tables every config.toml the lab writes holds."""
    from ssl_studio.config import RunConfig, config_to_mapping

    return [k for k, v in config_to_mapping(RunConfig()).items() if isinstance(v, dict)]


def report_problem(run_dir: Path) -> str | None:
    path = run_dir / "report.json"
    kind = _kind(path)
    if kind == "missing":
        return None  # not evaluated yet: nothing wrong
    if kind not in (None, "unreadable"):
        return f"report.json {_not_a_file(kind)}, so evaluation results cannot be shown or saved"
    try:
        raw = read_regular(path)
    except OSError as exc:
        return f"report.json cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        data = loads_finite(raw)
    except ValueError:  # not UTF-8, not JSON, or a number that is NaN or infinite
        return "report.json is damaged (not valid JSON, or a result that is NaN or infinite); evaluate the run again to rewrite it"
    if not isinstance(data, dict):
        return "report.json does not hold evaluation results; evaluate the run again to rewrite it"
    return None


def checkpoint_problem(run_dir: Path) -> str | None:
    what = zip_problem(run_dir / "checkpoints" / "last.pt")
    if what is None:
        return None
    return f"checkpoints/last.pt {what}, so the run cannot be resumed or evaluated"


def snapshot_problems(run_dir: Path, names: Iterable[str]) -> list[str]:
    """The snapshot names (from metrics.jsonl) whose files are missing or damaged."""
    bad = []
    for name in names:
        if not isinstance(name, str) or Path(name).name != name:
            bad.append(str(name))
        elif zip_problem(run_dir / "snapshots" / name) is not None:
            bad.append(name)
    return bad


def snapshot_sentence(bad: list[str]) -> str | None:
    if not bad:
        return None
    shown = ", ".join(bad[:2]) + (f" and {len(bad) - 2} more" if len(bad) > 2 else "")
    return (f"{len(bad)} snapshot{'s' if len(bad) != 1 else ''} in snapshots/ ({shown}) "
            f"{'are' if len(bad) != 1 else 'is'} missing or damaged, so some pictures cannot be shown")


def metrics_problem(run_dir: Path, records: int, skipped: int, tail: int, live: bool) -> str | None:
    """From what the reader met in metrics.jsonl: unreadable lines, nothing readable, a cut-off end."""
    path = run_dir / "metrics.jsonl"
    kind = _kind(path)
    if kind == "missing":
        return "metrics.jsonl is missing, so there are no curves to show"
    if kind not in (None, "unreadable"):
        return f"metrics.jsonl {_not_a_file(kind)}, so there are no curves to show"
    if kind == "unreadable":
        return "metrics.jsonl cannot be read"
    if live:
        return None if not skipped else f"{skipped} line{'s' if skipped != 1 else ''} of metrics.jsonl could not be read and {'were' if skipped != 1 else 'was'} skipped"
    if records == 0:
        return "metrics.jsonl holds nothing readable (empty, zeroed or garbage), so there are no curves to show"
    parts = []
    if skipped:
        parts.append(f"{skipped} damaged line{'s' if skipped != 1 else ''} of metrics.jsonl {'were' if skipped != 1 else 'was'} skipped")
    if tail:
        parts.append("the last line of metrics.jsonl is cut off")
    return " and ".join(parts) or None


def compose(problems: Iterable[str | None]) -> str | None:
    """One sentence from the clauses that apply."""
    clauses = [p for p in problems if p]
    if not clauses:
        return None
    return "; ".join(clauses) + "."  # clauses start with a file's name, which keeps its case
