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

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ssl_studio.params import ConfigError

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
        raise _damaged(path, "is not a file")
    if path.stat().st_size == 0:
        raise _damaged(path, "is empty (0 bytes; a disk that filled up or a crash mid-write can leave this)")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles would print beside our sentence
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
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
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise _damaged(path, f"has no valid step count (step = {step!r})")
    if resume:
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise _damaged(path, f"lacks what resuming needs ({', '.join(missing)})")
        if not isinstance(state["view_generator"], torch.Tensor) or not isinstance(state["torch_rng"], torch.Tensor):
            raise _damaged(path, "holds random-generator states that are not tensors")
        if not isinstance(state["elapsed"], (int, float)) or isinstance(state["elapsed"], bool):
            raise _damaged(path, f"has no valid elapsed time (elapsed = {state['elapsed']!r})")
