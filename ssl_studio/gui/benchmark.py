"""What watching a run costs: training throughput with and without the live window, event-loop
lateness while it trains, and the embedding scatter's redraw time at 10,000 points.

Measured side by side in one process, as ratios, because absolute numbers on a
shared machine mean little:

(a) SimCLR on shapes, headless, for ``seconds`` of training time;
(b) the same run while a window shows the loss, embedding and spectrum panels
    live: the trainer runs in a QThread whose callback only buffers events, and
    a 50 ms GUI timer drains the buffer into the panels (what the real worker
    does).  With the app's ``MainWindow`` present, the run is started through
    it instead, so its worker, docks and status bar are measured too;
(a') the headless run again: throughput is compared with the mean of (a) and
    (a'), so a load change on the machine during the benchmark biases neither.
(c) during (b), a 10 ms precise QTimer records how late each tick fires; the
    99th percentile is what a person feels as stutter;
(d) ``set_probe`` + ``processEvents`` + ``grab`` of the embedding panel with
    10,000 random points in 10 classes, median of 11.

Run ``python -m ssl_studio.gui.benchmark [--seconds S]``; it prints a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a headless box still measures (no vsync, no compositor)

FLUSH_MS = 50
TICK_MS = 10


def bench_config(seconds: float, out: str):
    from ssl_studio.config import RunConfig

    from ssl_studio.engine.device import pick_device

    cfg = RunConfig()
    cfg.objective.name = "simclr"
    cfg.data.source = "shapes"
    cfg.budget.minutes = seconds / 60.0
    cfg.probe.visuals_every = 0
    cfg.out = out
    if pick_device("auto").type == "cpu":
        # A CPU trains the default model at a few steps a minute: a narrow model gives many
        # steps and probes per run, i.e. the most events per second the window must absorb.
        cfg.data.num_images, cfg.batch_size, cfg.model.width = 2048, 64, 16
        cfg.probe.size, cfg.probe.every = 256, 20
    else:
        cfg.data.num_images, cfg.batch_size = 12000, 256
        cfg.probe.size, cfg.probe.every = 1000, 50  # the app's defaults
    return cfg


class _Progress:
    """Images per second of training time over a whole run, from its Started and Step events."""

    def __init__(self, batch: int):
        self.batch, self.step, self.elapsed = batch, 0, 0.0

    def see(self, events) -> None:
        from ssl_studio.engine.events import Started, Step

        for ev in events:
            if isinstance(ev, Started):
                self.batch = ev.batch_size
            elif isinstance(ev, Step):
                self.step, self.elapsed = ev.step, ev.elapsed_s

    def result(self) -> tuple[float, int]:
        return (self.step * self.batch / self.elapsed if self.elapsed > 0 else 0.0), self.step


def _headless(app, cfg, imageset, lateness: "_Lateness") -> tuple[float, int]:
    """The run in a plain worker thread, as the window runs it (on a loaded machine the main
    thread trains several times slower than a worker thread: OpenMP teams of the initial
    thread spin against the other processes, which would flatter the window), while the
    main thread spins an empty event loop with the lateness timer: the baseline lateness
    that training alone causes (GIL, CPU contention), with no window to draw."""
    from ssl_studio.engine.trainer import Trainer

    progress = _Progress(cfg.batch_size)
    worker = threading.Thread(target=lambda: Trainer(cfg, lambda ev: progress.see((ev,)), imageset=imageset).run())
    lateness.start()
    worker.start()
    _run_until(worker.is_alive)
    worker.join()
    lateness.stop()
    return progress.result()


def _run_until(alive) -> None:
    """A real event loop (not a processEvents spin, which would itself compete for the CPU and
    the GIL), left when ``alive()`` turns false; checked every 50 ms."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(50)
    check.timeout.connect(lambda: None if alive() else loop.quit())
    check.start()
    if alive():
        loop.exec()
    check.stop()


class _Lateness:
    """A precise 10 ms timer on the GUI thread; how late each tick is, in ms."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.samples: list[float] = []
        self._last: float | None = None
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.samples.append(max(0.0, (now - self._last) * 1000.0 - TICK_MS))
        self._last = now

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def p99(self) -> float:
        return float(np.percentile(self.samples, 99)) if self.samples else float("nan")


def _gui_plain(app, cfg, imageset, lateness: _Lateness, panel_update_ms: dict) -> tuple[float, int]:
    """Panels in a plain QMainWindow, fed like the real worker feeds the window."""
    from PySide6.QtCore import QThread, QTimer
    from PySide6.QtWidgets import QMainWindow, QSplitter

    from ssl_studio.engine.trainer import Trainer
    from ssl_studio.gui.panels import EmbeddingPanel, LossPanel, SpectrumPanel

    window = QMainWindow()
    split = QSplitter()
    panels = [LossPanel(), EmbeddingPanel(), SpectrumPanel()]
    for p in panels:
        p.set_imageset(imageset)
        split.addWidget(p)
    window.setCentralWidget(split)
    window.resize(1600, 700)
    window.show()

    buffer: list = []
    lock = threading.Lock()
    progress = _Progress(cfg.batch_size)
    done = threading.Event()
    update_ms = panel_update_ms

    def callback(ev):  # training thread: append only
        with lock:
            buffer.append(ev)

    class Runner(QThread):
        def run(self):
            try:
                Trainer(cfg, callback, imageset=imageset).run()
            finally:
                done.set()

    def drain():
        with lock:
            events = buffer[:]
            buffer.clear()
        if not events:
            return
        progress.see(events)
        for p in panels:
            t0 = time.perf_counter()
            p.handle_events(events)
            update_ms.setdefault(type(p).__name__, []).append((time.perf_counter() - t0) * 1000.0)

    timer = QTimer()
    timer.setInterval(FLUSH_MS)
    timer.timeout.connect(drain)
    runner = Runner()
    timer.start()
    lateness.start()
    runner.start()
    _run_until(lambda: not done.is_set() or runner.isRunning())
    lateness.stop()
    timer.stop()
    drain()
    runner.wait()
    for p in panels:
        p.shutdown()
    window.close()
    return progress.result()


def _gui_main_window(app, cfg, lateness: _Lateness, runs_dir: str) -> tuple[float, int]:
    """The run started through the app's own window: its worker, docks and status bar."""
    from ssl_studio.gui.main_window import MainWindow

    window = MainWindow(runs_dir=runs_dir)
    window.resize(1600, 900)
    window.show()
    window.experiment.load_config(cfg)
    progress = _Progress(cfg.batch_size)
    lateness.start()
    if not window.start_run():
        lateness.stop()
        window.close()
        raise RuntimeError("the main window refused to start the benchmark run")

    window.session.eventsReady.connect(progress.see)
    _run_until(lambda: window.session is not None and not window.session.done)
    lateness.stop()
    window.close()
    return progress.result()


def _scatter_redraw_ms(app, repeats: int = 11, n: int = 10_000) -> float:
    from ssl_studio.gui.panels import EmbeddingPanel

    panel = EmbeddingPanel()
    panel.resize(900, 700)
    panel.show()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    panel.class_names = [f"class {i}" for i in range(10)]
    times = []
    for r in range(repeats + 1):
        pts = rng.normal(size=(n, 2)).astype(np.float32) + labels[:, None] * 0.5
        t0 = time.perf_counter()
        panel.set_probe(pts, labels, np.arange(n), None, step=r)
        app.processEvents()
        panel.plot_widget.grab()
        if r:  # the first draw builds caches; a live run redraws an existing plot
            times.append((time.perf_counter() - t0) * 1000.0)
    panel.shutdown()
    panel.close()
    return statistics.median(times)


def bench_gui(seconds: float = 20.0, prefer_main_window: bool = True) -> dict[str, Any]:
    from PySide6.QtWidgets import QApplication

    from ssl_studio.engine.build import load_data

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="ssl-bench-gui-") as tmp:
        cfg = bench_config(seconds, tmp)
        imageset = load_data(cfg)  # once: (a) and (b) differ only in the window

        baseline = _Lateness()
        a1, steps_a1 = _headless(app, cfg, imageset, baseline)
        lateness = _Lateness()
        window = "QMainWindow with LossPanel, EmbeddingPanel, SpectrumPanel"
        b = steps_b = None
        if prefer_main_window:
            try:
                import ssl_studio.gui.main_window  # noqa: F401

                b, steps_b = _gui_main_window(app, cfg, lateness, tmp)
                window = "ssl_studio.gui.main_window.MainWindow"
            except Exception as exc:  # noqa: BLE001 - measured with the panels alone instead
                window += f" (MainWindow not used: {type(exc).__name__}: {exc})"
                lateness = _Lateness()
                b = None
        panel_ms: dict[str, list[float]] = {}
        if b is None:
            b, steps_b = _gui_plain(app, cfg, imageset, lateness, panel_ms)
        a2, steps_a2 = _headless(app, cfg, imageset, baseline)
        scatter = _scatter_redraw_ms(app)

    headless = (a1 + a2) / 2
    return {
        "window": window,
        "seconds per run": seconds,
        "headless images/s (a, a')": f"{a1:,.0f}, {a2:,.0f}",
        "with window images/s (b)": round(b, 1),
        "ratio b / mean(a, a') (target >= 0.9)": round(b / headless, 3) if headless else float("nan"),
        "steps (a, b, a')": f"{steps_a1}, {steps_b}, {steps_a2}",
        "event-loop lateness p99 ms (target < 50)": round(lateness.p99(), 1),
        "event-loop lateness max ms": round(max(lateness.samples), 1) if lateness.samples else float("nan"),
        "lateness p99 ms without a window (a, a': training alone)": round(baseline.p99(), 1),
        "timer ticks": len(lateness.samples),
        "scatter redraw 10k points, median ms (target < 50)": round(scatter, 1),
        "cpu threads": os.cpu_count(),
        **{f"{name}.handle_events max ms": round(max(v), 1) for name, v in panel_ms.items() if v},
    }


def format_table(result: dict[str, Any]) -> str:
    width = max(len(k) for k in result)
    lines = ["| measure | value |", "|---|---:|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in result.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training time of each run")
    parser.add_argument("--panels-only", action="store_true", help="measure the panels in a plain window, not MainWindow")
    args = parser.parse_args(argv)
    print(format_table(bench_gui(args.seconds, prefer_main_window=not args.panels_only)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
