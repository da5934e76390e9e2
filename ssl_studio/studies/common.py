"""Small pieces every study shares: a setting set by its dotted path, the runs' budget, a fresh study folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ssl_studio.params import ConfigError


def set_path(mapping: dict[str, Any], path: str, value: Any) -> None:
    """``mapping["a"]["b"] = value`` for ``path`` "a.b", making the sections on the way."""
    node = mapping
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def study_budget(steps: int | None, minutes_per_run: float) -> dict[str, Any]:
    """Each run's budget: ``steps`` optimiser steps when given, else ``minutes_per_run`` minutes (both checked)."""
    if steps is None and not minutes_per_run > 0:
        raise ConfigError("--minutes-per-run", f"must be > 0, got {minutes_per_run}")
    if steps is not None and steps < 1:
        raise ConfigError("--steps", f"must be >= 1, got {steps}")
    return {"steps": int(steps)} if steps is not None else {"minutes": float(minutes_per_run)}


def new_study_dir(out: str | Path, kind: str) -> Path:
    """``out/<date>-<time>-<kind>`` (with -2, -3... if taken), created with its ``runs`` folder."""
    base = Path(out) / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}"
    study_dir, n = base, 1
    while study_dir.exists():
        n += 1
        study_dir = base.with_name(f"{base.name}-{n}")
    (study_dir / "runs").mkdir(parents=True)
    return study_dir
