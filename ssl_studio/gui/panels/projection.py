"""t-SNE and UMAP of the probe features, computed off the GUI thread.

Both take seconds (t-SNE on a thousand points and two cores: several), so they
run as a background job (``gui.jobs``) in a private one-thread pool: the window stays responsive,
jobs never pile up behind each other on the global pool the other panels may
use, and a result that arrives after the run was cleared is dropped by its
generation number rather than cancelled (scikit-learn cannot be interrupted).
``project`` itself has no Qt in it, so it is tested and reused headless.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from PySide6.QtCore import QObject, Signal

from ssl_studio.gui.jobs import private_pool, start_job

UMAP_HINT = "UMAP needs the umap-learn package: pip install ssl-studio[umap]"
METHODS = ("pca", "tsne", "umap")
METHOD_TITLES = {"pca": "PCA (live)", "tsne": "t-SNE", "umap": "UMAP"}


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def project(method: str, features: np.ndarray, seed: int = 0) -> np.ndarray:
    """N×D features to N×2 float32 with t-SNE or UMAP, seeded so a redo draws the same map."""
    x = np.asarray(features, dtype=np.float32)
    x = np.nan_to_num(x - x.mean(0, keepdims=True))
    n = len(x)
    if n < 3:
        return np.zeros((n, 2), np.float32)
    if x.shape[1] > 50:  # the usual PCA-to-50 first: same neighbourhoods, a fraction of the cost
        from sklearn.decomposition import PCA

        x = PCA(n_components=min(50, n), random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        out = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                   random_state=seed, n_jobs=1).fit_transform(x)
    elif method == "umap":
        if not umap_available():
            raise RuntimeError(UMAP_HINT)
        import umap

        out = umap.UMAP(n_components=2, n_neighbors=int(min(15, n - 1)), random_state=seed).fit_transform(x)
    else:
        raise ValueError(f"unknown projection {method!r}; expected tsne or umap")
    return np.asarray(out, dtype=np.float32)


class ProjectionRunner(QObject):
    """Starts one projection at a time and reports it back on the GUI thread."""

    finished = Signal(str, object, int)  # method, N×2 points, step of the probe it was computed from
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = private_pool(self)
        self.generation = 0
        self._jobs: dict[int, tuple[str, int]] = {}  # generation -> (method, probe step), until its result is in

    @property
    def busy(self) -> bool:
        return any(g == self.generation for g in self._jobs)

    def start(self, method: str, features: np.ndarray, step: int, seed: int = 0) -> int:
        self.generation += 1
        generation = self.generation
        self._jobs[generation] = (method, step)
        start_job(project, method, np.array(features, dtype=np.float32, copy=True), seed, pool=self.pool,
                  on_returned=lambda points: self._done(generation, points),
                  on_errored=lambda exc: self._failed(generation, f"{METHOD_TITLES.get(method, method)} failed: {exc}"))
        return generation

    def cancel(self) -> None:
        """Forget running jobs: their results will be dropped when they arrive."""
        self.generation += 1

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)

    def _done(self, generation: int, points) -> None:
        job = self._jobs.pop(generation, None)
        if job is not None and generation == self.generation:
            self.finished.emit(job[0], points, job[1])

    def _failed(self, generation: int, message: str) -> None:
        job = self._jobs.pop(generation, None)
        if job is not None and generation == self.generation:
            self.failed.emit(message)
