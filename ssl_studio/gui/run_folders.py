"""Run folders, presets and exports from the window: open (and follow) a run folder, re-run, presets, panel exports.

A mixin of ``MainWindow``: a folder's events replay through the same dispatcher as a live run
(``engine.runs.replay_events``), so a finished, headless or still-running run looks like a live one.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from ssl_studio.config import load_config, save_config
from ssl_studio.engine.events import Failed, Finished
from ssl_studio.engine.runs import replay_events
from ssl_studio.params import ConfigError
from ssl_studio.presets import list_presets, presets_dir


TAIL_INTERVAL_MS = 1000


class RunFolders:
    """Open, follow and re-run run folders; load and save presets; export panels."""

    def choose_run_folder(self) -> None:
        start = str(self.runs_dir if self.runs_dir.is_dir() else Path.cwd())
        path = QFileDialog.getExistingDirectory(self, "Open run folder", start)
        if path:
            self.open_run(path)

    def open_run(self, path: str | Path) -> bool:
        """Replay a run folder into the panels; keep following it while it is still being written."""
        path = Path(path)
        if not (path / "metrics.jsonl").is_file():
            self.show_banner(f"{path} is not a run folder with results: it has no metrics.jsonl; "
                             "choose a folder under runs/ made by SSL Studio.", "error")
            return False
        if self.running:
            self.show_banner("A run is training; stop it before opening another run folder.", "warning")
            return False
        self._stop_tail()
        self.hide_banner()
        self._clear_panels()
        self._reset_status("replaying")
        self.status_device.setText("")
        self.total_steps = None
        self.last_step = None
        try:
            events, offset = replay_events(path)
        except (OSError, ValueError) as exc:
            self.show_banner(f"Could not read {path / 'metrics.jsonl'} ({exc}).", "error")
            return False
        self._load_run_imageset(path)
        self._dispatch(events, live=False)
        self.current_run = str(path)
        self.setWindowTitle(path.name)
        if not any(isinstance(e, (Finished, Failed)) for e in events):
            self._tail_path, self._tail_offset = path, offset
            self._tail_timer.start()
            self.statusBar().showMessage(f"Following {path.name} as it is written...", 5000)
        else:
            self.statusBar().showMessage(f"Opened {path}.", 8000)
        self._offer_settings(path)
        return True

    def _offer_settings(self, path: Path) -> None:
        """Beside the opened run's banner: load its settings into the form (Re-run's code, without starting)."""
        config = path / "config.toml"
        if not config.is_file():
            return
        if not self.banner_bar.isVisible():
            self.show_banner(f"Opened run {path.name}.", "info")

        def load() -> None:
            if self.rerun(str(config)):
                self.hide_banner()
        self.banner.set_action("Load its settings into the form", load)

    def _load_run_imageset(self, path: Path) -> None:
        """Thumbnails for a replayed run come from its data source, when that is the cheap built-in one."""
        try:
            cfg = load_config(path / "config.toml")
        except Exception:  # noqa: BLE001 - missing, damaged or foreign: the curves still show
            return
        if cfg.data.source not in ("shapes", "digits") or cfg.data.num_images > 20000:
            return  # decoding a folder or CIFAR just for thumbnails would stall the window
        try:
            from ssl_studio.data import load_imageset

            imageset = load_imageset(cfg.data, seed=cfg.seed, progress=None)
        except Exception:  # noqa: BLE001 - thumbnails are a nicety; the curves still show
            return
        self._on_data(imageset)

    def _poll_tail(self) -> None:
        if self._tail_path is None:
            self._tail_timer.stop()
            return
        try:
            events, self._tail_offset = replay_events(self._tail_path, self._tail_offset)
        except (OSError, ValueError):
            return
        self._dispatch(events, live=False)
        if any(isinstance(e, (Finished, Failed)) for e in events):
            self._stop_tail()
            self.runs_browser.refresh()

    def _stop_tail(self) -> None:
        self._tail_timer.stop()
        self._tail_path = None

    @property
    def tailing(self) -> bool:
        return self._tail_timer.isActive()

    def rerun(self, config_path: str) -> bool:
        """Fill the experiment panel from a run's config.toml; the user presses Start."""
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            self.show_banner(f"Cannot re-run: {exc}", "error")
            return False
        self.experiment.load_config(cfg)
        self.statusBar().showMessage(f"Loaded the configuration of {Path(config_path).parent.name}; press Start to run it again.", 8000)
        return True

    def load_preset(self, path: str | Path) -> bool:
        path = Path(path)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            self.show_banner(f"Cannot load preset {path.name}: {exc}", "error")
            return False
        self.experiment.load_config(cfg)
        info = next((p for p in list_presets() if p.path == path), None)
        if info is not None and info.description:
            self.show_banner(f"{info.title}: {info.description}", "info")
        self.statusBar().showMessage(f"Loaded preset {path.stem}.", 5000)
        return True

    def choose_save_preset(self) -> None:
        title, ok = QInputDialog.getText(self, "Save as preset", "Title shown in the Presets menu:")
        if not ok or not title.strip():
            return
        description, ok = QInputDialog.getMultiLineText(self, "Save as preset", "What should happen, and why:")
        if not ok:
            return
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "preset"
        folder = presets_dir()
        start = folder / f"{slug}.toml" if folder.is_dir() else Path.home() / f"{slug}.toml"
        path, _ = QFileDialog.getSaveFileName(self, "Save preset", str(start), "Presets (*.toml)")
        if path:
            self.save_preset(path, title.strip(), description.strip())

    def save_preset(self, path: str | Path, title: str, description: str = "") -> bool:
        try:
            cfg = self.experiment.to_config()
        except ConfigError as exc:
            self.show_banner(f"Cannot save the preset: {exc}.", "error")
            return False
        group = "broken" if cfg.ablations else "healthy"
        try:
            save_config(cfg, path, header={"title": title, "group": group, "description": description})
        except OSError as exc:
            self.show_banner(f"Could not write the preset {path} ({exc.strerror or exc}); choose another folder.", "error")
            return False
        self._fill_presets_menu()
        self.statusBar().showMessage(f"Saved preset {path}.", 5000)
        return True

    def choose_export(self, panel, fmt: str) -> None:
        base = (self.current_run and Path(self.current_run)) or Path.cwd()
        name = f"{panel.title.lower().replace(' ', '-')}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {panel.title} as {fmt.upper()}", str(Path(base) / name),
                                              f"{fmt.upper()} (*.{fmt})")
        if path:
            self.export_panel(panel, fmt, path)

    def export_panel(self, panel, fmt: str, path: str | Path) -> bool:
        method = getattr(panel, f"export_{fmt}", None)
        if method is None:
            self.show_banner(f"The {panel.title} panel cannot be exported as {fmt.upper()}; choose PNG or CSV.", "error")
            return False
        try:
            method(path)
        except (OSError, ValueError) as exc:
            self.show_banner(f"Could not export the {panel.title} panel to {path}: {exc}", "error")
            return False
        self.statusBar().showMessage(f"Exported {panel.title} to {path}.", 5000)
        return True
