"""Reading a run's checkpoint without letting the file run code, and refusing damaged ones in one sentence.

A ``.pt`` file is a pickle, and a pickle can name any importable callable (``os.system``
included), which the standard unpickler calls. Run folders travel between people and
machines (the window opens folders written elsewhere), so every checkpoint the lab reads
goes through ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which
admits tensors, numbers, strings, ``None`` and plain containers and nothing else. That is
everything the trainer writes (state dicts, optimiser state, sampler and generator
states, the config as a plain mapping, the tokenizer as JSON text), so nothing is
allow-listed beyond it. What comes back is then checked for the shape the trainer
wrote, so a foreign or half-written file is refused with the file's name, not a
``KeyError`` later.
"""

from __future__ import annotations

import math
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ssl_studio.params import ConfigError
from ssl_studio.regular_file import open_regular, special_kind

RESUME_KEYS = ("optimizer", "sampler", "view_generator", "torch_rng", "elapsed")


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: missing, damaged, foreign, or holding code."""

    def __init__(self, path: Path, message: str):
        self.path = path
        super().__init__("", message)


def _refuse_code(path: Path, exc: Exception) -> CheckpointError:
    detail = str(exc)
    # torch names the offending global ("GLOBAL posix.system was not an allowed global"); keep just that name
    name = ""
    for marker in ("GLOBAL ", "Unsupported global: "):
        if marker in detail:
            name = detail.split(marker, 1)[1].split()[0].strip(".,:")
            break
    what = f" ({name})" if name else ""
    return CheckpointError(path, f"Checkpoint {path} holds objects other than tensors and plain values{what}, so it was not "
                                 "loaded: loading it could run code. Use a checkpoint that SSL Studio wrote, or delete the file.")


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(path, f"Checkpoint {path} {why}; restore a good copy of it, or start the run again.")


def all_finite(tensors) -> bool:
    """Whether every floating-point tensor holds only finite values: one min/max pass each (NaN propagates into both),
    without the boolean copy per tensor that ``isfinite`` makes, so the check stays cheap beside a periodic save."""
    extremes = [torch.stack(v.aminmax()).float() for v in tensors if v.is_floating_point() and v.numel()]
    return bool(torch.isfinite(torch.stack(extremes)).all()) if extremes else True


def unfitting(path: Path, what: str) -> CheckpointError:
    """A checkpoint whose ``what`` (e.g. "sampler state") is sound in itself but does not fit the run resuming from it."""
    return CheckpointError(path, f"Checkpoint {path} holds a {what} that does not fit this run (the file is damaged, or the data "
                                 "settings in config.toml changed since it was saved); restore a good copy of either, or start "
                                 "the run again.")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", resume: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded safely and checked; ``resume`` also requires the optimiser and sampler states.

    Raises ``CheckpointError`` (a ``ConfigError``) with one sentence naming the file for
    anything else: a missing file, a directory, a truncated or zeroed file, a file that is
    not a checkpoint, or one that would need code to load.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, f"Run folder {path.parent.parent} has no checkpoint ({path} is missing); "
                                    "it may have failed before its first save.")
    if not path.is_file():
        raise _damaged(path, f"is {special_kind(path) or 'not a regular file'}, not a file")
    if path.stat().st_size == 0:
        raise _damaged(path, "is empty (0 bytes; a disk that filled up or a crash mid-write can leave this)")
    try:
        with warnings.catch_warnings(), open_regular(path) as fh:  # torch's notes on foreign pickles would print beside ours
            warnings.simplefilter("ignore")
            state = torch.load(fh, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # the file names a callable: refused as code, whatever else it holds
            raise _refuse_code(path, exc) from None
        raise _damaged(path, "is damaged or not a PyTorch checkpoint (it does not unpickle)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _damaged(path, f"is damaged or not a PyTorch checkpoint ({type(exc).__name__})") from None
    except OSError as exc:
        raise CheckpointError(path, f"Checkpoint {path} could not be read ({exc.strerror or exc}); check the disk and its "
                                    "permissions.") from None
    _check_shape(path, state, resume)
    return state


def _check_shape(path: Path, state: Any, resume: bool) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("objective"), dict):
        raise _damaged(path, "is not an SSL Studio checkpoint (it has no objective weights)")
    bad = [k for k, v in state["objective"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise _damaged(path, f"holds objective weights that are not tensors (e.g. {bad[0]!r})")
    # the trainer never saves non-finite weights, so such a file is damaged or foreign: scoring it would print nonsense
    bad = [k for k, v in state["objective"].items() if not all_finite([v])]
    if bad:
        raise _damaged(path, f"holds weights that are NaN or infinite (e.g. {bad[0]})")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise _damaged(path, f"has no valid step count (step = {step!r})")
    if resume:
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise _damaged(path, f"lacks what resuming needs ({', '.join(missing)})")
        _check_resume_state(path, state)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_resume_state(path: Path, state: dict[str, Any]) -> None:
    """The optimiser, sampler and generator states have the types the trainer wrote (their sizes are checked where
    they are restored), so a damaged one is refused here, before anything of the run is touched."""
    generators = [state["view_generator"], state["torch_rng"], *[state[k] for k in ("draw_generator",) if k in state]]
    for key in ("view_generators", "torch_rngs"):
        if key in state:
            if not isinstance(state[key], list):
                raise _damaged(path, f"holds a {key} entry that is not a list of random-generator states")
            generators += state[key]
    if not all(isinstance(g, torch.Tensor) and g.dtype == torch.uint8 and g.dim() == 1 for g in generators):
        raise _damaged(path, "holds random-generator states that are not byte tensors")
    elapsed = state["elapsed"]
    if not isinstance(elapsed, (int, float)) or isinstance(elapsed, bool) or not math.isfinite(elapsed) or elapsed < 0:
        raise _damaged(path, f"has no valid elapsed time (elapsed = {elapsed!r})")
    optimizer = state["optimizer"]
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list) and all(isinstance(g, dict) for g in optimizer["param_groups"])):
        raise _damaged(path, "holds an optimiser state that is not one PyTorch writes")
    sampler = state["sampler"]
    order = sampler.get("order") if isinstance(sampler, dict) else None
    if not (isinstance(order, torch.Tensor) and order.dim() == 1 and order.dtype == torch.int64
            and _is_count(sampler.get("epoch")) and _is_count(sampler.get("position")) and sampler["position"] <= len(order)
            and isinstance(sampler.get("generator"), torch.Tensor) and sampler["generator"].dtype == torch.uint8):
        raise _damaged(path, "holds a sampler state (the order of the training images) that is not one SSL Studio writes")
    if not isinstance(state.get("objective_extra", {}), dict):
        raise _damaged(path, "holds an objective state (objective_extra) that is not a mapping")
