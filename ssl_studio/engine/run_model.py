"""The run model: what a run folder's events mean (curves, probes, status, summary, problems), written once.

The window's runs browser, ``ssl-studio compare`` / ``resume`` and the studies all read run folders
through ``RunModel``, so the meaning of an event is edited in one place.  No Qt here.  A folder is re-read only when its metrics.jsonl changed size or mtime, and then only
from the byte offset it had reached.  Damaged files never raise here: the track
counts unreadable lines, checks the other files when they change
(``engine.run_health``), and ``problem`` says what is wrong in one sentence.  A run
whose metrics say "running" while no process holds its lock (``engine.run_lock``)
is shown as interrupted, and can be resumed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_studio.config import config_to_mapping, load_config
from ssl_studio.engine import run_health
from ssl_studio.engine.evaluate import PROTOCOLS
from ssl_studio.engine.run_lock import run_is_live
from ssl_studio.engine.grow_array import GrowArray
from ssl_studio.engine.runs import RunFolder, scan_metrics
from ssl_studio.regular_file import read_regular

RESUMABLE = ("interrupted", "stopped", "failed")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Keys (in first-seen order) whose values are not the same in every config; a missing key differs."""
    keys: list[str] = []
    seen = set()
    for cfg in configs:
        for k in cfg:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    missing = object()
    return [k for k in keys if len({repr(c.get(k, missing)) for c in configs}) > 1]


def is_number(v: Any) -> bool:
    """A JSON number that is not a bool (metrics.jsonl is read from any writer)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_is_number = is_number


class RunModel:
    """One run folder, read incrementally: its summary row, its curves, and what is wrong with it.

    ``update()`` reads what was appended since the last call.  Curves: ``steps``/``loss``, the probes'
    ``probe_steps``/``ranks``/``knns``, and ``metric_curves`` (an objective's step metrics, key ->
    (steps, values)).  ``last_end`` is the last started/finished/failed record (whether a run is complete).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self._key: tuple | None = None
        self._config_key: tuple | None = ()  # () = never looked: a missing file is a change too
        self._checkpoint_key: tuple | None = ()
        self.report_key: tuple | None = None
        self._report: dict[str, Any] | None = None
        self.records_seen = 0
        self.skipped_lines = 0  # lines of metrics.jsonl that could not be read
        self.tail = 0  # bytes after its last newline
        self.bad_snapshots: list[str] = []
        self._file_problems: dict[str, str | None] = {}
        self.config_ok = False
        self.config_flat: dict[str, Any] | None = None
        self.objective = self.data = "?"
        self.recorded_status = "unknown"  # what metrics.jsonl says
        self.status = "unknown"  # what the browser shows: "running" becomes "interrupted" when nobody holds the lock
        self.step = 0
        self.knn: float | None = None
        self.rank: float | None = None
        self.started: float | None = None
        self.summary: dict[str, Any] = {}
        self.evaluated: dict[str, Any] = {}
        self.steps, self.loss = GrowArray(), GrowArray()
        self.probe_steps, self.ranks, self.knns = GrowArray(64), GrowArray(64), GrowArray(64)
        self.metric_curves: dict[str, tuple[GrowArray, GrowArray]] = {}
        self.last_end: dict[str, Any] | None = None
        self.steps_per_epoch: int | None = None
        self.mtime = 0.0

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def valid(self) -> bool:
        """Listed if something in it could be read, or if it has a run folder's shape (a damaged run is still a
        run, with a sentence saying what is wrong); a folder of garbage is not a run."""
        if self.records_seen > 0 or self.config_ok:
            return True
        has_record = any((self.path / n).exists() for n in ("metrics.jsonl", "config.toml"))
        return has_record and any((self.path / n).is_dir() for n in ("checkpoints", "snapshots"))

    @property
    def live(self) -> bool:
        return self.status == "running"

    @property
    def resumable(self) -> bool:
        """Resume can go on from here: not live, not completed, with a config and a checkpoint that look sound."""
        return (self.status in RESUMABLE and self.config_ok and self._file_problems.get("checkpoint") is None
                and self._checkpoint_key is not None)

    @property
    def problem(self) -> str | None:
        """What is wrong with the folder's files, in one sentence (None when nothing is)."""
        return run_health.compose([
            run_health.metrics_problem(self.path, self.records_seen, self.skipped_lines, self.tail, self.live),
            self._file_problems.get("config"),
            self._file_problems.get("report"),
            None if self.live or self.status == "unknown" and not self.records_seen else self._file_problems.get("checkpoint"),
            run_health.snapshot_sentence(self.bad_snapshots),
        ])

    def _stat(self, path: Path) -> tuple | None:
        try:
            st = path.stat()
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def update(self) -> bool:
        """Read what was appended since the last call; True if anything changed."""
        metrics = self.path / "metrics.jsonl"
        config = self.path / "config.toml"
        key = self._stat(metrics)
        if key is not None:
            self.mtime = key[0] / 1e9
        config_key = self._stat(config)
        changed = False
        if self._report_stat() != self.report_key:  # evaluated here, by ssl-studio eval, or elsewhere
            self._report = None
            self.report()
            self._file_problems["report"] = run_health.report_problem(self.path)
            changed = True
        if config_key != self._config_key:
            self._config_key = config_key
            self.config_flat = None
            self.config_ok = False
            self._file_problems["config"] = run_health.config_problem(self.path)
            if config_key is not None and self._file_problems["config"] is None:
                try:
                    cfg = load_config(config)
                    self.config_flat = flatten(config_to_mapping(cfg))
                    self.config_ok = True
                    if self.objective == "?":
                        self.objective, self.data = cfg.objective.name, cfg.data.source
                except Exception:  # noqa: BLE001 - run_health already judged it; never take the window down
                    pass
            if not self.config_ok and config_key is not None:  # a config of a newer version, or hand-edited: still diffable raw
                self.config_flat = self._raw_config(config)
            changed = True
        checkpoint_key = self._stat(self.path / "checkpoints" / "last.pt")
        if checkpoint_key != self._checkpoint_key:
            self._checkpoint_key = checkpoint_key
            self._file_problems["checkpoint"] = run_health.checkpoint_problem(self.path)
            changed = True
        if key != self._key:
            if key is not None and key[1] < self.offset:  # rewritten from scratch: read again
                self._reset_metrics()
            self._key = key
            chunk = scan_metrics(metrics, self.offset)
            self.offset, self.tail = chunk.offset, chunk.tail
            self.skipped_lines += chunk.skipped
            if chunk.records:
                self._consume(chunk.records)
            changed = True
        status = self.recorded_status
        if status == "running" and not run_is_live(self.path):
            status = "interrupted"
        if status != self.status:
            self.status = status
            changed = True
        return changed

    @staticmethod
    def _raw_config(path: Path) -> dict[str, Any] | None:
        try:
            return flatten(tomllib.loads(read_regular(path).decode("utf-8")))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None

    def _reset_metrics(self) -> None:
        self.offset = 0
        self.records_seen = self.skipped_lines = self.tail = 0
        self.bad_snapshots = []
        self.recorded_status, self.step, self.knn, self.rank, self.started = "unknown", 0, None, None, None
        self.summary, self.evaluated = {}, {}
        self.metric_curves, self.last_end, self.steps_per_epoch = {}, None, None
        for arr in (self.steps, self.loss, self.probe_steps, self.ranks, self.knns):
            arr.clear()

    def _consume(self, records: list[dict[str, Any]]) -> None:
        steps, losses = [], []
        snapshots = []
        for r in records:
            if not isinstance(r, dict):
                continue
            ev = r.get("event")
            self.records_seen += 1
            if "snapshot" in r:
                snapshots.append(r["snapshot"])
            if ev == "step":
                s, loss = r.get("step"), r.get("loss")
                if _is_number(s):
                    self.step = int(s)
                    if _is_number(loss):
                        steps.append(s)
                        losses.append(loss)
                    self._add_metrics(s, r.get("metrics"))
            elif ev == "probe":
                knn, rank = r.get("knn_acc"), r.get("effective_rank")
                self.knn = knn if _is_number(knn) else self.knn
                self.rank = rank if _is_number(rank) else self.rank
                if _is_number(r.get("step")):
                    self.probe_steps.append(r["step"])
                    self.ranks.append(rank if _is_number(rank) else np.nan)
                    self.knns.append(knn if _is_number(knn) else np.nan)
            elif ev == "started":
                self.last_end = r
                per_epoch = r.get("steps_per_epoch")
                self.steps_per_epoch = per_epoch if isinstance(per_epoch, int) and not isinstance(per_epoch, bool) else None
                self.objective, self.data = str(r.get("objective", "?")), str(r.get("data", "?"))
                self.started, self.recorded_status = r.get("time") if _is_number(r.get("time")) else self.started, "running"
                resumed = r.get("resumed_from_step")
                if _is_number(resumed) and resumed > 0:  # the steps after that checkpoint were lost and are trained again
                    self.steps.extend(steps)
                    self.loss.extend(losses)
                    steps, losses = [], []
                    self._rewind(resumed)
            elif ev == "finished":
                self.last_end = r
                self.recorded_status = str(r.get("status", "completed"))
                if isinstance(r.get("summary"), dict):
                    self.summary = r["summary"]
            elif ev == "failed":
                self.last_end = r
                self.recorded_status = str(r.get("status", "failed"))
            elif ev == "evaluated" and isinstance(r.get("results"), dict):
                self.evaluated.update(r["results"])
        if steps:
            self.steps.extend(steps)
            self.loss.extend(losses)
        if snapshots:
            self.bad_snapshots += run_health.snapshot_problems(self.path, snapshots)

    def _add_metrics(self, step: float, metrics: Any) -> None:
        """An objective's step metrics (``Step.metrics``): one curve per numeric key."""
        if not isinstance(metrics, dict):
            return
        for key, value in metrics.items():
            if isinstance(key, str) and _is_number(value):
                xs, ys = self.metric_curves.setdefault(key, (GrowArray(256), GrowArray(256)))
                xs.append(step)
                ys.append(value)

    def _rewind(self, step: float) -> None:
        """Forget the curves past ``step``: a resumed run trains those steps again from its checkpoint."""
        pairs = [(self.steps, (self.loss,)), (self.probe_steps, (self.ranks, self.knns))]
        pairs += [(xs, (ys,)) for xs, ys in self.metric_curves.values()]
        for xs, ys in pairs:
            keep = int(np.searchsorted(xs.view, step, side="right")) if np.all(np.diff(xs.view) >= 0) else xs.n
            for arr in (xs, *ys):
                arr.n = min(arr.n, keep)
        self.step = min(self.step, int(step))

    def _report_stat(self) -> tuple | None:
        try:
            st = (self.path / "report.json").stat()
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def report(self) -> dict[str, Any]:
        """report.json, re-read only when it changed (a stat per call)."""
        key = self._report_stat()
        if self._report is None or key != self.report_key:
            self.report_key = key
            self._report = {}
            if key is not None:
                self._report = RunFolder(self.path, create=False).read_report()
        return self._report

    def evaluated_protocols(self) -> list[str]:
        """The protocols report.json holds results for, in PROTOCOLS order."""
        report = self.report() or self.evaluated
        return [p for p in PROTOCOLS if isinstance(report.get(p), dict)]

    def results(self) -> dict[str, Any]:
        """The comparison row: summary numbers, then report.json, then the finished summary."""
        row: dict[str, Any] = {"objective": self.objective, "data": self.data, "status": self.status, "steps": self.step,
                               "probe k-NN": self.knn, "effective rank": self.rank}
        report = flatten(self.report() or self.evaluated)  # Evaluated events stand in for a missing report.json
        row.update({f"report {k}": v for k, v in report.items()})
        for k, v in flatten(self.summary).items():
            if f"report knn.{k.removeprefix('knn_')}" in row and k.startswith("knn_"):
                continue  # the same k-NN numbers the report already holds
            row[f"summary {k}"] = v
        return row




@dataclass
class RunSummary:
    """What the runs browser lists for one folder."""

    path: Path
    objective: str
    data: str
    status: str  # running | interrupted | completed | stopped | failed | diverged at step N | unknown
    step: int
    knn_acc: float | None
    effective_rank: float | None
    started: float | None
    problem: str | None = None  # one sentence when a file of the folder is damaged or missing
    skipped_lines: int = 0


def summarize_run(path: str | Path) -> RunSummary | None:
    """The browser's row for one folder (None when it holds neither metrics.jsonl nor config.toml); ``status``
    is "interrupted" when the run says it is running but no process holds its lock (killed, or the machine went
    down)."""
    path = Path(path)
    if not (path / "metrics.jsonl").exists() and not (path / "config.toml").exists():
        return None
    model = RunModel(path)
    model.update()
    return RunSummary(path, model.objective, model.data, model.status, model.step, model.knn, model.rank, model.started,
                      model.problem, model.skipped_lines)


def list_runs(root: str | Path) -> list[RunSummary]:
    """A summary per run folder directly under ``root``, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [s for p in sorted(root.iterdir()) if p.is_dir() and (s := summarize_run(p)) is not None]
