"""Test set-up shared by every test: Qt offscreen, few threads (the suite runs on 2 CPU cores)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402

torch.set_num_threads(2)
