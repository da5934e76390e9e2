"""The training loop every objective runs in: budget, schedule, precision, probes, checkpoints, events.

The trainer knows nothing of any particular method: it asks the objective for
a loss on a batch of views and does the rest the same way for all of them.
It never raises for a user's mistake or a run that goes wrong: it emits a
``Failed`` event whose message says what to change, and returns.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_studio.config import RunConfig, changed_settings, checkpoint_mismatch, config_to_mapping, validate_config
from ssl_studio.data import ImageSet
from ssl_studio.engine import diagnostics, distributed
from ssl_studio.engine.build import build_objective, build_views, effective_batch_size, load_data, resolved_optim
from ssl_studio.engine.checkpoint_file import all_finite, unfitting
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.device import autocast, pick_channels_last, pick_device, pick_precision
from ssl_studio.engine.device_data import DeviceImages
from ssl_studio.engine.events import Callback, Evaluated, Event, Failed, Finished, Probe, Started, Step
from ssl_studio.engine.optim import build_optimizer, lr_at
from ssl_studio.engine.probing import Prober
from ssl_studio.engine.run_lock import RunBusyError, RunLock
from ssl_studio.engine.run_writes import RunWriteError, describe_write_error
from ssl_studio.engine.runs import RunFolder, new_run_dir
from ssl_studio.engine.sampler import EpochSampler
from ssl_studio.engine.step_values import StepValues
from ssl_studio.objectives import Batch
from ssl_studio.params import ConfigError
from ssl_studio.regular_file import NotRegularFile

DEFAULT_MINUTES = 5.0
# A run killed at any moment loses at most this much training; one checkpoint costs well under 2 % of it
# (``ssl-studio bench --only checkpoint`` measures it for each backbone).
CHECKPOINT_EVERY_S = 20.0


class Diverged(RuntimeError):
    pass


@dataclass
class RunResult:
    status: str  # completed | stopped | failed | diverged at step N
    run_dir: Path | None
    step: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    refused: bool = False  # never started: a configuration or data mistake (the CLI exits 2), nothing written

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "stopped")


class Trainer:
    """Runs one configuration to the end of its budget, a stop request, or a failure."""

    def __init__(self, cfg: RunConfig, callback: Callback | None = None, control: RunControl | None = None,
                 run_dir: str | Path | None = None, resume: bool = False, imageset: ImageSet | None = None,
                 data_progress=None):
        self.cfg = cfg
        self.user_callback = callback
        self.control = control or RunControl()
        self.requested_dir = Path(run_dir) if run_dir else None
        self.resume = resume
        self.imageset = imageset
        self.data_progress = data_progress
        self.folder: RunFolder | None = None
        self.lock: RunLock | None = None
        self._last_agreed: float | None = None  # when the loop last asked whether a checkpoint is due
        self.resumed_from_time: float | None = None  # when the checkpoint a resume starts from was written
        self.step = 0
        self.world = distributed.World(rank=distributed.env_rank())  # joined in _setup; rank 0 alone writes and reports

    # -- events ------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if not self.world.is_main:
            return
        if self.lock is not None:
            self.lock.beat()
        if self.folder is not None:
            self.folder(event)
        if self.user_callback is not None:
            self.user_callback(event)

    # -- public ------------------------------------------------------------------------
    def run(self) -> RunResult:
        result = None
        try:
            result = self._run_holding_lock()
            return result
        finally:
            if result is not None and result.ok:  # ranks leave together: the others wait while rank 0 evaluates
                distributed.barrier()
            distributed.shutdown()

    def _run_holding_lock(self) -> RunResult:
        try:
            return self._run()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _run(self) -> RunResult:
        try:
            self._setup()
        except RunWriteError as exc:
            return self._fail("failed", exc.message)
        except ConfigError as exc:  # a configuration or data mistake (DataError too): the run never started
            self._drop_unstarted_folder()
            return dataclasses.replace(self._fail("failed", str(exc), field=exc.field or None), refused=True)
        except Exception as exc:  # noqa: BLE001 - reported as one sentence, traceback in the folder
            where = f"; the details are in error.txt in {self.folder.path}" if self.folder is not None else ""
            return self._fail("failed", f"Could not set up the run ({type(exc).__name__}: {exc}){where}.", exc)
        try:
            return self._loop()
        except RunWriteError as exc:  # a full or read-only disk: the previous checkpoint is kept
            return self._fail("failed", exc.message)
        except Diverged as exc:
            return self._fail(f"diverged at step {self.step}", str(exc))
        except torch.OutOfMemoryError as exc:
            return self._fail("failed", f"Out of memory at step {self.step} with batch_size {self.batch_size}; lower batch_size "
                              "or pick a smaller backbone, then resume.", exc)
        except Exception as exc:  # noqa: BLE001
            return self._fail("failed", f"Training stopped at step {self.step} by an internal error ({type(exc).__name__}: {exc}); "
                              "the details are in error.txt in the run folder.", exc)

    def _fail(self, status: str, message: str, exc: BaseException | None = None, field: str | None = None) -> RunResult:
        """Record and report a failure; never raises, even when the disk that failed the run fails these writes too."""
        if self.world.world_size > 1:
            lost_peer = exc is not None and distributed.is_peer_loss(exc)
            if not self.world.is_main:  # rank 0 reports it: the run's last event names this rank
                distributed.announce_failure(f"{message[0].lower()}{message[1:]}" if message else "it stopped", lost_peer=lost_peer)
                return RunResult(status, None, self.step, message=message)
            elsewhere = distributed.failure_elsewhere(wait_s=3.0, lost_peer=lost_peer) if exc is not None else None
            if elsewhere is not None:  # rank 0's own error is the broken connection; the cause is the other rank's
                message = f"Training stopped at step {self.step}: {elsewhere}"
        if exc is not None and self.folder is not None:
            self.folder.write_error_text("".join(traceback.format_exception(exc)))
        run_dir = str(self.folder.path) if self.folder else None
        event = Failed(step=self.step, status=status, message=message, run_dir=run_dir, field=field)
        if self.folder is not None:
            try:
                self.folder(event)
            except Exception:  # noqa: BLE001 - the failed record is a courtesy; the message below is what counts
                self.folder.close()
        if self.user_callback is not None:
            self.user_callback(event)
        return RunResult(status, self.folder.path if self.folder else None, self.step, message=message)

    def _drop_unstarted_folder(self) -> None:
        """Forget the run folder of a start that was refused; remove it if this start made it and it holds no results.

        A refused resume leaves its folder exactly as it was (no ``failed`` record either: the run itself is fine).
        """
        folder, self.folder = self.folder, None
        if folder is None or self.resume or not self._made_folder:
            return
        if any(p.is_dir() and any(p.iterdir()) for p in (folder.path / "checkpoints", folder.path / "snapshots")):
            self.folder = folder  # something worth keeping
            return
        shutil.rmtree(folder.path, ignore_errors=True)

    def _create_folder(self, cfg: RunConfig) -> None:
        """Make the new run's folder and write its config.toml; a place that cannot hold one is the user's ``out``."""
        out = Path(cfg.out)
        existing = next((p for p in (out, *out.parents) if p.exists()), None)  # out itself, or what it would be made in
        if self.requested_dir is None and existing is not None and not existing.is_dir():
            where = "" if existing == out else f" (it would be made inside {existing}, a file)"
            raise ConfigError("out", f"is {out}, which cannot be a folder{where}; pass a folder under which run folders "
                                     "are made (it is created if missing).")
        path = self.requested_dir or new_run_dir(cfg)
        self._made_folder = self.requested_dir is None or not path.exists()
        try:
            self.folder = RunFolder(path)
            self.folder.write_config(cfg)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS):
                raise  # e.g. a full disk: a write error, not a mistake in the settings
            field, what = ("out", str(path)) if self.requested_dir is None else ("", f"The run folder {path}")
            raise ConfigError(field, f"{what} cannot be created there ({exc.strerror}); pass a folder you can write to.") from None

    # -- set-up ------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        self._made_folder = False  # set by _create_folder: a refused start removes only a folder it made
        validate_config(cfg)
        if cfg.workers > 0:
            torch.set_num_threads(cfg.workers)
        self.device = pick_device(cfg.device)
        self.world, self.device = distributed.init_from_env(self.device)
        checkpoint = None
        if self.resume:  # every rank reads the checkpoint (one machine, or a run folder on shared storage)
            folder = RunFolder(self.requested_dir, create=False)
            self.folder = folder if self.world.is_main else None
            self._take_lock()  # rank 0 alone holds the folder
            checkpoint = folder.load_checkpoint(resume=True)
            mismatch = checkpoint_mismatch(checkpoint.get("config"), cfg, folder.path)
            if mismatch is not None:  # before any data is loaded: say what changed instead of dumping state-dict keys
                raise mismatch
            try:
                self.resumed_from_time = folder.checkpoint_path.stat().st_mtime
            except OSError:
                self.resumed_from_time = None
        elif self.world.is_main:
            self._create_folder(cfg)
            self._take_lock()
        self.autocast_dtype = pick_precision(cfg.precision, self.device)
        self.channels_last = pick_channels_last(cfg.channels_last, self.device, cfg.model.backbone, self.autocast_dtype)

        if self.imageset is None:
            self.imageset = load_data(cfg, progress=self.data_progress)
        data = self.imageset
        self.channels_last = self.channels_last and data.modality == "images"  # token windows have no channels
        torch.manual_seed(cfg.seed)
        self.objective = build_objective(cfg, data, start_weights=checkpoint is None).to(self.device)
        if self.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.views = build_views(cfg, data)
        self.train_images = DeviceImages(data.images, data.labels, self.device)  # on the GPU when it fits
        self.batch_size = effective_batch_size(cfg, len(data.train_index))  # the global batch, on 1 or N processes
        self.local_batch = self._prepare_distributed()
        opt_name, lr_per_256, wd = resolved_optim(cfg)
        self.peak_lr = lr_per_256 * self.batch_size / 256  # linear scaling rule (Goyal et al. 2017)
        self.optimizer = build_optimizer(opt_name, self.objective.parameter_groups(wd), self.peak_lr, cfg.optim.momentum)
        self.model = distributed.wrap(self.objective, self.device)  # what the step calls: DDP under torchrun
        self.sampler = EpochSampler(data.train_index, self.batch_size, cfg.seed)  # the global order, the same on every rank
        self.view_generator = torch.Generator(device=self.device if self.device.type != "mps" else "cpu").manual_seed(
            distributed.rank_seed(cfg.seed + 2))
        self.objective.draw_generator = torch.Generator().manual_seed(cfg.seed + 4)  # the same on every rank

        b = cfg.budget
        no_budget = b.minutes is None and b.epochs is None and b.steps is None
        self.budget_minutes = DEFAULT_MINUTES if no_budget else b.minutes
        self.total_steps = b.steps if b.steps is not None else (
            max(1, math.ceil(b.epochs * self.sampler.steps_per_epoch)) if b.epochs is not None else None)

        self.prober = Prober(cfg, data, self.views, self.objective, self.device, self.channels_last, self.autocast_dtype)

        self.elapsed = 0.0
        self.last_probe: Probe | None = None
        self.initial_probe: diagnostics.Baseline | None = None  # the step-0 probe: collapse is judged against it
        if checkpoint is not None:
            self._restore(checkpoint)
        if not self.world.is_main:
            return
        for name, text in self.objective.artifacts().items():
            self.folder.write_text(name, text)

        n_params = sum(p.numel() for p in self.objective.backbone.parameters())
        self.emit(Started(
            run_dir=str(self.folder.path), objective=cfg.objective.name, data=data.name,
            backbone=cfg.model.backbone if data.modality == "images" else "text-transformer",
            device=str(self.device), precision="bf16" if self.autocast_dtype is not None else "float32",
            channels_last=self.channels_last, num_train=len(data.train_index), num_probe=len(self.prober.probe_index),
            feature_dim=self.objective.backbone.feature_dim, parameters=n_params,
            flops_per_image=int(self.objective.backbone.flops_per_image()), total_steps=self.total_steps,
            steps_per_epoch=self.sampler.steps_per_epoch, batch_size=self.batch_size, class_names=data.class_names,
            resumed_from_step=self.step, skipped_files=data.skipped, data_notes=list(data.notes),
            world_size=self.world.world_size, backend=self.world.backend, devices=self.world.devices,
            resumed_from_time=self.resumed_from_time,
        ))

    def _prepare_distributed(self) -> int:
        """Under torchrun: check the batch splits, synchronise BatchNorm where the objective's recipe does; the local batch."""
        ws = self.world.world_size
        if ws == 1:
            return self.batch_size
        if self.batch_size % ws:
            raise ConfigError("batch_size", f"{self.batch_size} images do not split evenly over the {ws} processes torchrun started; "
                                            f"set batch_size to a multiple of {ws} (it stays the global batch)")
        self.objective.check_distributed(self.objective.params, ws)
        if self.objective.sync_batchnorm:
            distributed.convert_batchnorm(self.objective)
        return self.batch_size // ws

    def _take_lock(self) -> None:
        """Hold the run folder for the life of this process: readers tell a live run from a killed one by it,
        and a second process cannot train the same folder at once.  Only the process that writes the folder holds it."""
        if self.folder is None:
            return
        lock = RunLock(self.folder.path)
        try:
            self.lock = lock.acquire()
        except RunBusyError:
            raise ConfigError("RUN", f"{self.folder.path} is being trained by another process right now; wait for it to "
                                     "end (or stop it), then try again") from None
        except NotRegularFile as exc:  # a damaged folder, not a failed run: refused, nothing written
            raise ConfigError("", f"{lock.path} {exc.strerror}, so this process cannot mark the run as its own; move it "
                                  "away, then try again.") from None
        except OSError as exc:
            raise RunWriteError(describe_write_error(exc, lock.path.name, self.folder.path, self.folder.has_checkpoint()),
                                lock.path, exc.errno) from None

    def _restore(self, ckpt: dict[str, Any]) -> None:
        # _setup has compared the architecture settings already; this catches any other setting that shapes a state dict
        try:
            self.objective.load_state_dict(ckpt["objective"])
            self.objective.load_extra_state(ckpt.get("objective_extra", {}))
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:  # a setting that shapes the network or optimiser changed
            changed = changed_settings(ckpt.get("config"), self.cfg)
            since = f" (changed since it was saved: {'; '.join(changed[:4])})" if changed else ""
            raise ConfigError("", f"The checkpoint of {self.requested_dir} does not fit the run its config.toml describes{since}; "
                                  "restore config.toml or start a new run.") from exc
        # read_checkpoint checked the types; a size that does not fit (a generator state of another length, an image
        # order over other images) is a damaged checkpoint or changed data settings: refused before anything is written
        try:
            self.sampler.load_state(ckpt["sampler"])
            # Per-rank draws: this rank's own state when the checkpoint has one (same or more processes before),
            # else the fresh per-rank seed (the augmentations then differ from an uninterrupted run).
            rank = self.world.rank
            views, rngs = ckpt.get("view_generators", [ckpt["view_generator"]]), ckpt.get("torch_rngs", [ckpt["torch_rng"]])
            if rank < len(views):
                self.view_generator.set_state(views[rank])
                torch.set_rng_state(rngs[rank])
            if "draw_generator" in ckpt:
                self.objective.draw_generator.set_state(ckpt["draw_generator"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError):
            raise unfitting(RunFolder(self.requested_dir, create=False).checkpoint_path,
                            "sampler or random-generator state") from None
        self.step = ckpt["step"]
        self.elapsed = ckpt["elapsed"]

    def _checkpoint(self) -> None:
        if not all_finite(self.objective.state_dict().values()):  # weights and buffers (BN statistics)  # a finite loss can still take a step to inf weights: never save those over the last good ones
            raise Diverged(f"The weights became infinite or NaN by step {self.step}; lower optim.lr (now {self.peak_lr:.3g} at this "
                           "batch size) or set optim.grad_clip, then start again (the last good checkpoint is kept).")
        views, rngs = distributed.gather_states(self.view_generator.get_state()), distributed.gather_states(torch.get_rng_state())
        self.last_checkpoint = time.perf_counter()
        if not self.world.is_main:
            return
        self.folder.save_checkpoint({
            "format": 1,
            "step": self.step,
            "elapsed": self.elapsed,
            "config": config_to_mapping(self.cfg),
            "objective": self.objective.state_dict(),
            "objective_extra": self.objective.extra_state(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state(),
            "view_generator": self.view_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "world_size": self.world.world_size,
            "view_generators": views,
            "torch_rngs": rngs,
            "draw_generator": self.objective.draw_generator.get_state(),
        })
        self.last_checkpoint = time.perf_counter()
        if self.folder is not None:  # the step resume will go on from, for readers of metrics.jsonl
            self.folder.append({"event": "checkpoint", "time": time.time(), "step": self.step})

    # -- the loop ----------------------------------------------------------------------
    def progress(self) -> float:
        if self.total_steps is not None:
            return self.step / self.total_steps
        return self.elapsed / (self.budget_minutes * 60.0)

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def _make_batch(self) -> Batch:
        idx = distributed.shard(self.sampler.next())  # this rank's slice of the global batch
        data = self.imageset
        images, labels = self.train_images.batch(idx)
        n_global = self.objective.num_global_views
        n_local = self.objective.num_local_views
        with torch.no_grad():
            plain = self.views.plain(images)  # cheap next to the views; masked objectives train on it
            if "no_augmentation" in self.cfg.ablations:
                views = [plain] * n_global + ([] if n_local == 0 else self.views(images, 0, n_local, self.view_generator))
            else:
                views = self.views(images, n_global, n_local, self.view_generator)
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        captions = [data.captions[i] for i in idx.tolist()] if data.captions is not None else None
        return Batch(views=views, images=images, indices=idx, labels=labels, captions=captions, plain=plain)

    def _train_step(self, progress: float) -> StepValues:
        lr = lr_at(progress, self.peak_lr, self.cfg.optim.warmup_fraction, self.cfg.optim.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._make_batch()
        self.objective.train()
        with self._autocast():
            out = self.model(batch, progress)
        loss = out.loss.float()
        values = StepValues.of(self.step + 1, lr, loss, out.metrics)  # the global batch's loss and metrics, averaged over ranks
        if values.ready is None:  # known now (CPU): a diverged loss never reaches the weights
            self._check_finite(values)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.objective.after_step(progress)
        return values

    def _check_finite(self, values: StepValues) -> None:
        loss = values.read()[0]
        if not math.isfinite(loss):
            self.step = values.step - 1  # the steps that count are those before it
            if values.step == 1:  # computed from the initial weights: no learning rate is to blame
                raise Diverged(f"The loss was {loss} at the first step, before any weight was updated, so the learning rate is not "
                               f"the cause; {self._extreme_settings_hint()}")
            raise Diverged(f"The loss became {loss} at step {values.step}; lower optim.lr (now {self.peak_lr:.3g} at this batch size) "
                           "or set optim.grad_clip, then start again (the last good checkpoint is kept).")

    def _extreme_settings_hint(self) -> str:
        """What to look at when the untrained network's loss is not finite: the objective settings the user chose."""
        chosen = ", ".join(f"objective.{k} = {v!r}" for k, v in sorted(self.cfg.objective.params.items()))
        if chosen:
            return f"check the objective settings you chose ({chosen}) for an extreme value, then start again."
        return "check the data (images that are all one value) and the objective's settings, then start again."

    def _report(self, values: StepValues | None) -> None:
        """Read a step's values (a CUDA step's one step late, see step_values), stop a diverged run, emit its Step event.

        Every rank reads at the same steps; a checkpoint is never written before the steps it holds were read, so
        on CUDA a diverged loss is caught at most one step late and the last good checkpoint is what remains."""
        if values is None:
            return
        self._check_finite(values)
        if not self.world.is_main:
            return
        loss, metrics = values.read()
        rate = self.batch_size / max(values.seconds, 1e-9)  # the global batch: images/s of the whole job
        self.throughput = rate if self.throughput is None else 0.9 * self.throughput + 0.1 * rate
        elapsed = values.info["elapsed"]
        progress = min(values.step / self.total_steps if self.total_steps is not None else elapsed / (self.budget_minutes * 60.0), 1.0)
        eta = (elapsed / progress - elapsed) if progress > 0 else None
        self.emit(Step(step=values.step, epoch=values.step / self.sampler.steps_per_epoch, loss=loss, lr=values.lr,
                       images_per_s=self.throughput, elapsed_s=elapsed, progress=progress, eta_s=eta, metrics=metrics))

    def _loop(self) -> RunResult:
        cfg = self.cfg
        self.last_checkpoint = time.perf_counter()
        self.throughput = None
        self._last_agreed = None
        status = "completed"
        main = self.world.is_main
        pending: StepValues | None = None  # the last step's values, not read yet (CUDA)
        if self.step == 0:
            if main:
                self._probe(final=False)  # the randomly initialised backbone: the baseline every curve starts from
                if cfg.probe.visuals_every:
                    self._visuals()  # the pictures at initialisation: panels show at once, and what training changes
            self._checkpoint()  # a divergence in the first minute still leaves a good checkpoint
        while True:
            stop, done, progress_now, due = self._agree_on_next_step()
            if stop:
                status = "stopped"
                break
            if self.control.paused:  # the window's pause: one process only (nothing pauses a torchrun job)
                self._report(pending)
                pending = None
                self._checkpoint()
                if not self.control.wait_while_paused():
                    status = "stopped"
                    break
            if done:
                break
            if due:
                self._report(pending)
                pending = None
                self._checkpoint()
            t0 = time.perf_counter()
            values = self._train_step(progress_now)
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            values.seconds, values.info["elapsed"] = dt, self.elapsed
            previous, pending = pending, values
            self._report(previous)  # on CUDA the device has this step queued while the host reads the last one
            probe_due = bool(cfg.probe.every) and self.step % cfg.probe.every == 0 and self.progress() < 1.0  # the last one is the final probe
            visuals_due = bool(cfg.probe.visuals_every) and self.step % cfg.probe.visuals_every == 0
            if pending.ready is None or probe_due or visuals_due:
                self._report(pending)
                pending = None
            # after this step's Step event: a panel that answers it (the reconstruction slider) is served at this step
            requests = self.control.take_requests() if main else []  # only the window asks, and it runs one process
            if requests and pending is not None:
                self._report(pending)
                pending = None
            if not main:
                continue
            if probe_due:
                t1 = time.perf_counter()
                self._probe(final=False)
                self.elapsed += time.perf_counter() - t1  # probes are part of the run's wall-clock cost
            if visuals_due:
                self._visuals()
            for request in requests:
                self._visuals(request)
        self._report(pending)  # before the checkpoint: a diverged last step must not overwrite the last good one
        self._checkpoint()
        if not main:  # rank 0 runs the final probe and evaluation and reports
            return RunResult(status, None, self.step)
        if status == "stopped" and self.last_probe is not None:
            # a stop must end within a couple of seconds (the window waits on it): no final probe or
            # evaluation; 'ssl-studio eval' or the runs browser's Evaluate does that later
            probe, summary = self.last_probe, {}
        else:
            probe = self._probe(final=True)
            self._visuals()
            summary = self._evaluate()
        summary.update({"effective_rank": probe.effective_rank, "mean_cosine": probe.mean_cosine, "dim_std": probe.dim_std,
                        "steps": self.step, "train_seconds": self.elapsed})
        verdict = diagnostics.collapse_verdict(probe.mean_cosine, probe.effective_rank, probe.feature_dim, probe.projector_rank,
                                               initial=self.initial_probe) if probe.step > 0 else None
        summary["collapse"] = verdict
        self.emit(Finished(step=self.step, status=status, run_dir=str(self.folder.path), summary=summary))
        return RunResult(status, self.folder.path, self.step, summary)

    def _agree_on_next_step(self) -> tuple[bool, bool, float, bool]:
        """(stop, budget done, progress, checkpoint due): every rank's stop request, rank 0's clock for the rest,
        so all ranks take the same step, stop at the same step and checkpoint together."""
        main = self.world.is_main
        now = time.perf_counter()
        # due one loop early when the next step (and its probe) would carry the work at risk past the interval, so
        # that a kill -9 loses at most CHECKPOINT_EVERY_S of work even when a step takes seconds
        loop = now - self._last_agreed if self._last_agreed is not None else 0.0
        self._last_agreed = now
        due = now - self.last_checkpoint + loop > CHECKPOINT_EVERY_S
        progress = self.progress()
        if self.world.world_size == 1:
            return self.control.stop_requested, progress >= 1.0, progress, due
        stop, done, progress, due = distributed.agree([float(self.control.stop_requested), float(main and progress >= 1.0),
                                                       progress if main else 0.0, float(main and due)])
        return stop > 0, done > 0, progress, due > 0

    # -- probes and evaluation (measured by the Prober, emitted here) ---------------------
    def _probe(self, final: bool) -> Probe:
        event = self.prober.probe(self.step, final)
        self.last_probe = event
        if self.step == 0 and self.initial_probe is None:
            self.initial_probe = diagnostics.Baseline(event.mean_cosine, event.effective_rank, event.projector_rank)
        self.emit(event)
        return event

    def _visuals(self, request: dict[str, Any] | None = None) -> None:
        for event in self.prober.visuals(self.step, request):
            self.emit(event)

    def _evaluate(self) -> dict[str, Any]:
        results, summary = self.prober.evaluate()
        if results:
            for name, value in results.items():
                self.folder.write_report(name, value)
            self.emit(Evaluated(step=self.step, results=results))
        return summary
