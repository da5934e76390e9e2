"""The run folder: the durable record of a run, written as it goes and readable by anyone.

    runs/<date>-<time>-<objective>-<dataset>/
      config.toml     the exact configuration (re-runnable with ``ssl-studio train --config``)
      metrics.jsonl   one JSON object a line, appended and flushed
      snapshots/      probe results and visuals, .npz
      checkpoints/    last.pt (written to a temp file, synced, then renamed)
      report.json     evaluation results
      .lock           held (flock) by the process training the run; free means nobody is (run_lock)

Any process reads run folders, live or finished, through ``scan_metrics`` and
``read_snapshot``; what the records mean (status, curves, summary) is ``run_model``'s
job, and replaying them as events is ``replay_events``'.  Nothing here imports Qt.  Writers never leave a
half-written file in place of a good one and turn a failed write into a ``RunWriteError``
(one sentence, see ``run_writes``); readers skip and count what they cannot read.
"""

from __future__ import annotations

import dataclasses
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
from ssl_studio.engine.events import Event, Failed, Finished, Probe, Visuals
from ssl_studio.engine.run_health import loads_finite
from ssl_studio.engine.run_writes import RunWriteError, atomic_write, describe_write_error, remove_quietly
from ssl_studio.regular_file import open_own_regular, open_regular, read_regular


def _slug(text: str) -> str:
    text = text.split(":", 1)[-1] if ":" in text else text
    text = Path(text.rstrip("/")).name or text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "data"


MAX_SAME_NAME = 1000


def new_run_dir(cfg: RunConfig) -> Path:
    """Create and return a fresh run folder under ``cfg.out``.

    Two runs started in the same second get the same name; creating the folder is the
    claim (``mkdir`` either makes it or fails), so the second takes ``-2``, ``-3``, ...
    A folder that cannot be made raises ``RunWriteError`` with one sentence.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parts = [stamp, cfg.objective.name, _slug(cfg.data.source)]
    if cfg.name:
        parts.append(_slug(cfg.name))
    base = Path(cfg.out) / "-".join(parts)
    if base.parent.exists() and not base.parent.is_dir():
        from ssl_studio.params import ConfigError

        raise ConfigError("out", f"is {base.parent}, which is a file, not a folder; choose a folder for the runs")
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, MAX_SAME_NAME + 1):
            path = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                os.makedirs(path, exist_ok=False)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunWriteError(describe_write_error(exc, f"a run folder in {base.parent}", base.parent, False), base, exc.errno) from None
    raise RunWriteError(f"{base.parent} already holds {MAX_SAME_NAME} run folders named {base.name}; choose another --out or name.",
                        base)


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


class _KeepWriteError:
    """A binary file's ``write`` that remembers the ``OSError`` it raised (torch.save reports only its own)."""

    def __init__(self, fh):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


class RunFolder:
    """Writes one run's folder; an events callback, so it sees exactly what the GUI sees."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if create:
            try:
                (self.path / "snapshots").mkdir(parents=True, exist_ok=True)
                (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._write_error(exc, self.path / "snapshots") from None
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
    def has_checkpoint(self) -> bool:
        try:
            return self.checkpoint_path.is_file() and self.checkpoint_path.stat().st_size > 0
        except OSError:
            return False

    def _write_error(self, exc: OSError, file: Path) -> RunWriteError:
        try:
            name = str(Path(file).relative_to(self.path))
        except ValueError:
            name = str(file)
        return RunWriteError(describe_write_error(exc, name, self.path, self.has_checkpoint()), Path(file), exc.errno)

    def write_config(self, cfg: RunConfig) -> None:
        tmp = self.config_path.with_suffix(".toml.tmp")
        try:
            save_config(cfg, self.config_path)
        except OSError as exc:
            remove_quietly(tmp)
            raise self._write_error(exc, self.config_path) from None
        except BaseException:
            remove_quietly(tmp)
            raise

    def write_text(self, name: str, text: str) -> None:
        """A small text file of the run (an objective's artifact), written whole or not at all."""
        atomic_write(self.path / name, lambda fh: fh.write(text.encode("utf-8")), self.path, self.has_checkpoint)

    def write_error_text(self, text: str) -> bool:
        """error.txt (a traceback for the curious); on a full disk this fails too, and must not raise."""
        try:
            atomic_write(self.path / "error.txt", lambda fh: fh.write(text.encode("utf-8", "replace")), self.path, lambda: False)
            return True
        except Exception:  # noqa: BLE001 - the run's own failure is what gets reported
            return False

    def _open_metrics(self):
        """Append mode, starting on a fresh line: a line cut off by a crash must not swallow the next record.

        Only a regular file of the folder itself is appended to: a named pipe would block the run, a device
        swallow its records, and a link write them into whatever file it names."""
        fd = open_own_regular(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        fh = os.fdopen(fd, "a", encoding="utf-8")
        try:
            if fh.tell() > 0:
                with open(self.metrics_path, "rb") as rb:
                    rb.seek(-1, os.SEEK_END)
                    if rb.read(1) != b"\n":
                        fh.write("\n")
        except BaseException:
            fh.close()
            raise
        return fh

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_json_safe(record), separators=(",", ":")) + "\n"
        try:
            if self._metrics is None:
                self._metrics = self._open_metrics()
            self._metrics.write(line)
            self._metrics.flush()
        except OSError as exc:
            self.close()  # the next append re-opens and starts on a fresh line after whatever reached the disk
            raise self._write_error(exc, self.metrics_path) from None

    def close(self) -> None:
        fh, self._metrics = self._metrics, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass

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
        try:
            self.append(record)
        finally:
            if isinstance(event, (Finished, Failed)):
                self.close()

    def _save_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        final = self.path / "snapshots" / name
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        atomic_write(final, lambda fh: np.savez_compressed(fh, **payload), self.path, self.has_checkpoint,
                     tmp=final.with_suffix(".tmp.npz"))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomic: a crash or a full disk mid-write leaves the previous checkpoint intact and no temporary file.

        Serialised straight into the temporary file (an in-memory copy first doubled the cost),
        through a writer that keeps the file system's ``OSError``: torch wraps it in a bare
        RuntimeError, and the sentence for a full disk needs its errno.  Synced before the
        rename, so that a power cut cannot leave an empty ``last.pt`` behind.
        """
        def write(fh) -> None:
            out = _KeepWriteError(fh)
            try:
                torch.save(state, out)
            except RuntimeError:
                if out.error is not None:
                    raise out.error from None
                raise

        atomic_write(self.checkpoint_path, write, self.path, self.has_checkpoint, tmp=self.checkpoint_path.with_suffix(".pt.tmp"),
                     sync=True)

    def write_report(self, section: str, results: dict[str, Any]) -> dict[str, Any]:
        report = self.read_report()
        report[section] = _json_safe(results)
        text = json.dumps(report, indent=2)
        atomic_write(self.report_path, lambda fh: fh.write(text.encode("utf-8")), self.path, self.has_checkpoint,
                     tmp=self.report_path.with_suffix(".json.tmp"))
        return report

    # -- reading -----------------------------------------------------------------------
    def read_config(self) -> RunConfig:
        return load_config(self.config_path)

    def read_report(self) -> dict[str, Any]:
        """report.json's sections; {} when it is missing or damaged (a new evaluation rewrites it whole)."""
        try:
            data = loads_finite(read_regular(self.report_path))
        except (OSError, ValueError):  # missing, a folder, a named pipe or device, not UTF-8, not JSON, NaN or infinite
            return {}
        return data if isinstance(data, dict) else {}

    def load_checkpoint(self, map_location: str | torch.device = "cpu", resume: bool = False) -> dict[str, Any]:
        """``checkpoints/last.pt``, loaded without running code and checked (``checkpoint_file.read_checkpoint``)."""
        from ssl_studio.engine.checkpoint_file import read_checkpoint

        return read_checkpoint(self.checkpoint_path, map_location=map_location, resume=resume)

    def read_snapshot(self, name: str) -> dict[str, np.ndarray]:
        with open_regular(self.path / "snapshots" / name) as fh, np.load(fh, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


@dataclass
class MetricsChunk:
    """What one read of metrics.jsonl found: the records, where to go on from, and what it could not use."""

    records: list[dict[str, Any]]
    offset: int
    skipped: int = 0  # complete lines that are not a JSON object (damaged, zeroed, or from a foreign writer)
    tail: int = 0  # bytes after the last newline: a line being written, or one cut off by a crash


def scan_metrics(path: str | Path, offset: int = 0) -> MetricsChunk:
    """Records appended since byte ``offset``; a half-written last line waits; never raises."""
    path = Path(path)
    if path.is_dir() and path.name != "metrics.jsonl":
        path = path / "metrics.jsonl"
    try:
        with open_regular(path) as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:  # missing, a folder, a named pipe or device, unreadable: nothing to read (run_health says why)
        return MetricsChunk([], offset)
    end = data.rfind(b"\n")
    if end < 0:
        return MetricsChunk([], offset, tail=len(data))
    records, skipped = [], 0
    for line in data[: end + 1].split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError (NUL bytes, garbage)
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return MetricsChunk(records, offset + end + 1, skipped, len(data) - end - 1)


def read_metrics(path: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records (JSON objects) appended since byte ``offset``, and the new offset; unreadable lines are skipped
    (``scan_metrics`` counts them)."""
    chunk = scan_metrics(path, offset)
    return chunk.records, chunk.offset


_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
               "dict": (dict,), "list": (list,)}


def _fits(value: Any, annotation: str) -> bool:
    """Whether a JSON value can stand for a field annotated ``annotation`` (a string: events use
    postponed annotations); arrays and unknown types are not checked."""
    allowed: tuple = ()
    for part in annotation.split("|"):
        base = part.strip().split("[", 1)[0]
        if base not in _JSON_TYPES:
            return True
        allowed += _JSON_TYPES[base]
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def record_to_event(record: dict[str, Any], folder: RunFolder | None = None) -> Event | None:
    """Rebuild an event from a metrics.jsonl line (and its snapshot), so a run read from disk
    reaches the panels exactly like a live one.  A line whose values do not fit the event
    (damaged, hand-edited, another version) and an unreadable snapshot give None or no arrays,
    never an exception."""
    from ssl_studio.engine.events import EVENT_TYPES

    if not isinstance(record, dict):
        return None
    kind = record.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in record.items() if k in fields}
    if any(v is not None and not _fits(v, str(fields[k].type)) for k, v in kwargs.items()):
        return None
    snap = record.get("snapshot")
    if isinstance(snap, str) and snap and Path(snap).name == snap and folder is not None:
        try:
            arrays = folder.read_snapshot(snap)
            kwargs.update({k: v for k, v in arrays.items() if k in fields} if cls is not Visuals else {"arrays": arrays})
        except Exception:  # noqa: BLE001 - missing, truncated, zeroed, garbage, a folder: the event without its arrays
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
