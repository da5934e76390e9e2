"""A training step's loss and metrics, read on the host without stalling the device.

Reading a CUDA tensor's value (``float(t)``, ``t.item()``) waits for every kernel queued before it, so a
trainer that reads its loss and metrics each step lets the GPU run dry once per step.  Here a step's values
are stacked into one tensor, averaged over the ranks on the device, and copied to pinned host memory with
a non-blocking copy and a CUDA event; the trainer reads them one step later (``StepValues.read``), when the
next step is already queued, or at once where it must (before a checkpoint, a probe, the end).  On the CPU
the values are ready at once and nothing is deferred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ssl_studio.engine import distributed


@dataclass
class StepValues:
    """The values of step ``step`` (loss first, then the metrics in ``names`` order), averaged over ranks."""

    step: int
    lr: float
    seconds: float  # host time the step took to queue (its share of the wall clock)
    names: list[str]
    values: torch.Tensor  # float64 on the host (pinned, possibly still being copied)
    ready: torch.cuda.Event | None = None
    info: dict = field(default_factory=dict)

    @classmethod
    def of(cls, step: int, lr: float, loss: torch.Tensor, metrics: dict, seconds: float = 0.0) -> StepValues:
        device = loss.device
        parts = [loss.detach().reshape(()).double()]
        for v in metrics.values():
            parts.append(v.detach().reshape(()).double().to(device) if isinstance(v, torch.Tensor)
                         else torch.tensor(float(v), dtype=torch.float64, device=device))
        stacked = distributed.mean_over_ranks(torch.stack(parts))  # one all-reduce for the loss and every metric
        if device.type == "cuda":
            host = stacked.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            return cls(step, lr, seconds, list(metrics), host, ready)
        return cls(step, lr, seconds, list(metrics), stacked.cpu())

    def read(self) -> tuple[float, dict[str, float]]:
        """(loss, metrics) as Python floats, waiting for the device if the copy has not landed yet."""
        if self.ready is not None:
            self.ready.synchronize()
            self.ready = None
        numbers = self.values.tolist()
        return numbers[0], dict(zip(self.names, numbers[1:]))

    @property
    def finite_loss(self) -> bool:
        return math.isfinite(self.read()[0])
