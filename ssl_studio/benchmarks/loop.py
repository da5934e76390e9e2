"""Where the wall time of a real training run goes: the step, the host work around it, writing, probes, checkpoints.

A ``Trainer`` runs a fixed number of steps of the default configuration (SimCLR on the ConvNet, the
procedural shapes) into a temporary run folder, with timers around its own calls: the views
(``_make_batch``), the rest of the objective's step (``_train_step``), reading the step's values and
building its event (``_report``), handing events out (``emit``: the lock heartbeat, the callback), writing
the run folder (``RunFolder.__call__``: metrics.jsonl lines), probes (``_probe``, ``_visuals``, with their
writes; the pictures amortised at ``probe.visuals_every``) and checkpoints (``_checkpoint``).  Nested calls count once, in the innermost part, except inside
probes and checkpoints, which include everything they call.  What the loop does between those calls (the
stop/pause/budget logic) is ``loop``.  Probes and checkpoints are amortised at the run's own intervals
(``probe.every`` steps, one checkpoint per ``CHECKPOINT_EVERY_S`` seconds), so a short run still gives the
shares of a long one.  The closing probe is left out and the closing evaluation is not run: they happen once, after the budget.
Results: docs/studies/recipes.md.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

from ssl_studio.config import RunConfig
from ssl_studio.engine import trainer as trainer_module
from ssl_studio.engine.runs import RunFolder

PER_STEP = ("views", "step", "host", "events", "writing", "loop")
AMORTISED = ("probes", "checkpoints")
PARTS = PER_STEP + AMORTISED


class _Timers:
    """Exclusive time per part: a call's time minus that of the timed calls inside it (unless the part is inclusive)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [child seconds, inclusive]

    def wrap(self, part, fn, inclusive: bool = False):
        def timed(*args, **kwargs):
            if any(entry[1] for entry in self._stack):  # inside a probe or a checkpoint: it counts there
                return fn(*args, **kwargs)
            name = part(*args, **kwargs) if callable(part) else part
            self._stack.append([0.0, inclusive])
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                child = self._stack.pop()[0]
                self.seconds[name] += dt - child
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += dt
        return timed


def _default_config(steps: int, batch_size: int | None, probe_size: int | None, num_images: int | None, out: str) -> RunConfig:
    cfg = RunConfig()
    cfg.budget.steps = steps
    if batch_size is not None:
        cfg.batch_size = batch_size
    if probe_size is not None:
        cfg.probe.size = probe_size
    if num_images is not None:
        cfg.data.num_images = num_images
    cfg.out = out
    return cfg


def bench_loop(steps: int = 100, batch_size: int | None = None, probe_size: int | None = None,
               num_images: int | None = None, config: RunConfig | None = None) -> dict:
    """Run the default SimCLR configuration for ``steps`` steps and return each part's seconds per step and share.

    ``batch_size``, ``probe_size`` and ``num_images`` shrink the run (tests); ``config`` replaces it whole (its
    ``budget.steps`` and ``out`` are set here).  Returns ``steps``, ``seconds_per_step`` (all parts, probes and
    checkpoints amortised), ``per_step`` and ``shares`` by part, ``probe_s`` and ``checkpoint_s`` (one of each).
    """
    timers = _Timers()
    with tempfile.TemporaryDirectory(prefix="ssl-studio-bench-loop-") as tmp:
        cfg = config or _default_config(steps, batch_size, probe_size, num_images, tmp)
        cfg.budget.minutes = cfg.budget.epochs = None
        cfg.budget.steps, cfg.out = steps, tmp
        trainer = trainer_module.Trainer(cfg, run_dir=Path(tmp) / "run")
        original_call = RunFolder.__call__
        t = trainer
        t._make_batch = timers.wrap("views", t._make_batch)
        t._train_step = timers.wrap("step", t._train_step)
        t._report = timers.wrap("host", t._report)
        t.emit = timers.wrap("events", t.emit)
        t._probe = timers.wrap(lambda final: "final" if final else "probes", t._probe, inclusive=True)
        t._visuals = timers.wrap(lambda request=None: "final" if t.progress() >= 1.0 else "visuals", t._visuals, inclusive=True)
        t._checkpoint = timers.wrap("checkpoints", t._checkpoint, inclusive=True)
        t._evaluate = dict  # the closing evaluation is left out of the shares: not run at all
        original_loop = t._loop
        wall = {}

        def loop():  # the loop's own time: its wall time less the timed calls made during it
            before, t0 = sum(timers.seconds.values()), time.perf_counter()
            try:
                return original_loop()
            finally:
                wall["loop"] = time.perf_counter() - t0 - (sum(timers.seconds.values()) - before)

        t._loop = loop
        RunFolder.__call__ = timers.wrap("writing", original_call)
        try:
            result = t.run()
        finally:
            RunFolder.__call__ = original_call
    if not result.ok:
        raise RuntimeError(f"the benchmark run failed: {result.message}")
    done = max(result.step, 1)
    s = timers.seconds
    per_step = {p: s[p] / done for p in PER_STEP if p != "loop"}
    per_step["loop"] = max(wall["loop"], 0.0) / done
    probe_s = s["probes"] / max(timers.calls["probes"], 1)
    checkpoint_s = s["checkpoints"] / max(timers.calls["checkpoints"], 1)
    step_wall = sum(per_step.values())
    every, visuals_every = cfg.probe.every, cfg.probe.visuals_every
    visuals_s = s["visuals"] / max(timers.calls["visuals"], 1)
    per_step["probes"] = (probe_s / every if every else 0.0) + (visuals_s / visuals_every if visuals_every else 0.0)
    per_step["checkpoints"] = checkpoint_s * step_wall / trainer_module.CHECKPOINT_EVERY_S
    total = sum(per_step.values())
    return {"steps": done, "batch_size": cfg.batch_size, "probe_every": every, "probe_size": cfg.probe.size,
            "seconds_per_step": total, "images_per_s": cfg.batch_size / total, "per_step": per_step,
            "shares": {p: per_step[p] / total for p in PARTS}, "probe_s": probe_s, "visuals_s": visuals_s, "checkpoint_s": checkpoint_s,
            "probes": timers.calls["probes"], "checkpoints": timers.calls["checkpoints"]}


def loop_table(rows: list[dict], labels: list[str] | None = None) -> list[str]:
    """Markdown lines for ``ssl-studio bench``: one row per measured run (e.g. before and after a change)."""
    lines = ["## The SimCLR training loop (a real Trainer run of fixed steps, default settings, shapes)", "",
             "Share of wall time per part; probes and checkpoints amortised at their default intervals (probe every "
             f"{rows[0]['probe_every']} steps, a checkpoint every {trainer_module.CHECKPOINT_EVERY_S:g} s).", "",
             "| run | steps | images/s | ms/step | " + " | ".join(PARTS) + " | one probe | one checkpoint |",
             "|---|---:|---:|---:|" + "---:|" * len(PARTS) + "---:|---:|"]
    for i, r in enumerate(rows):
        label = labels[i] if labels else "default"
        shares = " | ".join(f"{100 * r['shares'][p]:.1f} %" for p in PARTS)
        lines.append(f"| {label} | {r['steps']} | {r['images_per_s']:,.0f} | {1000 * r['seconds_per_step']:.1f} | {shares} | "
                     f"{r['probe_s']:.2f} s | {r['checkpoint_s']:.2f} s |")
    return lines + [""]


__all__ = ["PARTS", "bench_loop", "loop_table"]
