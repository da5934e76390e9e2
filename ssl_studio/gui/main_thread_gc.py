"""Python's cyclic garbage collection runs in the GUI thread only, while a background thread works.

A collection starts in whichever thread happens to allocate.  When the training thread
starts one, it can free Qt objects left in reference cycles (a closed window's menus and
actions), and PySide then destroys them from that thread: the worker takes Qt's object
lock and waits for the GIL, while the GUI thread, holding the GIL, waits for the same lock
to delete a widget of its own.  Both wait for ever and the window freezes.  The test suite
met exactly this (a QMenu's QAction destroyed from the training thread during a probe).

So while any background session holds this guard, automatic collection is off and a timer
in the GUI thread collects instead, generation by generation, at the thresholds Python
itself would use; the last release turns automatic collection back on.  pyqtgraph's
``GarbageCollector`` does the same for a whole application, and never gives it back.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QTimer

CHECK_MS = 500


class MainThreadCollection:
    """Reference-counted: ``hold()`` when a background thread starts, ``release()`` when it ends.

    Both are called from the GUI thread (the timer lives there, and so do the collections).
    """

    def __init__(self) -> None:
        self.holders = 0
        self._timer: QTimer | None = None
        self._was_enabled = True

    @property
    def active(self) -> bool:
        return self.holders > 0

    def hold(self) -> None:
        if self.holders == 0:
            self._was_enabled = gc.isenabled()
            gc.collect()  # what is garbage already goes now, here, before the thread exists
            gc.disable()
            self._timer = QTimer()
            self._timer.setInterval(CHECK_MS)
            self._timer.timeout.connect(self.collect_due)
            self._timer.start()
        self.holders += 1

    def release(self) -> None:
        if self.holders == 0:
            return
        self.holders -= 1
        if self.holders == 0:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            if self._was_enabled:
                gc.enable()

    def collect_due(self) -> int:
        """Collect the generations whose allocation counts passed Python's thresholds; returns the objects found."""
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if t0 == 0 or c0 <= t0:
            return 0
        generation = 2 if (c1 > t1 and c2 > t2) else 1 if c1 > t1 else 0
        return gc.collect(generation)


main_thread_collection = MainThreadCollection()
