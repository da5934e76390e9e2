"""A growable 1-D array: the curves of a run, appended step by step, read by the run model and the panels."""

from __future__ import annotations

import numpy as np


class GrowArray:
    """A 1-D float64 array that appends in amortised O(1) by doubling its buffer.

    ``view`` is a slice of the live buffer: cheap to hand to ``setData``, and still
    valid after a later doubling (the old buffer lives on in the view).
    """

    __slots__ = ("_buf", "n")

    def __init__(self, capacity: int = 1024, dtype=np.float64):
        self._buf = np.empty(max(capacity, 16), dtype=dtype)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=self._buf.dtype).ravel()
        m = len(values)
        if self.n + m > len(self._buf):
            cap = len(self._buf)
            while cap < self.n + m:
                cap *= 2
            buf = np.empty(cap, dtype=self._buf.dtype)
            buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n : self.n + m] = values
        self.n += m

    def append(self, value: float) -> None:
        self.extend((value,))

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def clear(self) -> None:
        self.n = 0
