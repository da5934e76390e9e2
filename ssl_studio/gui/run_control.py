"""Starting, pausing, resuming and stopping training from the window, and the run state the controls follow.

A mixin of ``MainWindow``: the form's configuration goes to a ``TrainingSession`` (one process)
or a ``TorchrunSession`` (several), whose throttled event batches come back to the window's
dispatcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_studio.config import load_config
from ssl_studio.engine.launch import check_processes
from ssl_studio.gui.torchrun_session import TorchrunSession
from ssl_studio.gui.worker import TrainingSession
from ssl_studio.params import ConfigError


class RunControl:
    """Start, pause, resume, stop, and the state (idle, loading, running, paused, stopping) the controls show."""

    def _set_state(self, state: str) -> None:
        """idle | loading | running | paused | stopping: drives buttons, actions and the form."""
        self.state = state
        self.experiment.set_run_state(state)
        active = state in ("loading", "running", "paused")
        self.action_start.setEnabled(state == "idle" and self.experiment.valid)
        can_pause = active and getattr(self.session, "can_pause", True)
        self.action_pause.setEnabled(can_pause)
        self.experiment.pause_button.setEnabled(can_pause or state == "paused")
        self.action_pause.setText("Resume" if state == "paused" else "Pause")
        self._tint_icons()
        self.action_stop.setEnabled(active)
        self.action_open_images.setEnabled(state == "idle")
        self.action_open_cifar.setEnabled(state == "idle")
        self.action_save_preset.setEnabled(self.experiment.valid)
        self.presets_menu.setEnabled(state == "idle")

    def _on_validity(self, valid: bool, _message: str) -> None:
        self.action_start.setEnabled(self.state == "idle" and valid)
        self.action_save_preset.setEnabled(valid)

    @property
    def running(self) -> bool:
        return self.session is not None and not self.session.done

    def start_run(self) -> bool:
        """Start the experiment panel's configuration; False (with the reason shown) if it cannot."""
        if self.running:
            return False
        try:
            cfg = self.experiment.to_config()
        except ConfigError as exc:
            self.experiment.validate()
            self.show_banner(f"Cannot start: {exc}.", "error")
            return False
        cfg.out = str(self.runs_dir)
        processes = self.experiment.processes()
        try:
            check_processes(cfg, processes)
        except ConfigError as exc:
            self.experiment.mark_external(exc.field, str(exc))
            self.show_banner(f"Cannot start: {exc}.", "error")
            return False
        self._start_session(cfg, processes=processes)
        if processes > 1:
            self.statusBar().showMessage(f"Launching torchrun with {processes} processes for {cfg.objective.name} on "
                                         f"{cfg.data.source}; the panels follow its run folder...", 30000)
        else:
            self.statusBar().showMessage(f"Loading {cfg.data.source} and building {cfg.objective.name}...", 5000)
        return True

    def resume_folder(self, path: str | Path) -> bool:
        """Go on training a run folder (interrupted, stopped or failed) from its last checkpoint."""
        if self.running:
            self.show_banner("A run is training; stop it before resuming another one.", "warning")
            return False
        try:
            cfg = load_config(Path(path) / "config.toml")
        except Exception as exc:  # noqa: BLE001 - ConfigError, or a damaged file: one sentence either way
            self.show_banner(f"Cannot resume {Path(path).name}: {exc}", "error")
            return False
        self._start_session(cfg, run_dir=str(path), resume=True)
        self.statusBar().showMessage(f"Resuming {Path(path).name} from its last checkpoint...", 5000)
        return True

    def _start_session(self, cfg, run_dir: str | None = None, resume: bool = False, processes: int = 1) -> None:
        self._stop_tail()
        self.hide_banner()
        self.experiment.clear_external_mark()
        self._clear_panels()
        self.total_steps = cfg.budget.steps
        self.last_step = None
        self.current_run = None
        self._reset_status("starting")
        if self.session is not None:  # the previous run's thread has ended: let Qt free it
            self.session.deleteLater()
        if processes > 1:  # a torchrun job; its run folder's records arrive as events
            session = TorchrunSession(cfg, processes, self)
            session.runFolderFound.connect(lambda path: self._load_run_imageset(Path(path)))
        else:
            session = TrainingSession(cfg, self, run_dir=run_dir, resume=resume)
        session.eventsReady.connect(self._on_live_events)
        session.dataReady.connect(self._on_data)
        session.loading.connect(self._on_loading)
        session.pausedChanged.connect(self._on_trainer_paused)
        session.finished.connect(self._on_session_finished)
        self.session = session
        self._set_state("loading")
        session.start()

    def toggle_pause(self) -> None:
        if not self.running:
            return
        if not getattr(self.session, "can_pause", True):
            self.statusBar().showMessage("A torchrun job cannot pause; Stop saves a checkpoint, and Resume in the runs "
                                         "browser goes on from it.", 5000)
            return
        if self.state == "paused":
            self.session.resume()
            self._set_state("running")
            self.statusBar().showMessage("Resumed.", 3000)
        elif self.state in ("running", "loading"):
            self.session.pause()
            self._set_state("paused")
            self.statusBar().showMessage("Pausing after this step (a checkpoint is saved)...")

    def pause_run(self) -> None:
        if self.state in ("running", "loading"):
            self.toggle_pause()

    def resume_run(self) -> None:
        if self.state == "paused":
            self.toggle_pause()

    def stop_run(self) -> None:
        if not self.running:
            return
        self.session.stop()
        self._set_state("stopping")
        self.statusBar().showMessage("Stopping after this step: saving a checkpoint and the final probe...")

    def _on_trainer_paused(self, waiting: bool) -> None:
        if waiting and self.state == "paused":
            step = self.last_step.step if self.last_step else 0
            self.statusBar().showMessage(f"Paused at step {step}; checkpoint saved. Press Space or Resume to go on.")

    def _on_loading(self, done: int, total: int) -> None:
        self.status_step.setText(f"loading images {done:,}/{total:,}")
        self.progress.setValue(int(1000 * done / max(total, 1)))

    def _on_data(self, imageset: Any) -> None:
        self.current_imageset = imageset
        for panel in self.panels:
            self._call_panel(panel, "set_imageset", imageset)

    def _on_live_events(self, events: list) -> None:
        self._dispatch(events)

    def _on_session_finished(self, _result: Any) -> None:
        if self.state != "idle":
            self._set_state("idle")
        if not self._closing:
            self.runs_browser.refresh()
