"""SSL Studio: a desktop lab for visual self-supervised learning.

The engine (data, models, objectives, engine) never imports Qt; ``ssl_studio.gui``
is one consumer of its events and ``ssl_studio.cli`` is another.
"""

__version__ = "0.1.0"
