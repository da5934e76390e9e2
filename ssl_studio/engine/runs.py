"""The run folder: the durable record of a run, written as it goes and readable by anyone.

    runs/<date>-<time>-<objective>-<dataset>/
      config.toml     the exact configuration (re-runnable with ``ssl-studio train --config``)
      metrics.jsonl   one JSON object a line, appended and flushed
      snapshots/      probe results and visuals, .npz
      checkpoints/    last.pt (written to a temp file, then renamed)
      report.json     evaluation results

The GUI reads run folders written by any process, live or finished, through
``read_metrics`` and ``read_snapshot``; nothing here imports Qt.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_studio.config import RunConfig, load_config, save_config
from ssl_studio.engine.events import Event, Failed, Finished, Probe, Started, Visuals


def _slug(text: str) -> str:
    text = text.split(":", 1)[-1] if ":" in text else text
    text = Path(text.rstrip("/")).name or text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "data"


def new_run_dir(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, cfg.objective.name, _slug(cfg.data.source)]
    if cfg.name:
        parts.append(_slug(cfg.name))
    base = Path(cfg.out) / "-".join(parts)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    if isinstance(value, torch.Tensor):
        return _json_safe(value.item() if value.numel() == 1 else value.tolist())
    return value


class RunFolder:
    """Writes one run's folder; an events callback, so it sees exactly what the GUI sees."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if create:
            (self.path / "snapshots").mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self._metrics = None

    # -- paths -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def report_path(self) -> Path:
        return self.path / "report.json"

    # -- writing -----------------------------------------------------------------------
    def write_config(self, cfg: RunConfig) -> None:
        save_config(cfg, self.config_path)

    def append(self, record: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = open(self.metrics_path, "a", encoding="utf-8")
        self._metrics.write(json.dumps(_json_safe(record), separators=(",", ":")) + "\n")
        self._metrics.flush()

    def __call__(self, event: Event) -> None:
        record = event.to_record()
        if isinstance(event, Probe):
            name = f"probe-{event.step:07d}.npz"
            arrays = {k: v for k, v in (("spectrum", event.spectrum), ("points2d", event.points2d), ("labels", event.labels),
                                        ("indices", event.indices)) if v is not None}
            if event.final and event.features is not None:  # one copy per run: the runs browser's neighbours and t-SNE
                arrays["features"] = event.features.astype(np.float16)
            self._save_npz(name, arrays)
            record["snapshot"] = name
        elif isinstance(event, Visuals):
            name = f"visuals-{event.kind}-{event.step:07d}.npz"
            self._save_npz(name, event.arrays)
            record["snapshot"] = name
        self.append(record)
        if isinstance(event, (Finished, Failed)) and self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def _save_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        final = self.path / "snapshots" / name
        tmp = final.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, final)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomic: a crash mid-write leaves the previous checkpoint intact."""
        tmp = self.checkpoint_path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def write_report(self, section: str, results: dict[str, Any]) -> dict[str, Any]:
        report = self.read_report()
        report[section] = _json_safe(results)
        tmp = self.report_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
        os.replace(tmp, self.report_path)
        return report

    # -- reading -----------------------------------------------------------------------
    def read_config(self) -> RunConfig:
        return load_config(self.config_path)

    def read_report(self) -> dict[str, Any]:
        if not self.report_path.exists():
            return {}
        try:
            return json.loads(self.report_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}

    def load_checkpoint(self, map_location: str | torch.device = "cpu", resume: bool = False) -> dict[str, Any]:
        """``checkpoints/last.pt``, loaded without running code and checked (``checkpoint_file.read_checkpoint``)."""
        from ssl_studio.engine.checkpoint_file import read_checkpoint

        return read_checkpoint(self.checkpoint_path, map_location=map_location, resume=resume)

    def read_snapshot(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.path / "snapshots" / name, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def read_metrics(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records appended since byte ``offset``, and the new offset (a half-written last line waits)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return [], offset
    records = []
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records, offset + end + 1


@dataclass
class RunSummary:
    """What the runs browser lists for one folder."""

    path: Path
    objective: str
    data: str
    status: str  # running | completed | stopped | failed | diverged at step N | unknown
    step: int
    knn_acc: float | None
    effective_rank: float | None
    started: float | None


def summarize_run(path: str | Path) -> RunSummary | None:
    path = Path(path)
    if not (path / "metrics.jsonl").exists() and not (path / "config.toml").exists():
        return None
    records, _ = read_metrics(path)
    objective = data = "?"
    status, step, knn, rank, started = "unknown", 0, None, None, None
    for r in records:
        ev = r.get("event")
        if ev == "started":
            objective, data, started, status = r.get("objective", "?"), r.get("data", "?"), r.get("time"), "running"
        elif ev == "step":
            step = r.get("step", step)
        elif ev == "probe":
            knn, rank = r.get("knn_acc", knn), r.get("effective_rank", rank)
        elif ev == "finished":
            status = r.get("status", "completed")
        elif ev == "failed":
            status = r.get("status", "failed")
    if objective == "?" and (path / "config.toml").exists():
        try:
            cfg = load_config(path / "config.toml")
            objective, data = cfg.objective.name, cfg.data.source
        except Exception:  # noqa: BLE001 - a broken config still lists the folder
            pass
    return RunSummary(path, objective, data, status, step, knn, rank, started)


def list_runs(root: str | Path) -> list[RunSummary]:
    root = Path(root)
    if not root.is_dir():
        return []
    out = [s for p in sorted(root.iterdir()) if p.is_dir() and (s := summarize_run(p)) is not None]
    return out


def record_to_event(record: dict[str, Any], folder: RunFolder | None = None) -> Event | None:
    """Rebuild an event from a metrics.jsonl line (and its snapshot), so a run read from disk
    reaches the panels exactly like a live one."""
    import dataclasses

    from ssl_studio.engine.events import EVENT_TYPES

    cls = EVENT_TYPES.get(record.get("event", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in record.items() if k in names}
    snap = record.get("snapshot")
    if snap and folder is not None and (folder.path / "snapshots" / snap).exists():
        try:
            kwargs.update({k: v for k, v in folder.read_snapshot(snap).items() if k in names} if cls is not Visuals
                          else {"arrays": folder.read_snapshot(snap)})
        except (OSError, ValueError):
            pass
    try:
        return cls(**kwargs)
    except TypeError:  # a line from an older or newer version with missing fields
        return None


def replay_events(path: str | Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events recorded in a run folder since ``offset`` (bytes of metrics.jsonl), and the new offset."""
    folder = RunFolder(path, create=False)
    records, offset = read_metrics(folder.metrics_path, offset)
    events = [e for r in records if (e := record_to_event(r, folder)) is not None]
    return events, offset
