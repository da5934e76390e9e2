"""Which panels the window docks, and where: the one list a new panel is added to.

Live panels (fed by every run's events) are listed in ``LIVE_PANELS`` with their place in the
default layout; panels of an objective's pictures declare the ``visual_kind`` they draw and are
found by ``visual_panel_classes`` when such pictures first arrive.  The window reads both and
never names a panel class itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from ssl_studio.gui.panels.embedding_panel import EmbeddingPanel
from ssl_studio.gui.panels.loss_panel import LossPanel
from ssl_studio.gui.panels.spectrum_panel import SpectrumPanel
from ssl_studio.gui.panels.step_metrics import StepMetricsPanel


@dataclass(frozen=True)
class LivePanel:
    """A live panel: ``key`` names the window's ``<key>_panel``/``<key>_dock`` and the dock ``<key>Dock``;
    ``place`` is "right", or "beside:KEY" / "below:KEY" (split from that panel's dock) or "tab:KEY"."""

    cls: type
    key: str
    place: str


LIVE_PANELS: tuple[LivePanel, ...] = (
    LivePanel(LossPanel, "loss", "right"),
    LivePanel(EmbeddingPanel, "embedding", "beside:loss"),
    LivePanel(SpectrumPanel, "spectrum", "below:loss"),
    LivePanel(StepMetricsPanel, "step_metrics", "tab:spectrum"),
)


def visual_panel_classes() -> dict[str, type]:
    """Every panel class in ``ssl_studio.gui.panels`` that declares the ``visual_kind`` it draws."""
    import ssl_studio.gui.panels as package

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            kind = getattr(value, "visual_kind", None)
            if isinstance(value, type) and isinstance(kind, str) and value.__module__ == module.__name__:
                found[kind] = value
    return found
