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
