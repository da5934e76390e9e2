"""Before Start: whether a minutes budget gives the objective the steps it needs to show learning.

An objective declares a rough minimum of steps per backbone (``Objective.min_steps``, from the
lab's studies). From a training rate in images/s (the last run's of the same objective, backbone, batch
and device, else a few whole training steps of the objective (views, loss, backward, update, after-step)
on built-in shapes at the run's resolution, measured on a worker thread and cached) the
advisor estimates the steps the budget buys and, when they fall far short, says so in one sentence
with the budget that would do.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from ssl_studio.config import RunConfig
from ssl_studio.gui.jobs import private_pool, start_job
from ssl_studio.objectives import get_objective

MEASURE_AFTER_MS = 800  # the form rests this long before a rate is measured
SHORT_BY = 2.0  # warn when the budget gives fewer than 1/SHORT_BY of the steps the objective needs
BACKBONE_TITLES = {"vit": "the ViT", "convnet": "the ConvNet", "resnet18": "the ResNet-18"}


RateKey = tuple[str, str, int, str]


def rate_key(cfg: RunConfig) -> RateKey:
    """What a measured rate depends on: the objective (its heads, views and targets), the backbone, the batch and
    the device asked for."""
    return (cfg.objective.name, cfg.model.backbone, cfg.batch_size, cfg.device)


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


def last_run_rate(runs_dir: Path, key: RateKey) -> float | None:
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
    """Images/s of ``cfg``'s whole training step as the trainer runs it: the objective's views, loss, backward, the run's
    optimiser update and its after-step (EMA targets, queues), in the run's precision, on built-in shapes at the run's
    resolution (the content does not change the cost).

    The backbone's forward/backward alone left out the heads, the teacher and the extra views (about 1.5x too fast
    for DINO)."""
    import copy

    import torch

    from ssl_studio.engine.build import build_objective, build_views, load_data, resolved_optim
    from ssl_studio.engine.device import autocast, pick_channels_last, pick_device, pick_precision
    from ssl_studio.engine.optim import build_optimizer
    from ssl_studio.objectives import Batch

    device = pick_device(cfg.device)
    dtype = pick_precision(cfg.precision, device)  # as the trainer runs it
    channels_last = pick_channels_last(cfg.channels_last, device, cfg.model.backbone, dtype)
    probe_cfg = copy.deepcopy(cfg)
    probe_cfg.data.source = "shapes"
    probe_cfg.data.num_images = max(64, 2 * cfg.batch_size)
    probe_cfg.model.init_from = ""
    with torch.random.fork_rng(devices=[]):
        imageset = load_data(probe_cfg)
        objective = build_objective(probe_cfg, imageset).to(device)
        views = build_views(probe_cfg, imageset)
    if channels_last:
        objective.to(memory_format=torch.channels_last)
    objective.train()
    opt_name, _, weight_decay = resolved_optim(probe_cfg)  # the run's own optimiser (LARS, AdamW, ...), at a tiny rate
    optimizer = build_optimizer(opt_name, objective.parameter_groups(weight_decay), 1e-6, cfg.optim.momentum)
    n = min(cfg.batch_size, len(imageset.images))
    images = imageset.images[:n].to(device)
    labels = imageset.labels[:n].to(device) if imageset.labels is not None else None
    captions = list(imageset.captions[:n]) if imageset.captions is not None else None
    indices = torch.arange(n, device=device)

    def step() -> None:
        with torch.no_grad():
            plain = views.plain(images)
            batch_views = views(images, objective.num_global_views, objective.num_local_views)
            if channels_last:
                batch_views = [v.contiguous(memory_format=torch.channels_last) for v in batch_views]
        with autocast(device, dtype):
            out = objective(Batch(views=batch_views, images=images, indices=indices, labels=labels, captions=captions,
                                  plain=plain), 0.5)
        optimizer.zero_grad(set_to_none=True)
        out.loss.float().backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        objective.after_step(0.5)

    step()  # the first call pays for allocations
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return n / max(seconds, 1e-9)


def estimate_rate(runs_dir: Path, cfg: RunConfig, key: RateKey) -> float:
    """The last run's rate for ``key``, else a measured one; 0 when neither can be had (no estimate, no warning)."""
    try:
        return last_run_rate(runs_dir, key) or measure_rate(cfg)
    except Exception:  # noqa: BLE001 - no estimate means no warning, never an error
        return 0.0


class BudgetAdvisor(QObject):
    """Keeps ``note`` current for the configuration last given to ``check``; emits ``noteChanged``."""

    noteChanged = Signal(str)
    measured = Signal(object, float)  # key, images/s (a background job's result)

    def __init__(self, runs_dir: Path | str = "runs", parent: QObject | None = None):
        super().__init__(parent)
        self.runs_dir = Path(runs_dir)
        self.rates: dict[RateKey, float] = {}
        self.note = ""
        self._cfg: RunConfig | None = None
        self._pending: set[RateKey] = set()
        self.pool = private_pool(self)
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
            start_job(estimate_rate, self.runs_dir, cfg, key, pool=self.pool,
                      on_returned=lambda rate: self.measured.emit(key, rate))

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
