"""Test set-up shared by every test: Qt offscreen, few threads (the suite runs on 2 CPU cores)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

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
