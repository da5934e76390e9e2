"""A run launched as a local torchrun job and followed through its run folder, with TrainingSession's face.

``TorchrunSession`` starts ``python -m torch.distributed.run --nproc_per_node N -m ssl_studio train`` as a
QProcess (no thread: Qt reads the child's output and notices its end on the GUI thread) and follows the
run folder rank 0 writes with ``engine.runs.replay_events``, the reader that opens any run folder, on a
timer.  It emits the same signals as ``worker.TrainingSession`` so the window treats both alike: the
batches of events, then ``finished`` after the last batch, which always holds a terminal event (the
run's own Finished/Failed record, or a Failed whose one sentence says why the job ended without one).

Stop sends SIGTERM to torchrun, which passes it to every rank; the ranks stop after their step, save a
checkpoint and write a ``stopped`` record.  A job cannot pause (the ranks are other processes).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal, Slot

from ssl_studio.config import RunConfig
from ssl_studio.engine.events import Failed, Finished, Started
from ssl_studio.engine.launch import (
    describe_exit,
    find_new_run,
    job_environment,
    run_folder_in,
    run_folders,
    torchrun_command,
    write_job_config,
)
from ssl_studio.engine.runs import replay_events

POLL_MS = 250
OUTPUT_KEPT = 64 * 1024  # the tail of the job's output kept for its last sentence


class TorchrunSession(QObject):
    """One torchrun job of ``processes`` local ranks training ``cfg`` into a new folder under ``cfg.out``.

    Signals (as ``TrainingSession``'s; ``dataReady``, ``loading`` and ``pausedChanged`` never fire):
        eventsReady(list)    the run folder's new events, in order
        runFolderFound(str)  the job's run folder, just before the batch holding its Started event
        finished(object)     after the last batch (always None: the result is in the run folder)
    """

    eventsReady = Signal(list)
    dataReady = Signal(object)
    loading = Signal(int, int)
    pausedChanged = Signal(bool)
    runFolderFound = Signal(str)
    finished = Signal(object)

    can_pause = False  # the ranks are other processes: Stop (with its checkpoint) and Resume from the browser instead
    in_process = False  # no model in this process to draw new pictures from

    def __init__(self, cfg: RunConfig, processes: int, parent: QObject | None = None, poll_ms: int = POLL_MS,
                 python: str | None = None):
        super().__init__(parent)
        self.cfg = cfg
        self.processes = int(processes)
        self.python = python
        self.out = Path(cfg.out).resolve()
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read_output)
        self.process.finished.connect(self._on_process_finished)
        self.process.errorOccurred.connect(self._on_process_error)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, int(poll_ms)))
        self.timer.timeout.connect(self.poll)
        self.run_dir: str | None = None
        self.last_step = None
        self.terminal = None
        self.trainer_paused = False
        self.started_at: float | None = None
        self.exit_code: int | None = None
        self.stop_requested = False
        self.output = ""
        self._partial = ""
        self._offset = 0
        self._announced = False
        self._before: set[str] = set()
        self._start_error: str | None = None
        self._crashed = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._started = False
        self._done = False

    # -- control (GUI thread) -----------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.started_at = time.monotonic()
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="ssl-studio-job-")
            config = write_job_config(self.cfg, self._tmp.name)
        except OSError as exc:
            self._start_error = f"the job's config file could not be written to the temporary folder: {exc.strerror or exc}"
            QTimer.singleShot(0, self._finish)
            return
        self._before = run_folders(self.out)
        program, *args = torchrun_command(config, self.out, self.processes, self.python)
        env = QProcessEnvironment()
        for key, value in job_environment().items():
            env.insert(key, value)
        self.process.setProcessEnvironment(env)
        self.process.setProgram(program)
        self.process.setArguments(args)
        self.timer.start()
        self.process.start()

    def pause(self) -> None:
        """A job cannot pause; the window does not offer it (``can_pause``)."""

    def resume(self) -> None:
        """See ``pause``."""

    def stop(self) -> None:
        """SIGTERM to torchrun: every rank stops after its step and saves a checkpoint."""
        self.stop_requested = True
        state = self.process.state()
        if state == QProcess.ProcessState.Starting:  # no process to signal yet: as soon as there is one
            self.process.started.connect(self.process.terminate)
        elif state == QProcess.ProcessState.Running:
            self.process.terminate()

    @property
    def running(self) -> bool:
        return self._started and not self._done

    @property
    def done(self) -> bool:
        return self._done

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Stop and wait up to ``timeout_ms`` for torchrun to end; True when it has (and ``finished`` was sent)."""
        self.stop()
        if self.process.state() != QProcess.ProcessState.NotRunning and not self.process.waitForFinished(int(timeout_ms)):
            return False
        self._finish()
        return True

    # -- following the job ----------------------------------------------------------------
    @Slot()
    def _read_output(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        if not text:
            return
        self.output = (self.output + text)[-OUTPUT_KEPT:]
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            folder = run_folder_in(line)
            if folder and folder != self.run_dir and self._offset == 0:
                self.run_dir = folder  # the job's own word beats the guess from new folders
        if self.run_dir is not None:
            self.poll()

    @Slot()
    def poll(self) -> None:
        """Deliver the events the run folder gained since the last poll."""
        if self.run_dir is None:
            found = find_new_run(self.out, self._before, self.cfg)
            if found is None:
                return
            self.run_dir = str(found)
        try:
            events, self._offset = replay_events(self.run_dir, self._offset)
        except (OSError, ValueError):
            return
        if not events:
            return
        for ev in events:
            if isinstance(ev, Started) and not self._announced:
                self._announced = True
                self.runFolderFound.emit(self.run_dir)
            elif isinstance(ev, (Finished, Failed)):
                self.terminal = ev
            elif hasattr(ev, "progress") and hasattr(ev, "images_per_s"):
                self.last_step = ev
        self.eventsReady.emit(events)

    @Slot(int, QProcess.ExitStatus)
    def _on_process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._crashed = status != QProcess.ExitStatus.NormalExit
        self.exit_code = None if self._crashed else code
        self._finish()

    @Slot(QProcess.ProcessError)
    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._start_error = self.process.errorString() or "the program could not be run"
            self._finish()

    def _finish(self) -> None:
        """Last drain of output and run folder; a Failed with one sentence if the job left no terminal record."""
        if self._done:
            return
        self._done = True
        self.timer.stop()
        if self.process.state() == QProcess.ProcessState.NotRunning and self._start_error is None:
            self._read_output()
            if self._partial:
                self._read_output_line(self._partial)
        self.poll()
        if self.terminal is None:
            self.terminal = Failed(step=self.last_step.step if self.last_step is not None else 0,
                                   status="stopped" if self.stop_requested and self._start_error is None else "failed",
                                   message=self._ending_sentence(), run_dir=self.run_dir)
            self.eventsReady.emit([self.terminal])
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.finished.emit(None)

    def _read_output_line(self, line: str) -> None:
        folder = run_folder_in(line)
        if folder and self.run_dir is None:
            self.run_dir = folder

    def _ending_sentence(self) -> str:
        if self.stop_requested and self._start_error is None:
            if self.run_dir is None or not (Path(self.run_dir) / "checkpoints" / "last.pt").is_file():
                return "the torchrun job was stopped before the run saved its first checkpoint; start it again to train"
            return "the torchrun job ended before the run recorded its stop; resume it from the runs browser"
        return describe_exit(self.exit_code, self.output, self.processes, self._start_error, self._crashed)
