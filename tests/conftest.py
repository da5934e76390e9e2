"""Test set-up shared by every test: Qt offscreen, few threads (the suite runs on 2 CPU cores)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster when the 2 cores are shared.

    Modules of tiny-model tests opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def no_quit_question(monkeypatch):
    """Windows closed mid-run close at once in tests (a modal question would wait forever offscreen).

    Only where the window's module is already imported: tests without Qt stay without it.
    The test of the question itself sets ``confirm_quit`` back to True on its window.
    """
    module = sys.modules.get("ssl_studio.gui.main_window")
    if module is not None:
        monkeypatch.setattr(module.MainWindow, "confirm_quit", False)


@pytest.fixture
def panel(qtbot):
    """The Experiment panel alone, shown; its background jobs are shut down after the test."""
    from ssl_studio.gui.experiment_panel import ExperimentPanel

    p = ExperimentPanel()
    qtbot.addWidget(p)
    p.show()
    yield p
    p.shutdown()


@pytest.fixture
def window(qtbot, tmp_path):
    """The lab window over an empty runs folder, with settings of its own (nothing read from or left in $HOME)."""
    from PySide6.QtCore import QSettings

    from ssl_studio.gui.main_window import MainWindow

    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path / "settings"))
    w = MainWindow(runs_dir=tmp_path / "runs", settings=QSettings(str(tmp_path / "ssl-studio.ini"), QSettings.IniFormat))
    w.confirm_quit = False  # closed mid-run at the end of a test: no modal question (a test of it sets this back)
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.session is not None and not w.session.done:
        w.session.shutdown(30_000)
