"""The order in which a run visits its training images: one seeded permutation per epoch, resumable exactly.

Under torchrun every rank holds the same sampler (the global batch's order) and takes its own slice of each
batch (``distributed.shard``), so a checkpoint's sampler state resumes on any number of processes.
"""

from __future__ import annotations

from typing import Any

import torch


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
        """Go on from ``state``; ValueError when its order is not a shuffle of this sampler's images (and the
        generator's own error when its state has another size), so a damaged state is never trained on."""
        order, position = state["order"], state["position"]
        if len(order) != len(self.train_index) or not torch.equal(order.sort().values, self.train_index.sort().values):
            raise ValueError("the saved order is not a shuffle of the training images")
        if not 0 <= position <= len(order):
            raise ValueError(f"the saved position {position} is outside the order")
        self.generator.set_state(state["generator"])
        self.epoch, self.position, self.order = state["epoch"], position, order
