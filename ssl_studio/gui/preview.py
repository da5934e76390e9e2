"""The preview strip: a few sample images of the chosen data and two augmented views of each.

Seeing what the augmentations do to *these* images is the fastest way to judge
a crop scale or a jitter strength, so the strip follows every change of data
source or augmentation.  Loading and augmenting happen on a pool thread with the
same ``load_imageset`` and ``ViewMaker`` the trainer uses (so what is shown is
what is trained on); requests are debounced, and a result that arrives after a
newer request is dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ssl_studio.config import AugmentConfig, DataConfig
from ssl_studio.gui.jobs import private_pool, start_job

PREVIEW_IMAGES = 6
PREVIEW_LOAD = 48  # images loaded for a preview: enough to pick varied samples, cheap to make
DEBOUNCE_MS = 350
THUMB_PX = 44


def _to_uint8_hwc(x) -> np.ndarray:
    """A B×3×H×W float tensor in [0, 1] as B×H×W×3 uint8 for QImage."""
    arr = (x.clamp(0, 1) * 255.0 + 0.5).to("cpu").byte().permute(0, 2, 3, 1).contiguous().numpy()
    return arr


def small_data_config(cfg: DataConfig) -> DataConfig:
    """The same source with only a handful of images, so a preview never waits for a full load."""
    if cfg.source == "shapes":
        return dataclasses.replace(cfg, num_images=max(16, min(cfg.num_images, PREVIEW_LOAD)))
    if cfg.source.startswith(("folder:", "cifar:")):
        return dataclasses.replace(cfg, limit=PREVIEW_LOAD if cfg.limit == 0 else min(cfg.limit, PREVIEW_LOAD))
    return cfg


def make_preview(data_cfg: DataConfig, augment: AugmentConfig, seed: int, plain: bool = False,
                 imageset: Any = None) -> dict[str, Any]:
    """Sample images and two views each, as uint8 arrays; runs on a pool thread (no Qt here)."""
    import torch

    from ssl_studio.data import load_imageset
    from ssl_studio.data.views import ViewMaker

    if imageset is None:
        imageset = load_imageset(small_data_config(data_cfg), seed=seed, progress=None)
    if imageset.modality == "text":  # no pictures: the strip says what was loaded, with the start of one window
        sample = imageset.tokenizer.decode(imageset.images[0].tolist())[:90]
        note = (f"{imageset.name}: text, no picture preview. {imageset.describe()} A window: \u201c{sample}\u2026\u201d")
        return {"originals": [], "views": [[], []], "labels": None, "imageset": imageset, "name": imageset.name, "note": note}
    n = len(imageset)
    if n == 0:
        raise ValueError("the data source has no images")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=g)[: min(PREVIEW_IMAGES, n)]
    images = imageset.images[pick]
    maker = ViewMaker(augment, imageset.resolution, imageset.mean, imageset.std)
    if plain:
        views = [maker.plain(images), maker.plain(images)]
    else:
        views = maker(images, 2, 0, torch.Generator().manual_seed(seed + 2))
    originals = _to_uint8_hwc(images.float() / 255.0 if images.shape[1] == 3 else images.float().expand(-1, 3, -1, -1) / 255.0)
    out_views = [_to_uint8_hwc(maker.denormalize(v)) for v in views]
    labels = None
    if imageset.labels is not None and imageset.class_names:
        labels = [imageset.class_names[int(i)] for i in imageset.labels[pick]]
    return {"originals": originals, "views": out_views, "labels": labels, "imageset": imageset, "name": imageset.name}


def preview_or_sentence(data_cfg: DataConfig, augment: AugmentConfig, seed: int, plain: bool, imageset: Any):
    """``make_preview``'s result, or one sentence (a str) saying why there is none: shown under the strip."""
    from ssl_studio.params import ConfigError

    try:
        return make_preview(data_cfg, augment, seed, plain, imageset)
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - shown as a sentence under the strip
        return f"Could not make a preview of this data ({type(exc).__name__}: {exc})."


def pixmap_from_array(arr: np.ndarray, size: int = THUMB_PX) -> QPixmap:
    h, w = arr.shape[:2]
    arr = np.ascontiguousarray(arr)
    image = QImage(arr.data, w, h, 3 * w, QImage.Format_RGB888).copy()  # copy: the array may go away
    mode = Qt.FastTransformation if max(h, w) < size else Qt.SmoothTransformation
    return QPixmap.fromImage(image).scaled(size, size, Qt.KeepAspectRatio, mode)


class PreviewStrip(QWidget):
    """Originals on the first row, view 1 and view 2 below, recomputed after each change."""

    loaded = Signal(str)  # data name
    failed = Signal(str)  # one sentence

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("previewStrip")
        self.setAccessibleName("Preview of sample images and their augmented views")
        self.pool = private_pool(self)
        self._job_id = 0
        self._pending: tuple | None = None
        self._jobs: dict[int, str] = {}  # job id -> its data's cache key, until its result is in
        self._cache_key: str | None = None
        self._cache: Any = None
        self.last_result: dict[str, Any] | None = None

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._launch)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        self.pictures = QWidget()  # the thumbnails; hidden for text, which has none
        self.pictures.setObjectName("previewPictures")
        grid = QGridLayout(self.pictures)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(3)
        self.cells: list[list[QLabel]] = []
        for row, name in enumerate(("image", "view 1", "view 2")):
            tag = QLabel(name)
            tag.setObjectName(f"previewRowLabel_{row}")
            tag.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            grid.addWidget(tag, row, 0)
            cells = []
            for col in range(PREVIEW_IMAGES):
                cell = QLabel()
                cell.setObjectName(f"previewCell_{row}_{col}")
                cell.setAccessibleName(f"{name} {col + 1}")
                cell.setFixedSize(THUMB_PX, THUMB_PX)
                cell.setAlignment(Qt.AlignCenter)
                cell.setStyleSheet("background: rgba(127,127,127,0.12); border-radius: 3px;")
                grid.addWidget(cell, row, col + 1)
                cells.append(cell)
            self.cells.append(cells)
        grid.setColumnStretch(PREVIEW_IMAGES + 1, 1)
        outer.addWidget(self.pictures)
        self.status = QLabel("")
        self.status.setObjectName("previewStatus")
        self.status.setAccessibleName("Preview status")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        outer.addWidget(self.status)

    # -- requests ----------------------------------------------------------------------
    def request(self, data_cfg: DataConfig, augment: AugmentConfig, seed: int, plain: bool = False) -> None:
        """Ask for a new preview; only the last request within the debounce interval is computed."""
        self._pending = (data_cfg, augment, seed, plain)
        self.status.setText("Making a preview...")
        self._timer.start()

    def _launch(self) -> None:
        if self._pending is None:
            return
        data_cfg, augment, seed, plain = self._pending
        self._pending = None
        self._job_id += 1
        key = repr((small_data_config(data_cfg), seed))
        imageset = self._cache if key == self._cache_key else None
        job_id = self._job_id
        self._jobs[job_id] = key
        start_job(preview_or_sentence, data_cfg, augment, seed, plain, imageset, pool=self.pool,
                  on_returned=lambda result: (self._on_failed(job_id, result) if isinstance(result, str)
                                              else self._on_done(job_id, result)))

    @property
    def busy(self) -> bool:
        return self._timer.isActive() or bool(self._jobs)

    def _on_done(self, job_id: int, result: dict) -> None:
        key = self._jobs.pop(job_id, None)
        if job_id != self._job_id:
            return
        if key is not None:
            self._cache_key, self._cache = key, result["imageset"]
        self.last_result = result
        rows = [result["originals"], *result["views"]]
        self.pictures.setVisible(len(rows[0]) > 0)
        for r, arrays in enumerate(rows):
            for c, cell in enumerate(self.cells[r]):
                if c < len(arrays):
                    cell.setPixmap(pixmap_from_array(arrays[c]))
                    if result.get("labels"):
                        cell.setToolTip(result["labels"][c])
                else:
                    cell.clear()
        n = len(result["imageset"]) if result.get("imageset") is not None else 0
        self.status.setText(result.get("note") or f"{result['name']}: {len(rows[0])} samples of a {n}-image preview load, two augmented views each.")
        self.loaded.emit(result["name"])

    def _on_failed(self, job_id: int, message: str) -> None:
        self._jobs.pop(job_id, None)
        if job_id != self._job_id:
            return
        for row in self.cells:
            for cell in row:
                cell.clear()
        self.status.setText(message)
        self.failed.emit(message)

    def shutdown(self, timeout_ms: int = 3000) -> None:
        """Drop queued jobs and wait for a running one, so nothing outlives the window."""
        self._timer.stop()
        self._pending = None
        self.pool.clear()
        self.pool.waitForDone(timeout_ms)
