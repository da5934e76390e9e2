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

import numpy as np
import torch

from ssl_studio.config import RunConfig, changed_settings, checkpoint_mismatch, config_to_mapping, validate_config
from ssl_studio.data import ImageSet
from ssl_studio.engine import attention, diagnostics, distributed
from ssl_studio.engine.build import build_objective, build_views, effective_batch_size, load_data, resolved_optim
from ssl_studio.engine.control import RunControl
from ssl_studio.engine.device import pick_channels_last, pick_device, pick_precision
from ssl_studio.engine.evaluate import attribute_knn, embed_images, fit_linear, knn_accuracy, knn_protocol, linear_protocol, standardise
from ssl_studio.engine.events import Callback, Evaluated, Event, Failed, Finished, Probe, Started, Step, Visuals
from ssl_studio.engine.optim import build_optimizer, lr_at
from ssl_studio.engine.run_lock import RunBusyError, RunLock
from ssl_studio.engine.run_writes import RunWriteError, describe_write_error
from ssl_studio.engine.runs import RunFolder, new_run_dir
from ssl_studio.objectives import Batch
from ssl_studio.params import ConfigError

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


class EpochSampler:
    """Seeded shuffles of the training indices, one full permutation per epoch, resumable exactly."""

    def __init__(self, train_index: torch.Tensor, batch_size: int, seed: int):
        self.train_index = train_index
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.epoch = 0
        self.position = 0
        self.order = self._shuffle()

    def _shuffle(self) -> torch.Tensor:
        return self.train_index[torch.randperm(len(self.train_index), generator=self.generator)]

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train_index) // self.batch_size)

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):  # drop the ragged tail: BN and losses want full batches
            self.epoch += 1
            self.position = 0
            self.order = self._shuffle()
        idx = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "order": self.order, "generator": self.generator.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.position, self.order = state["epoch"], state["position"], state["order"]
        self.generator.set_state(state["generator"])


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
            return dataclasses.replace(self._fail("failed", str(exc)), refused=True)
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

    def _fail(self, status: str, message: str, exc: BaseException | None = None) -> RunResult:
        """Record and report a failure; never raises, even when the disk that failed the run fails these writes too."""
        if self.world.world_size > 1:
            if not self.world.is_main:  # rank 0 reports it: the run's last event names this rank
                distributed.announce_failure(f"{message[0].lower()}{message[1:]}" if message else "it stopped")
                return RunResult(status, None, self.step, message=message)
            elsewhere = distributed.failure_elsewhere(wait_s=3.0) if exc is not None else None
            if elsewhere is not None:  # rank 0's own error is the broken connection; the cause is the other rank's
                message = f"Training stopped at step {self.step}: {elsewhere}"
        if exc is not None and self.folder is not None:
            self.folder.write_error_text("".join(traceback.format_exception(exc)))
        run_dir = str(self.folder.path) if self.folder else None
        event = Failed(step=self.step, status=status, message=message, run_dir=run_dir)
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
        if self.requested_dir is None and out.exists() and not out.is_dir():
            raise ConfigError("out", f"is {out}, a file, not a folder; pass a folder under which run folders are made "
                                     "(it is created if missing).")
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
        torch.manual_seed(cfg.seed)
        self.objective = build_objective(cfg, data, start_weights=checkpoint is None).to(self.device)
        if self.channels_last:
            self.objective.to(memory_format=torch.channels_last)
        self.views = build_views(cfg, data)
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

        probe_pool = data.val_index if len(data.val_index) else data.train_index
        self.probe_index = probe_pool[: cfg.probe.size]
        if data.labels is not None:
            g = torch.Generator().manual_seed(cfg.seed + 3)
            bank_size = min(len(data.train_index), max(2000, 4 * len(self.probe_index)))
            self.bank_index = data.train_index[torch.randperm(len(data.train_index), generator=g)[:bank_size]]
        else:
            self.bank_index = None

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
            run_dir=str(self.folder.path), objective=cfg.objective.name, data=data.name, backbone=cfg.model.backbone,
            device=str(self.device), precision="bf16" if self.autocast_dtype is not None else "float32",
            channels_last=self.channels_last, num_train=len(data.train_index), num_probe=len(self.probe_index),
            feature_dim=self.objective.backbone.feature_dim, parameters=n_params,
            flops_per_image=int(self.objective.backbone.flops_per_image()), total_steps=self.total_steps,
            steps_per_epoch=self.sampler.steps_per_epoch, batch_size=self.batch_size, class_names=data.class_names,
            resumed_from_step=self.step, skipped_files=data.skipped,
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
        self.step = ckpt["step"]
        self.elapsed = ckpt["elapsed"]

    def _checkpoint(self) -> None:
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
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _make_batch(self) -> Batch:
        idx = distributed.shard(self.sampler.next())  # this rank's slice of the global batch
        data = self.imageset
        images = data.images[idx].to(self.device, non_blocking=True)
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
        labels = data.labels[idx].to(self.device) if data.labels is not None else None
        captions = [data.captions[i] for i in idx.tolist()] if data.captions is not None else None
        return Batch(views=views, images=images, indices=idx, labels=labels, captions=captions, plain=plain)

    def _train_step(self, progress: float) -> tuple[float, dict[str, float], float]:
        lr = lr_at(progress, self.peak_lr, self.cfg.optim.warmup_fraction, self.cfg.optim.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._make_batch()
        self.objective.train()
        with self._autocast():
            out = self.model(batch, progress)
        loss = out.loss.float()
        loss_value = distributed.mean_over_ranks(loss.detach()).item()  # the global-batch loss, the same on every rank
        if not math.isfinite(loss_value):
            raise Diverged(f"The loss became {loss_value} at step {self.step + 1}; lower optim.lr (now {self.peak_lr:.3g} at this batch size) "
                           "or set optim.grad_clip, then start again (the last good checkpoint is kept).")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.objective.after_step(progress)
        metrics = {k: float(v) for k, v in out.metrics.items()}
        if self.world.world_size > 1 and metrics:  # each rank's value on its share, averaged
            values = distributed.mean_over_ranks(torch.tensor(list(metrics.values()), dtype=torch.float64, device=loss.device))
            metrics = dict(zip(metrics, values.tolist()))
        return loss_value, metrics, lr

    def _loop(self) -> RunResult:
        cfg = self.cfg
        self.last_checkpoint = time.perf_counter()
        throughput = None
        status = "completed"
        main = self.world.is_main
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
                self._checkpoint()
                if not self.control.wait_while_paused():
                    status = "stopped"
                    break
            if done:
                break
            if due:
                self._checkpoint()
            t0 = time.perf_counter()
            loss, metrics, lr = self._train_step(progress_now)
            self.step += 1
            dt = time.perf_counter() - t0
            self.elapsed += dt
            if not main:
                continue
            rate = self.batch_size / max(dt, 1e-9)  # the global batch: images/s of the whole job
            throughput = rate if throughput is None else 0.9 * throughput + 0.1 * rate
            progress = min(self.progress(), 1.0)
            eta = (self.elapsed / progress - self.elapsed) if progress > 0 else None
            self.emit(Step(step=self.step, epoch=self.step / self.sampler.steps_per_epoch, loss=loss, lr=lr,
                           images_per_s=throughput, elapsed_s=self.elapsed, progress=progress, eta_s=eta, metrics=metrics))
            if cfg.probe.every and self.step % cfg.probe.every == 0 and self.progress() < 1.0:  # the last one is the final probe
                t1 = time.perf_counter()
                self._probe(final=False)
                self.elapsed += time.perf_counter() - t1  # probes are part of the run's wall-clock cost
            if cfg.probe.visuals_every and self.step % cfg.probe.visuals_every == 0:
                self._visuals()
            for request in self.control.take_requests():
                self._visuals(request)
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
        due = time.perf_counter() - self.last_checkpoint > CHECKPOINT_EVERY_S
        progress = self.progress()
        if self.world.world_size == 1:
            return self.control.stop_requested, progress >= 1.0, progress, due
        stop, done, progress, due = distributed.agree([float(self.control.stop_requested), float(main and progress >= 1.0),
                                                       progress if main else 0.0, float(main and due)])
        return stop > 0, done > 0, progress, due > 0

    # -- probes and evaluation -----------------------------------------------------------
    def _embed(self, index: torch.Tensor) -> torch.Tensor:
        self.objective.eval()

        def to_input(x):
            v = self.views.plain(x)
            return v.contiguous(memory_format=torch.channels_last) if self.channels_last else v

        return embed_images(self.objective.embed, self.imageset.images[index], to_input, device=self.device,
                            autocast_dtype=self.autocast_dtype)

    @torch.no_grad()
    def _probe(self, final: bool) -> Probe:
        data = self.imageset
        feats = self._embed(self.probe_index)
        finite = torch.isfinite(feats).all()
        if not finite:
            feats = torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
        labels = data.labels[self.probe_index] if data.labels is not None else None
        knn = linear = None
        if labels is not None and self.bank_index is not None:
            bank = self._embed(self.bank_index)
            bank_labels = data.labels[self.bank_index]
            knn = knn_accuracy(bank, bank_labels, feats, labels, k=self.cfg.probe.knn_k, num_classes=data.num_classes)
            # the online linear probe: a detached classifier on the current features (solo-learn reports the same number)
            bank_std, probe_std = standardise(bank, feats)
            head = fit_linear(bank_std, bank_labels, data.num_classes, weight_decay=1e-4, max_iter=50)
            with torch.no_grad():
                linear = float((head(probe_std).argmax(1) == labels).float().mean())
        projector_rank = None
        if hasattr(self.objective, "projector_embed"):
            self.objective.eval()
            x = self.views.plain(data.images[self.probe_index[:512]].to(self.device))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                z = self.objective.projector_embed(x)
            if z is not None:
                projector_rank = diagnostics.effective_rank(torch.nan_to_num(z.float().cpu()))
        overlap = None
        backbone = getattr(self.objective, "attention_backbone", self.objective.backbone)
        if data.masks is not None and attention.has_attention(backbone):
            first = self.probe_index[:64]
            x = self.views.plain(data.images[first].to(self.device))
            overlap = attention.attention_overlap(backbone, x, data.masks[first])
        event = Probe(
            step=self.step,
            effective_rank=diagnostics.effective_rank(feats),
            mean_cosine=diagnostics.mean_cosine(feats),
            dim_std=diagnostics.dim_std(feats),
            knn_acc=knn,
            linear_acc=linear,
            feature_dim=feats.shape[1],
            projector_rank=projector_rank,
            spectrum=diagnostics.spectrum(feats).astype(np.float32),
            points2d=diagnostics.pca_2d(feats),
            labels=labels.numpy() if labels is not None else None,
            indices=self.probe_index.numpy(),
            features=feats.numpy(),
            final=final,
            attention_iou=None if overlap is None else overlap["iou"],
            attention_auc=None if overlap is None else overlap["auc"],
        )
        self.last_probe = event
        if self.step == 0 and self.initial_probe is None:
            self.initial_probe = diagnostics.Baseline(event.mean_cosine, event.effective_rank, projector_rank)
        self.emit(event)
        return event

    @torch.no_grad()
    def _visuals(self, request: dict[str, Any] | None = None) -> None:
        """The objective's pictures on the fixed probe images; ``request`` (from a panel) asks for specific ones."""
        self.objective.eval()
        images = self.views.plain(self.imageset.images[self.probe_index[:16]].to(self.device))
        if request is not None:
            out = dict(self.objective.visual_request(images, request) or {})
        else:
            out = dict(self.objective.visuals(images) or {})
        backbone = getattr(self.objective, "attention_backbone", self.objective.backbone)
        if request is None and attention.has_attention(backbone):  # every ViT objective: [CLS] attention, its 60 %-mass mask, IoU
            masks = self.imageset.masks[self.probe_index[:16]] if self.imageset.masks is not None else None
            generic = attention.attention_visuals(backbone, images, masks, mean=self.imageset.mean, std=self.imageset.std)
            if generic is not None:
                out["attention"] = {**out.get("attention", {}), **generic}
        if not out:
            return
        for kind, payload in out.items():
            arrays = {k: np.asarray(v) for k, v in payload.items() if isinstance(v, (np.ndarray, torch.Tensor))}
            arrays = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}
            info = {k: v for k, v in payload.items() if not isinstance(v, (np.ndarray, torch.Tensor))}
            self.emit(Visuals(step=self.step, kind=kind, arrays=arrays, info=info))

    def _evaluate(self) -> dict[str, Any]:
        data = self.imageset
        summary: dict[str, Any] = {}
        if len(data.val_index) == 0:
            return summary
        results: dict[str, Any] = {}
        if data.labels is not None:
            train_feats = self._embed(data.train_index)
            val_feats = self._embed(data.val_index)
            y_train, y_val = data.labels[data.train_index], data.labels[data.val_index]
            results["knn"] = knn_protocol(train_feats, y_train, val_feats, y_val, data.num_classes)
            results["linear"] = linear_protocol(train_feats, y_train, val_feats, y_val, data.num_classes, seed=self.cfg.seed)
            summary.update(knn_k5=results["knn"]["k5"], knn_k20=results["knn"]["k20"], linear_top1=results["linear"]["top1"])
            encoded = attribute_knn(train_feats, val_feats, data.attributes, data.train_index, data.val_index, labels=data.labels)
            if encoded is not None:
                results["attributes"] = encoded
                summary["attribute_knn"] = {name: r["k20"] for name, r in encoded["attributes"].items()}
        # An image-text model: zero-shot with labels, retrieval with captions alone (an unlabelled captioned folder).
        if hasattr(self.objective, "encode_text") and (data.labels is not None or data.captions is not None):
            from ssl_studio.engine.zeroshot import zeroshot_protocol

            results["zeroshot"] = zeroshot_protocol(self.objective, data, self.views, self.device, held_out=self.cfg.data.held_out,
                                                    autocast_dtype=self.autocast_dtype)
            summary["zeroshot_top1"] = results["zeroshot"]["top1"]
            if "recall" in results["zeroshot"]:
                summary["recall_i2t_r5"] = results["zeroshot"]["recall"].get("image_to_text", {}).get("r5")
        if not results:
            return summary
        for name, value in results.items():
            self.folder.write_report(name, value)
        self.emit(Evaluated(step=self.step, results=results))
        return summary
