"""``ssl-studio``: the same engine as the window, headless.

    ssl-studio                      open the lab window
    ssl-studio train [flags]        train one configuration, print progress and a summary
    ssl-studio resume RUN           continue a stopped run from its last checkpoint
    ssl-studio eval RUN             evaluate a run's checkpoint (k-NN, ...)
    ssl-studio ask RUN [RUN2] TEXT  a prompt or a [MASK] sentence answered by a causal and a masked LM run
    ssl-studio bench                throughput benchmarks, measured side by side
    ssl-studio study collapse       every healthy/broken preset pair at one budget: table and figure

Every failure is one sentence on stderr, never a traceback.  Exit status, the same for every command:

    0    success
    1    a run (or evaluation) that started and then failed: diverged, an internal error, a write error
    2    a usage, configuration or data mistake: nothing was started (or a refused resume: nothing was changed)
    130  interrupted by Ctrl-C or SIGTERM, after the run saved its checkpoint (continue with 'ssl-studio resume RUN')
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path

from ssl_studio.cli_args import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE,  # noqa: F401 (also cli's names)
                                 build_parser, config_from_args, positive_number, split_setting)
from ssl_studio.params import ConfigError

# -- progress --------------------------------------------------------------------------

def _fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


class ConsoleProgress:
    """A one-line live progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0
        self.knn = None
        self.rank = None
        self.rate_unit = "img/s"

    def __call__(self, event) -> None:
        from ssl_studio.engine import events as ev

        if isinstance(event, ev.Started):
            self.rate_unit = event.rate_unit
            self._line(f"{event.objective} on {event.data} ({event.num_train} training {event.samples}) · {event.backbone} "
                       f"· {event.device} {event.precision}{' channels-last' if event.channels_last else ''} · batch {event.batch_size}"
                       + (f" · {event.skipped_files} unreadable files skipped" if event.skipped_files else "")
                       + (f" · {event.world_size} processes ({event.backend})" if event.world_size > 1 else ""), force=True)
            for note in event.data_notes:  # files skipped and why, links not followed, a class set aside
                self._line(note, force=True)
            self._line(f"run folder: {event.run_dir}", force=True)
            if event.resumed_from_time is not None:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.resumed_from_time))
                self._line(f"resumed from step {event.resumed_from_step} (checkpoint of {when})", force=True)
        elif isinstance(event, ev.Probe):
            self.knn, self.rank = event.knn_acc, event.effective_rank
        elif isinstance(event, ev.Step) and not self.quiet:
            now = time.monotonic()
            if now - self.last < (0.25 if self.tty else 10.0) and event.progress < 1:
                return
            self.last = now
            width = 24
            filled = int(width * event.progress)
            bar = "#" * filled + "-" * (width - filled)
            knn = f" knn {self.knn:.3f}" if self.knn is not None else ""
            rank = f" rank {self.rank:.1f}" if self.rank is not None else ""
            text = (f"[{bar}] {event.progress * 100:5.1f}% step {event.step} ep {event.epoch:.1f} loss {event.loss:.4f}"
                    f"{knn}{rank} {event.images_per_s:,.0f} {self.rate_unit} ETA {_fmt_time(event.eta_s)}")
            if self.tty:
                self.stream.write("\r" + text.ljust(110)[:150])
                self.stream.flush()
            else:
                self._line(text, force=True)
        elif isinstance(event, ev.Finished):
            if self.tty and not self.quiet:
                self.stream.write("\n")
            s = event.summary
            parts = [f"{event.status} after {event.step} steps ({_fmt_time(s.get('train_seconds'))} of training)"]
            if "knn_k20" in s:
                parts.append(f"k-NN@20 {s['knn_k20']:.3f}, k-NN@5 {s['knn_k5']:.3f}, linear probe {s['linear_top1']:.3f}")
            if s.get("zeroshot_top1") is not None:
                parts.append(f"zero-shot top-1 {s['zeroshot_top1']:.3f}")
            if s.get("recall_i2t_r5") is not None:
                parts.append(f"image-to-text recall@5 {s['recall_i2t_r5']:.3f}")
            parts.append(f"effective rank {s.get('effective_rank', float('nan')):.1f}")
            parts.append(f"mean cosine {s.get('mean_cosine', float('nan')):.3f}")
            if s.get("collapse"):
                parts.append(f"WARNING: {s['collapse']}")
            self._line("; ".join(parts), force=True)
            self._line(f"run folder: {event.run_dir}", force=True)
        elif isinstance(event, ev.Failed):
            if self.tty and not self.quiet:
                self.stream.write("\n")

    def _line(self, text: str, force: bool = False) -> None:
        if self.quiet and not force:
            return
        self.stream.write(text + "\n")
        self.stream.flush()


# -- commands --------------------------------------------------------------------------

class Interruption:
    """Whether a Ctrl-C or SIGTERM asked the work to stop (the command then exits 130)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def stop_on_interrupt(control):
    """The first Ctrl-C or SIGTERM asks the run to stop after its step (saving a checkpoint); a second one aborts.

    Yields an ``Interruption`` that is true once a signal arrived.
    """
    caught = Interruption()
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {s: signal.getsignal(s) for s in signals}

    def on_signal(signum, frame):
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        sys.stderr.write(f"\n{name}: stopping after this step and saving a checkpoint ({name} again to abort)...\n")
        caught.signal_name = name
        control.stop()
        signal.signal(signum, previous[signum])

    for s in signals:
        signal.signal(s, on_signal)
    try:
        yield caught
    finally:
        for s in signals:
            signal.signal(s, previous[s])


def _is_rank0() -> bool:
    """Under torchrun only rank 0 prints (progress comes from rank 0's events alone)."""
    from ssl_studio.engine.distributed import env_rank

    return env_rank() == 0


def _run_trainer(trainer, quiet: bool) -> int:
    """Run to the end and turn the result into the exit status of the rule in this module's docstring."""
    from ssl_studio.engine.distributed import stop_on_sigterm

    with stop_on_interrupt(trainer.control), stop_on_sigterm(trainer.control):  # under torchrun the second wins
        result = trainer.run()
    if result.refused:
        if _is_rank0():
            sys.stderr.write(f"ssl-studio: {result.message}\n")
        return EXIT_USAGE
    if not result.ok:
        if _is_rank0():
            sys.stderr.write(f"ssl-studio: {result.message}\n")
        return EXIT_FAILED
    if result.status == "stopped":  # in a terminal only a signal stops a run
        if _is_rank0():
            sys.stderr.write(f"ssl-studio: stopped at step {result.step} with its checkpoint saved; continue with "
                             f"'ssl-studio resume {result.run_dir}'.\n")
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_train(args) -> int:
    from ssl_studio.engine.trainer import Trainer

    cfg = config_from_args(args)
    progress = ConsoleProgress(quiet=args.quiet)
    return _run_trainer(Trainer(cfg, callback=progress, data_progress=_data_progress(args.quiet)), args.quiet)


def _data_progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    state = {"last": 0.0}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["last"] > 0.2 or done == total:
            state["last"] = now
            sys.stderr.write(f"\rloading images {done}/{total}" + ("\n" if done == total else ""))
            sys.stderr.flush()

    return report


def _check_run_folder(run: str) -> Path:
    path = Path(run)
    if not path.exists():
        raise ConfigError("", f"Run folder {run} does not exist; pass a folder made by 'ssl-studio train' (under runs/ by default).")
    if not (path / "config.toml").exists():  # a folder or pipe in its place is named by load_config
        raise ConfigError("", f"{run} is not a run folder (it has no config.toml); pass a folder made by 'ssl-studio train'.")
    return path


def completed_step(run: Path, cfg) -> int | None:
    """The step at which ``run`` completed, when the budget its config.toml asks for is spent; else None.

    A run whose budget was raised in config.toml after it completed is not complete: resume trains on.
    """
    from ssl_studio.engine.run_model import RunModel
    from ssl_studio.engine.trainer import DEFAULT_MINUTES

    model = RunModel(run)
    model.update()
    last = model.last_end
    if last is None or last.get("event") != "finished" or last.get("status") != "completed":
        return None
    step = last.get("step") if isinstance(last.get("step"), int) else 0
    summary = last.get("summary") if isinstance(last.get("summary"), dict) else {}
    b = cfg.budget
    if b.steps is not None:
        return step if step >= b.steps else None
    if b.epochs is not None:
        per_epoch = model.steps_per_epoch
        return step if per_epoch is not None and per_epoch > 0 and step >= max(1, math.ceil(b.epochs * per_epoch)) else None
    seconds = summary.get("train_seconds")
    minutes = b.minutes if b.minutes is not None else DEFAULT_MINUTES
    return step if isinstance(seconds, (int, float)) and seconds >= minutes * 60 else None


def cmd_resume(args) -> int:
    from ssl_studio.engine.runs import RunFolder
    from ssl_studio.engine.trainer import Trainer

    folder = RunFolder(_check_run_folder(args.run), create=False)
    cfg = folder.read_config()
    done = completed_step(folder.path, cfg)
    if done is not None:
        from ssl_studio.config import checkpoint_mismatch

        checkpoint = folder.load_checkpoint()  # an edited config.toml is worth saying even of a complete run
        mismatch = checkpoint_mismatch(checkpoint.get("config") if isinstance(checkpoint, dict) else None, cfg, folder.path)
        if mismatch is not None:
            raise mismatch
        sys.stderr.write(f"ssl-studio: {args.run} is already complete ({done} steps, its whole budget); nothing to resume. "
                         f"Evaluate it with 'ssl-studio eval {args.run}', or raise its budget in config.toml to train on.\n")
        return EXIT_OK
    return _run_trainer(Trainer(cfg, callback=ConsoleProgress(args.quiet), run_dir=folder.path, resume=True), args.quiet)


def cmd_eval(args) -> int:
    from ssl_studio.engine.evaluate import evaluate_run, report_markdown

    default = args.protocols is None
    text_run = False
    if default:
        from ssl_studio.engine.runs import RunFolder

        text_run = RunFolder(_check_run_folder(args.run), create=False).read_config().data.source.startswith(("text:", "text-chars:"))
        args.protocols = "perplexity,knn,linear" if text_run else "knn,linear,finetune"
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols:
        raise ConfigError("--protocols", f"names no protocol (got {args.protocols!r}); pass e.g. knn,linear")
    _check_run_folder(args.run)

    def progress(name: str, fraction: float) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{name}: {fraction * 100:3.0f}%" + ("\n" if fraction >= 1 else ""))
            sys.stderr.flush()

    results = evaluate_run(args.run, protocols, device=args.device, progress=progress, finetune_epochs=args.finetune_epochs,
                           skip_unlabelled=default and text_run)
    left_out = [p for p in protocols if p not in results]
    if left_out:  # the default protocols of a text run without labels: perplexity alone
        sys.stderr.write(f"ssl-studio: {' and '.join(left_out)} left out: this run's text has no labels (no class sub-folders), "
                         "so only its perplexity was measured.\n")
    text = report_markdown(args.run)
    (Path(args.run) / "report.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"report: {Path(args.run) / 'report.json'} and report.md")
    return 0


def cmd_compare(args) -> int:
    from ssl_studio.engine.compare import compare_runs

    for run in args.runs:
        _check_run_folder(run)
    comparison = compare_runs(args.runs)
    if not comparison.protocols:
        raise ConfigError("", "None of these runs has evaluation results yet; run 'ssl-studio eval RUN' on each first.")
    print(comparison.to_markdown())
    if args.csv:
        Path(args.csv).write_text(comparison.to_csv(), encoding="utf-8")
    return 0


def cmd_bench(args) -> int:
    from ssl_studio.benchmarks.report import run_bench

    parts = _split(args.only) or []
    if args.gui and "gui" not in parts:
        parts.append("gui")
    print(run_bench(parts, seconds=args.seconds, backbones=_split(args.backbones), gui_seconds=args.gui_seconds))
    return 0


def _split(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def cmd_study(args) -> int:
    from ssl_studio.engine.control import RunControl

    if args.reuse and args.kind != "protocols":
        raise ConfigError("--from", f"evaluates an earlier protocols study again; the {args.kind} study trains its runs each time, so drop --from")
    overrides = dict(split_setting(item) for item in args.set)
    data = args.data or ("text:builtin" if args.kind == "text" else "shapes")
    common = dict(data=data, minutes_per_run=args.minutes_per_run, out=args.out, steps=args.steps, overrides=overrides,
                  control=RunControl(), log=lambda line: (sys.stderr.write(line + "\n"), sys.stderr.flush()))
    if args.kind == "protocols":
        from ssl_studio.studies.protocols import run_protocols_study as run_study

        common.update(methods=_split(args.methods), protocols=tuple(_split(args.protocols) or ()), finetune_epochs=args.finetune_epochs,
                      reuse=args.reuse)
    elif args.kind == "recipes":
        from ssl_studio.studies.recipes import run_recipes_study as run_study

        common.update(methods=_split(args.methods))
    elif args.kind == "mae-vs-ijepa":
        from ssl_studio.studies.masked import run_masked_study as run_study
    elif args.kind == "text":
        from ssl_studio.studies.text import run_text_study as run_study
    elif args.kind == "clip":
        from ssl_studio.studies.clip import run_clip_study as run_study

        if args.held_out:
            common.update(held_out=_split(args.held_out))
    else:
        from ssl_studio.studies.collapse import run_collapse_study as run_study

        common.update(pairs=_split(args.pairs))
    with stop_on_interrupt(common["control"]) as interrupted:
        study = run_study(**common)
    print((study / "table.md").read_text(encoding="utf-8"))
    print(f"study folder: {study}")
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def cmd_ask(args) -> int:
    from ssl_studio.cli_ask import ask

    return ask(args)


def cmd_gui(args) -> int:
    from ssl_studio.gui.app import main as gui_main

    return gui_main(runs_dir=args.runs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    if command == "gui" and not hasattr(args, "runs"):
        args.runs = "runs"
    handlers = {"train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "bench": cmd_bench, "gui": cmd_gui, "study": cmd_study,
                "compare": cmd_compare, "ask": cmd_ask}
    try:
        return handlers[command](args)
    except ConfigError as exc:  # DataError too: a data mistake is the user's to fix, from every command
        if _is_rank0():
            sys.stderr.write(f"ssl-studio: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("ssl-studio: interrupted.\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        return _report_os_error(exc)
    except Exception as exc:  # noqa: BLE001 - a bug: one sentence here, the traceback in a file
        details = _save_traceback(exc)
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        sys.stderr.write(f"ssl-studio: internal error ({type(exc).__name__}{': ' + text if text else ''})"
                         + (f"; the details are in {details}" if details else "") + "; please report it.\n")
        return EXIT_FAILED


def _report_os_error(exc: OSError) -> int:
    """A file the command needed: a path that is missing or not allowed is a usage mistake (2), anything else (a full disk) 1."""
    name = exc.filename if exc.filename is not None else "a file"
    usage = isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError))
    what = "check the path and its permissions" if usage else "check the disk (free space, read-only) and try again"
    sys.stderr.write(f"ssl-studio: could not use {name} ({exc.strerror or exc}); {what}.\n")
    return EXIT_USAGE if usage else EXIT_FAILED


def _save_traceback(exc: BaseException) -> str | None:
    import tempfile
    import traceback

    try:
        with tempfile.NamedTemporaryFile("w", prefix="ssl-studio-error-", suffix=".txt", delete=False, encoding="utf-8") as fh:
            fh.write("".join(traceback.format_exception(exc)))
            return fh.name
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
