"""The live panels (loss, embedding, spectrum) and the runs browser.

The main window codes against ``base.Panel`` (``clear``, ``handle_events``,
``set_imageset``, ``export_png/svg/csv``) and ``RunsBrowser`` (``openRun``,
``rerunRequested``, ``refresh``) only, so panels can be added without touching it.
"""

from ssl_studio.gui.panels.base import Panel
from ssl_studio.gui.panels.embedding_panel import EmbeddingPanel
from ssl_studio.gui.panels.loss_panel import LossPanel
from ssl_studio.gui.panels.runs_browser import RunsBrowser
from ssl_studio.gui.panels.spectrum_panel import SpectrumPanel

__all__ = ["EmbeddingPanel", "LossPanel", "Panel", "RunsBrowser", "SpectrumPanel"]
