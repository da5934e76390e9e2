"""Before Start: whether a minutes budget gives the objective the steps it needs to show learning.

An objective declares a rough minimum of steps per backbone (``Objective.min_steps``, from the
lab's studies). From a training rate in images/s (the last run's on the same backbone, batch and
device, else a short forward/backward of the backbone measured on a worker thread and cached) the
advisor estimates the steps the budget buys and, when they fall far short, says so in one sentence
with the budget that would do.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal

from ssl_studio.config import RunConfig
from ssl_studio.objectives import get_objective

MEASURE_AFTER_MS = 800  # the form rests this long before a rate is measured
SHORT_BY = 2.0  # warn when the budget gives fewer than 1/SHORT_BY of the steps the objective needs
BACKBONE_TITLES = {"vit": "the ViT", "convnet": "the ConvNet", "resnet18": "the ResNet-18"}


def rate_key(cfg: RunConfig) -> tuple[str, int, str]:
    """What a measured rate depends on: the backbone, the batch and the device asked for."""
    return (cfg.model.backbone, cfg.batch_size, cfg.device)


def budget_note(cfg: RunConfig, images_per_s: float | None) -> str:
    """One sentence when ``cfg``'s minutes budget is far too short for its objective; "" otherwise."""
    minutes = cfg.budget.minutes
    cls = get_objective(cfg.objective.name)
    needed = cls.min_steps.get(cfg.model.backbone)
    if minutes is None or not needed or not images_per_s or images_per_s <= 0:
        return ""
    steps_per_minute = images_per_s * 60.0 / max(1, cfg.batch_size)
    steps = int(minutes * steps_per_minute)
    if steps * SHORT_BY >= needed:
        return ""
    need_minutes = max(1, math.ceil(needed / steps_per_minute))
    where = BACKBONE_TITLES.get(cfg.model.backbone, cfg.model.backbone)
    return (f"{cls.title} on {where} needs about {needed} steps to show learning; {minutes:g} minutes here give "
            f"about {steps}; try {need_minutes} minutes.")


def last_run_rate(runs_dir: Path, key: tuple[str, int, str]) -> float | None:
    """The images/s of the newest run under ``runs_dir`` trained with ``key``; None when there is none."""
    from ssl_studio.config import load_config

    try:
        folders = sorted((p for p in runs_dir.iterdir() if (p / "metrics.jsonl").is_file()),
                         key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for folder in folders[:50]:
        try:
            if rate_key(load_config(folder / "config.toml")) != key:
                continue
            with open(folder / "metrics.jsonl", "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 65536))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except Exception:  # noqa: BLE001 - a damaged or foreign folder says nothing about the rate
            continue
        for line in reversed(lines):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == "step" and rec.get("images_per_s"):
                return float(rec["images_per_s"])
    return None


def measure_rate(cfg: RunConfig, repeats: int = 2) -> float:
    """Images/s of a short forward/backward of ``cfg``'s backbone at its batch, per view the objective trains on."""
    import torch

    from ssl_studio.engine.device import pick_device
    from ssl_studio.models import build_backbone

    device = pick_device(cfg.device)
    model = build_backbone(cfg.model, cfg.data.resolution).to(device)
    x = torch.randn(cfg.batch_size, 3, cfg.data.resolution, cfg.data.resolution, device=device)
    views = get_objective(cfg.objective.name).num_global_views

    def step() -> None:
        out = model(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().mean().backward()

    step()  # the first call pays for allocations
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats * views
    return cfg.batch_size / max(seconds, 1e-9)


class _RateJob(QRunnable):
    def __init__(self, advisor: "BudgetAdvisor", cfg: RunConfig, key: tuple[str, int, str]):
        super().__init__()
        self.advisor, self.cfg, self.key = advisor, cfg, key

    def run(self) -> None:
        try:
            rate = last_run_rate(self.advisor.runs_dir, self.key) or measure_rate(self.cfg)
        except Exception:  # noqa: BLE001 - no estimate means no warning, never an error
            rate = 0.0
        self.advisor.measured.emit(self.key, rate)


class BudgetAdvisor(QObject):
    """Keeps ``note`` current for the configuration last given to ``check``; emits ``noteChanged``."""

    noteChanged = Signal(str)
    measured = Signal(object, float)  # key, images/s (from the worker thread)

    def __init__(self, runs_dir: Path | str = "runs", parent: QObject | None = None):
        super().__init__(parent)
        self.runs_dir = Path(runs_dir)
        self.rates: dict[tuple[str, int, str], float] = {}
        self.note = ""
        self._cfg: RunConfig | None = None
        self._pending: set[tuple[str, int, str]] = set()
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.measured.connect(self._on_measured)
        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(MEASURE_AFTER_MS)
        self._measure_timer.timeout.connect(self._measure)

    def _measure(self) -> None:
        cfg = self._cfg
        if cfg is None:
            return
        key = rate_key(cfg)
        if key not in self.rates and key not in self._pending:
            self._pending.add(key)
            self.pool.start(_RateJob(self, cfg, key))

    def check(self, cfg: RunConfig | None) -> None:
        """Judge ``cfg``'s budget now if its rate is known, else once it has been measured."""
        self._cfg = cfg
        self._measure_timer.stop()
        if cfg is None or cfg.budget.minutes is None or not get_objective(cfg.objective.name).min_steps.get(cfg.model.backbone):
            self._set("")
            return
        key = rate_key(cfg)
        if key in self.rates:
            self._set(budget_note(cfg, self.rates[key]))
        else:
            self._set("")  # the last note was for another set-up
            if key not in self._pending:
                self._measure_timer.start()  # measured once the form has rested: not on every keystroke

    def record(self, cfg: RunConfig, images_per_s: float) -> None:
        """A run's measured rate (a Step event's images/s) replaces any estimate for its key."""
        if images_per_s > 0:
            self.rates[rate_key(cfg)] = images_per_s

    def _on_measured(self, key, rate: float) -> None:
        self._pending.discard(key)
        self.rates.setdefault(key, rate)
        if self._cfg is not None and rate_key(self._cfg) == key:
            self.check(self._cfg)

    def _set(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self.noteChanged.emit(note)

    def shutdown(self) -> None:
        self._measure_timer.stop()
        self.pool.clear()
        self.pool.waitForDone(5000)
