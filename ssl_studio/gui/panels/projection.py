"""t-SNE and UMAP of the probe features, computed off the GUI thread.

Both take seconds (t-SNE on a thousand points and two cores: several), so they
run as a QRunnable in a private one-thread pool: the window stays responsive,
jobs never pile up behind each other on the global pool the other panels may
use, and a result that arrives after the run was cleared is dropped by its
generation number rather than cancelled (scikit-learn cannot be interrupted).
``project`` itself has no Qt in it, so it is tested and reused headless.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ssl_studio.gui.main_thread_gc import main_thread_collection

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


class _JobSignals(QObject):
    done = Signal(int, object)
    failed = Signal(int, str)


class _ProjectionJob(QRunnable):
    def __init__(self, generation: int, method: str, features: np.ndarray, seed: int):
        super().__init__()
        self.generation, self.method, self.features, self.seed = generation, method, features, seed
        self.signals = _JobSignals()  # created on the GUI thread: its signals reach GUI slots queued

    def run(self) -> None:
        try:
            points = project(self.method, self.features, self.seed)
        except Exception as exc:  # noqa: BLE001 - shown to the person as one sentence
            self.signals.failed.emit(self.generation, f"{METHOD_TITLES.get(self.method, self.method)} failed: {exc}")
            return
        self.signals.done.emit(self.generation, points)


class ProjectionRunner(QObject):
    """Starts one projection at a time and reports it back on the GUI thread."""

    finished = Signal(str, object, int)  # method, N×2 points, step of the probe it was computed from
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.generation = 0
        self._jobs: dict[int, tuple[_ProjectionJob, str, int]] = {}

    @property
    def busy(self) -> bool:
        return any(g == self.generation for g in self._jobs)

    def start(self, method: str, features: np.ndarray, step: int, seed: int = 0) -> int:
        self.generation += 1
        job = _ProjectionJob(self.generation, method, np.array(features, dtype=np.float32, copy=True), seed)
        job.setAutoDelete(False)  # Python owns it (kept in _jobs until its result is in)
        job.signals.done.connect(self._done)
        job.signals.failed.connect(self._failed)
        self._jobs[self.generation] = (job, method, step)
        main_thread_collection.hold()  # released when the job's result or failure arrives
        self.pool.start(job)
        return self.generation

    def cancel(self) -> None:
        """Forget running jobs: their results will be dropped when they arrive."""
        self.generation += 1

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)

    def _done(self, generation: int, points) -> None:
        job = self._jobs.pop(generation, None)
        if job is not None:
            main_thread_collection.release()
        if job is not None and generation == self.generation:
            self.finished.emit(job[1], points, job[2])

    def _failed(self, generation: int, message: str) -> None:
        job = self._jobs.pop(generation, None)
        if job is not None:
            main_thread_collection.release()
        if job is not None and generation == self.generation:
            self.failed.emit(message)
