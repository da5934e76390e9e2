"""The live panels (loss, embedding, spectrum, step metrics), the objectives' picture panels and the runs browser.

The main window codes against ``base.Panel`` (``clear``, ``handle_events``,
``set_imageset``, ``export_png/svg/csv``) and ``RunsBrowser`` (``openRun``,
``rerunRequested``, ``refresh``) only, and docks what ``registry`` lists, so a panel
is added without touching the window: a line in ``registry.LIVE_PANELS``, or a
``visual_kind`` on a panel of an objective's pictures.
"""

from ssl_studio.gui.panels.base import Panel
from ssl_studio.gui.panels.embedding_panel import EmbeddingPanel
from ssl_studio.gui.panels.loss_panel import LossPanel
from ssl_studio.gui.panels.runs_browser import RunsBrowser
from ssl_studio.gui.panels.spectrum_panel import SpectrumPanel
from ssl_studio.gui.panels.step_metrics import StepMetricsPanel

__all__ = ["EmbeddingPanel", "LossPanel", "Panel", "RunsBrowser", "SpectrumPanel", "StepMetricsPanel"]
