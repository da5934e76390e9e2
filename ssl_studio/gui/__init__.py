"""The lab window (PySide6 + pyqtgraph): the only package that imports Qt.

It reads engine events and run folders and never trains by itself; training runs
in a worker thread through the same ``Trainer`` the command line uses.

PySide6 6.12.0 is excluded in pyproject.toml: on Python 3.11 it drops one
reference to ``True`` on every ``Signal.emit()`` (and to ``None`` on many
returns), and the interpreter aborts with "bool_dealloc" after a few minutes of
live plotting.  6.11.3 has no such leak (measured with 1,000 emits).
"""
