"""Scale-out under ``torchrun``: the process group, who this rank is, and the collectives every objective uses.

One process is the special case of N: every function here is the identity (or a no-op) when no process
group is running, so objectives and the trainer call them unconditionally.  The collectives live with the
objectives that call them (``ssl_studio.objectives.collectives``, below the engine) and are re-exported here.

The rule that makes N processes compute the gradient of the global-batch loss:

* each rank's loss is its share of the global loss, chosen so that the global loss is the *mean* of the
  ranks' losses (a loss averaged over a rank's rows; or the global loss itself, identical on every rank);
* ``DistributedDataParallel`` averages the parameter gradients over the ranks;
* every collective here whose output carries gradient (``gather``, ``all_reduce_sum``) *sums* the incoming
  gradient over the ranks in its backward pass, so a rank's samples receive the gradient that every rank's
  loss sends them.

Then the averaged gradient is (1/W) sum_r sum_s dL_s/dtheta through rank r's samples = d(mean_s L_s)/dtheta,
the gradient one process computes on the concatenated batch (solo-learn#253 is what happens without the
sum: gathered negatives without gradient).

Batch normalisation over the global batch is ``GlobalBatchNorm`` (CPU and CUDA, any backend): PyTorch's
``SyncBatchNorm`` refuses CPU tensors, and the lab's tests run on gloo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ssl_studio.engine.global_batchnorm import GlobalBatchNorm, convert_batchnorm  # noqa: F401  (the engine's one import point)
from ssl_studio.objectives.collectives import (  # noqa: F401  (the engine's callers use them from here too)
    all_reduce_max, all_reduce_sum, gather, gather_no_grad, global_rows, is_distributed, mean_over_ranks, my_rows, rank, shard, world_size)
from ssl_studio.params import ConfigError

FAILURE_KEY = "ssl_studio/failed/"
_control_group = None  # a gloo group beside NCCL for the per-step agreement (see agree)


# --------------------------------------------------------------------------- who am I


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, number of processes, its device and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    devices: list[str] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun(env: dict[str, str] | None = None) -> bool:
    """Whether torchrun (or any ``env://`` launcher) started this process: RANK and WORLD_SIZE are set."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def env_rank(env: dict[str, str] | None = None) -> int:
    """This process's rank from the environment (0 when not launched by torchrun or unreadable)."""
    env = os.environ if env is None else env
    try:
        return int(env.get("RANK", "0"))
    except ValueError:
        return 0


def _env_int(env, name: str) -> int:
    text = env.get(name, "0")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(name, f"must be a whole number (torchrun sets it), got {text!r}; start the run with torchrun") from None


def init_from_env(device: torch.device, timeout_s: float = 1800.0) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA, one GPU per local rank).

    Returns the world and this rank's device.  Outside torchrun (or with one process) nothing is
    started and the device is returned unchanged.
    """
    env = os.environ
    if not launched_by_torchrun(env):
        return World(devices=[str(device)]), device
    ws, rk, local = _env_int(env, "WORLD_SIZE"), _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if ws <= 1:
        return World(devices=[str(device)]), device
    if device.type == "mps":
        raise ConfigError("device", "is mps, which torch.distributed cannot train on; set device to cpu to run under torchrun")
    backend = _requested_backend(env, device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ConfigError("--nproc_per_node", f"asks for local rank {local} but this machine has {torch.cuda.device_count()} "
                                                  "CUDA devices; start at most one process per GPU")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        import datetime

        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as exc:  # noqa: BLE001 - reported as one sentence
            raise _join_error(exc, env) from None
    global _control_group
    _control_group = dist.new_group(backend="gloo") if backend == "nccl" else None  # agree() without a GPU sync
    devices = gather_strings(f"{socket.gethostname()}:{device}")
    return World(rank=rk, world_size=ws, local_rank=local, backend=backend, devices=devices), device


BACKEND_VARIABLE = "SSL_STUDIO_BACKEND"


def _requested_backend(env, device: torch.device) -> str:
    """gloo on CPU and NCCL on CUDA, unless ``SSL_STUDIO_BACKEND`` names one (gloo also runs on CUDA tensors)."""
    wanted = env.get(BACKEND_VARIABLE, "auto").strip().lower() or "auto"
    if wanted not in ("auto", "gloo", "nccl"):
        raise ConfigError(BACKEND_VARIABLE, f"is {wanted!r}; set it to auto, gloo or nccl (or unset it)")
    if wanted == "nccl" and device.type != "cuda":
        why = "this machine has no CUDA device" if not torch.cuda.is_available() else f"the run's device is {device}"
        raise ConfigError(BACKEND_VARIABLE, f"is nccl, which needs CUDA GPUs, but {why}; unset it (gloo is used on CPU) "
                                            "or set device to cuda on a machine with GPUs")
    if wanted == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return wanted


def _join_error(exc: BaseException, env) -> ConfigError:
    """Why this rank could not join the process group, as one sentence naming the setting to change."""
    text = str(exc)
    port, addr = env.get("MASTER_PORT", "?"), env.get("MASTER_ADDR", "?")
    if "EADDRINUSE" in text or "address already in use" in text.lower():
        return ConfigError("--master-port", f"port {port} on {addr} is already in use (another job, or an earlier run still "
                                            "ending); start torchrun with a free --master-port (or --rdzv-endpoint HOST:PORT)")
    if "timed out" in text.lower() or "timeout" in text.lower():
        return ConfigError("torchrun", f"the other processes did not join within the time allowed at {addr}:{port}; check that "
                                       "every node was started with the same --nnodes, --master-addr and --master-port and can reach it")
    first = text.splitlines()[0][:160] if text else ""
    return ConfigError("torchrun", f"could not join the process group at {addr}:{port} ({type(exc).__name__}: {first}); "
                                   "check --master-addr:--master-port (a free port, reachable from every node)")


def shutdown() -> None:
    global _control_group
    _control_group = None
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def gather_strings(text: str, size: int = 256) -> list[str]:
    """Every rank's short string, without pickling (bytes in a fixed-size uint8 tensor)."""
    if not is_distributed():
        return [text]
    raw = text.encode("utf-8")[:size]
    t = torch.zeros(size + 1, dtype=torch.uint8)
    t[0] = len(raw)
    t[1:1 + len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    rows = gather_no_grad(t[None]).cpu()
    return [bytes(r[1:1 + int(r[0])].tolist()).decode("utf-8", "replace") for r in rows]


@torch.no_grad()
def gather_states(state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's RNG state (a uint8 tensor), for rank 0's checkpoint."""
    if not is_distributed():
        return [state]
    x = state.contiguous()
    if dist.get_backend() == "nccl":
        x = x.cuda()
    return [s.cpu().clone() for s in gather_no_grad(x[None])]  # own storage each: set_state reads from its start


def agree(flags: list[float]) -> list[float]:
    """Element-wise sum of ``flags`` over ranks: rank 0 alone contributes its clock-based decisions, every
    rank its stop request, and all ranks then act on the same numbers (one small all-reduce per step)."""
    if not is_distributed():
        return list(flags)
    t = torch.tensor(flags, dtype=torch.float64)
    if _control_group is not None:  # NCCL: a CPU all-reduce over gloo, so the host never waits for the GPU here
        dist.all_reduce(t, group=_control_group)
        return t.tolist()
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier() -> None:
    if is_distributed():
        with contextlib.suppress(Exception):  # a rank that has gone is reported elsewhere; leaving must not hang on it
            dist.barrier()


# --------------------------------------------------------------------------- failures that end every rank


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - no store: nothing to announce through
        return None


LOST_KEY = "ssl_studio/lost/"
_PEER_LOSS_WORDS = ("connection reset", "connection closed", "broken pipe", "connection refused", "gloo/transport",
                    "nccl communicator was aborted", "ncclremoteerror", "socket closed", "by peer")


def is_peer_loss(exc: BaseException) -> bool:
    """Whether ``exc`` is this rank losing its connection to another rank (the other one's failure, not this one's)."""
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return isinstance(exc, getattr(dist, "DistNetworkError", ())) or any(word in text for word in _PEER_LOSS_WORDS)


def announce_failure(message: str, lost_peer: bool = False) -> None:
    """Leave this rank's word in the rendezvous store, where rank 0 reads it: its one-sentence failure, or (when
    it only lost a connection to another rank) that it is alive, so that rank 0 can tell who went silent."""
    if not is_distributed():
        return
    store = _store()
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(f"{LOST_KEY if lost_peer else FAILURE_KEY}{rank()}", message)


def failure_elsewhere(wait_s: float = 3.0, lost_peer: bool = False) -> str | None:
    """Why the job failed when the cause is another rank, as a clause for rank 0's last event, or None.

    The sentence a rank left when it failed (waiting up to ``wait_s`` for it to arrive); else, when this rank
    lost its connection (``lost_peer``), the ranks that left no word at all: killed (SIGKILL, the out-of-memory
    killer) or their machine gone.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    store = _store()
    if store is None:
        return None
    me, ws = dist.get_rank(), dist.get_world_size()
    others = [r for r in range(ws) if r != me]
    deadline = time.monotonic() + wait_s
    silent = others
    while True:
        spoke = set()
        for r in others:
            with contextlib.suppress(Exception):
                if store.check([f"{FAILURE_KEY}{r}"]):
                    return f"rank {r} failed: {store.get(f'{FAILURE_KEY}{r}').decode('utf-8', 'replace')}"
                if store.check([f"{LOST_KEY}{r}"]):
                    spoke.add(r)
        silent = [r for r in others if r not in spoke]
        if time.monotonic() > deadline or (lost_peer and not silent):
            break
        time.sleep(0.1)
    if not lost_peer or not silent:
        return None
    who = f"rank {silent[0]}" if len(silent) == 1 else "ranks " + ", ".join(map(str, silent))
    return (f"{who} ended without a word (its process was killed, e.g. by SIGKILL or the out-of-memory killer, or its "
            "machine went away; torchrun's report gives the exit code); resume the run from its last checkpoint")


@contextlib.contextmanager
def stop_on_sigterm(control):
    """Under torchrun, SIGTERM (torchrun's way of ending the workers) asks the run to stop after its step,
    saving a checkpoint; the ranks agree on the step through ``agree``."""
    if not launched_by_torchrun():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: control.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the model


def wrap(objective: nn.Module, device: torch.device) -> nn.Module:
    """The module the step calls: the objective itself, or DistributedDataParallel around it.

    Buffers are not broadcast each step (queues, centres and synchronised BN statistics are kept
    equal by the objectives' own collectives); unused parameters are allowed (frozen prototypes,
    a frozen last layer, a mask token on a step that masks nothing).
    """
    if not is_distributed():
        return objective
    from torch.nn.parallel import DistributedDataParallel

    import warnings

    ids = [device.index] if device.type == "cuda" else None
    with warnings.catch_warnings():  # broadcast_buffers=False is what is meant here (no buffer sync at init or per step)
        warnings.simplefilter("ignore", FutureWarning)
        return DistributedDataParallel(objective, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)


def rank_seed(seed: int) -> int:
    """A seed of this rank's own (rank 0 keeps ``seed``, so one process draws what it always drew)."""
    return seed + 1_000_003 * rank()


__all__ = ["GlobalBatchNorm", "World", "agree", "all_reduce_max", "all_reduce_sum", "announce_failure", "barrier",
           "convert_batchnorm", "env_rank", "failure_elsewhere", "gather", "gather_no_grad", "gather_states", "gather_strings",
           "global_rows", "init_from_env", "is_distributed", "is_peer_loss", "launched_by_torchrun", "mean_over_ranks", "my_rows", "rank",
           "rank_seed", "shard", "shutdown", "stop_on_sigterm", "world_size", "wrap"]
