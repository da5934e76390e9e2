"""The small events a run emits; the run folder and the GUI are two consumers of the same stream.

Events are plain dataclasses so that they cross threads (GUI), processes
(``torchrun`` rank 0) and files (``metrics.jsonl``) the same way.  Arrays ride
along as numpy; ``to_record`` gives the JSON-safe scalars a metrics line holds.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


TEXT_BACKBONE = "text-transformer"  # Started.backbone of a text run


@dataclass
class Event:
    def to_record(self) -> dict[str, Any]:
        """Scalars, strings and short lists only: what one line of metrics.jsonl holds."""
        out: dict[str, Any] = {"event": type(self).__name__.lower(), "time": time.time()}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) or f.metadata.get("snapshot"):
                continue
            if isinstance(value, (np.floating, np.integer)):
                value = value.item()
            out[f.name] = value
        return out


def snapshot(default: Any = None, default_factory: Any = None) -> Any:
    """A field too large for metrics.jsonl: it goes into a snapshot .npz instead."""
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"snapshot": True})
    return field(default=default, metadata={"snapshot": True})


@dataclass
class Started(Event):
    run_dir: str
    objective: str
    data: str
    backbone: str
    device: str
    precision: str
    channels_last: bool
    num_train: int
    num_probe: int
    feature_dim: int
    parameters: int
    flops_per_image: int
    total_steps: int | None
    steps_per_epoch: int
    batch_size: int
    class_names: list[str] | None = None
    resumed_from_step: int = 0
    skipped_files: int = 0
    data_notes: list[str] = field(default_factory=list)  # what the data layer set aside or refused to follow, in sentences
    world_size: int = 1  # processes training together (torchrun); batch_size is their global batch
    backend: str | None = None  # torch.distributed backend (gloo, nccl), None for one process
    devices: list[str] | None = None  # "host:device" of every rank, in rank order
    resumed_from_time: float | None = None  # when the checkpoint resumed from was written (epoch seconds)

    @property
    def samples(self) -> str:
        """What a training sample is called in sentences: a token window for the text lab, an image otherwise."""
        return "token windows" if self.backbone == TEXT_BACKBONE else "images"

    @property
    def rate_unit(self) -> str:
        """The unit of ``Step.images_per_s`` in sentences and status bars."""
        return "windows/s" if self.backbone == TEXT_BACKBONE else "img/s"


@dataclass
class Step(Event):  # images_per_s: the global batch over the step's time, for the whole job
    step: int
    epoch: float
    loss: float
    lr: float
    images_per_s: float
    elapsed_s: float
    progress: float
    eta_s: float | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Probe(Event):
    step: int
    effective_rank: float
    mean_cosine: float
    dim_std: float
    knn_acc: float | None
    feature_dim: int
    projector_rank: float | None = None
    linear_acc: float | None = None
    final: bool = False
    attention_iou: float | None = None  # ViT backbones on data with object masks: 60 %-mass [CLS] attention vs objects
    attention_auc: float | None = None  # the same attention ranking object patches above background ones (attention.object_background_auc)
    spectrum: np.ndarray = snapshot()  # eigenvalues of the feature covariance, descending
    points2d: np.ndarray = snapshot()  # PCA of the probe features, N×2
    labels: np.ndarray | None = snapshot()  # N, or None
    indices: np.ndarray = snapshot()  # probe images' positions in the ImageSet
    features: np.ndarray | None = snapshot()  # N×D probe features (for t-SNE, neighbours)


@dataclass
class Visuals(Event):
    step: int
    kind: str
    arrays: dict[str, np.ndarray] = snapshot(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluated(Event):
    step: int
    results: dict[str, Any]


@dataclass
class Finished(Event):
    step: int
    status: str  # "completed" or "stopped"
    run_dir: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Failed(Event):
    step: int
    status: str  # "diverged at step N", "failed"
    message: str  # one sentence: what happened and what to change
    run_dir: str | None = None
    field: str | None = None  # the setting a configuration or data mistake names (ConfigError.field), for the form to mark


Callback = Callable[[Event], None]
EVENT_TYPES = {cls.__name__.lower(): cls for cls in (Started, Step, Probe, Visuals, Evaluated, Finished, Failed)}
