"""Reading pickled data files without letting them run code.

A pickle can name any importable callable (``os.system`` included) and the
standard unpickler calls it.  CIFAR's python version is a set of pickles, and
users fetch such files from anywhere, so they are read with an unpickler that
resolves only what a dict of numpy arrays needs; any other global is refused
with a DataError naming the file, before anything is called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ssl_studio.data.imageset import DataError


def _numpy_global(module: str, name: str) -> Any:
    """numpy's reconstruction helpers, taken from wherever this numpy keeps them.

    Files written under numpy 1 name ``numpy.core.*``, under numpy 2
    ``numpy._core.*``; both resolve to the same functions here without
    importing the deprecated alias.
    """
    core = getattr(np, "_core", None) or np.core  # type: ignore[attr-defined]
    table = {
        "multiarray._reconstruct": core.multiarray._reconstruct,
        "multiarray.scalar": core.multiarray.scalar,
        "numeric._frombuffer": core.numeric._frombuffer,
    }
    return table[f"{module.rsplit('.', 1)[-1]}.{name}"]


# (module, name) -> how to get it. Nothing here can execute code or touch files:
# array and dtype constructors, scalar construction, in-band buffer views, and
# codecs.encode (Python 3 writes bytes at pickle protocol 2 as
# _codecs.encode(text, "latin1")).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}
for _core in ("numpy.core", "numpy._core"):
    for _mod, _name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        _ALLOWED[(f"{_core}.{_mod}", _name)] = (lambda m=f"{_core}.{_mod}", n=_name: _numpy_global(m, n))


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays and plain Python values only."""

    def __init__(self, file: io.BufferedIOBase, source: str, **kwargs: Any):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        getter = _ALLOWED.get((module, name))
        if getter is None:
            raise DataError(
                "data.source",
                f"file {self.source} asks to run {module}.{name} while loading, which a data file never needs, "
                "so it was refused; use the official data files instead.",
            )
        return getter()

    def persistent_load(self, pid: Any) -> Any:
        raise DataError("data.source", f"file {self.source} refers to external objects, which a data file never needs, so it was refused.")


def safe_load(path: str | Path, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` with SafeUnpickler; a damaged file is a DataError too.

    ``encoding="bytes"`` is what CIFAR's Python 2 pickles need: their str
    objects arrive as bytes (so dict keys are b"data", b"labels").
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh, str(path), encoding=encoding).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError("data.source", f"file {path} cannot be read ({exc.strerror or exc}); check that it exists and is readable.") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError("data.source", f"file {path} is not a readable pickle ({type(exc).__name__}: {exc}); it may be damaged, so fetch it again.") from None


def safe_loads(data: bytes, source: str = "<bytes>", encoding: str = "bytes") -> Any:
    """Unpickle bytes with SafeUnpickler (for tests and in-memory data)."""
    try:
        return SafeUnpickler(io.BytesIO(data), source, encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError("data.source", f"{source} is not a readable pickle ({type(exc).__name__}: {exc}).") from None


__all__ = ["SafeUnpickler", "safe_load", "safe_loads"]
