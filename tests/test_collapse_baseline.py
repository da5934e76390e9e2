"""The collapse verdict judges training, never the random network it starts from.

A randomly initialised ConvNet maps photos close together (mean cosine 0.952 on
CIFAR-10 at step 0), which the old absolute rule called "representational
collapse".  The sequences below are real probe numbers (step, mean cosine,
effective rank, projector rank) from 1.5-minute CPU runs of the presets with
``--set probe.every=25``: healthy SimCLR on shapes and on the CIFAR-10 test
photos, and BYOL without stop-gradient (the broken twin the collapse study
records as collapsing).  The backbone's width is 64 in all three.
"""

from __future__ import annotations

import numpy as np
import pytest

from ssl_studio.engine.diagnostics import Baseline, collapse_verdict

DIM = 64
SIMCLR_SHAPES = [(0, 0.937, 35.6, 23.4), (25, 0.780, 42.5, 42.7), (50, 0.781, 37.4, 44.7), (75, 0.778, 39.0, 54.3),
                 (100, 0.786, 39.1, 57.6), (102, 0.786, 39.0, 57.6)]
SIMCLR_CIFAR = [(0, 0.952, 34.4, 23.3), (25, 0.792, 46.8, 49.8), (50, 0.776, 46.2, 49.6), (75, 0.764, 45.7, 52.1),
                (100, 0.756, 47.2, 56.7)]
BYOL_NO_STOPGRAD = [(0, 0.937, 35.6, 38.2), (25, 0.627, 2.1, 1.3), (50, 0.541, 3.4, 1.3), (75, 0.864, 8.0, 1.4),
                    (100, 0.978, 3.9, 1.2), (125, 0.982, 3.6, 1.1), (150, 0.805, 5.1, 1.2), (175, 0.714, 3.7, 1.2)]


def verdicts(sequence):
    step0, cos0, rank0, proj0 = sequence[0]
    assert step0 == 0
    initial = Baseline(cos0, rank0, proj0)
    return [collapse_verdict(cos, rank, DIM, proj, initial=initial) for _step, cos, rank, proj in sequence[1:]]


@pytest.mark.parametrize("sequence", [SIMCLR_SHAPES, SIMCLR_CIFAR], ids=["simclr-shapes", "simclr-cifar10"])
def test_healthy_runs_raise_no_alarm(sequence):
    assert verdicts(sequence) == [None] * (len(sequence) - 1)


def test_the_old_rule_called_the_random_network_collapsed():
    _, cos, rank, proj = SIMCLR_CIFAR[0]
    assert collapse_verdict(cos, rank, DIM, proj) == "representational collapse"  # why step 0 is the baseline, never judged


def test_byol_without_stop_gradient_collapses_at_every_probe_after_the_start():
    assert verdicts(BYOL_NO_STOPGRAD) == ["representational collapse"] * (len(BYOL_NO_STOPGRAD) - 1)


def test_features_as_alike_as_the_random_networks_are_not_a_collapse():
    initial = Baseline(0.955, 30.0, 25.0)
    assert collapse_verdict(0.958, 30.0, DIM, 25.0, initial=initial) is None  # training has not moved them yet
    assert collapse_verdict(0.985, 30.0, DIM, 25.0, initial=initial) == "representational collapse"
    assert collapse_verdict(0.6, 3.0, DIM, 20.0, initial=Baseline(0.9, 30.0, 20.0)) == "dimensional collapse"
    assert collapse_verdict(0.6, 3.0, DIM, 20.0, initial=Baseline(0.9, 4.0, 20.0)) is None  # it started that narrow
    assert collapse_verdict(float("nan"), 3.0, DIM, initial=Baseline(0.9, 30.0)) is None


def test_the_spectrum_panel_shows_no_banner_at_step_0_and_one_on_byol_without_stop_gradient(qtbot):
    pytest.importorskip("pytestqt")
    from ssl_studio.engine.events import Probe
    from ssl_studio.gui.panels import SpectrumPanel

    def probe(step, cos, rank, proj):
        return Probe(step=step, effective_rank=rank, mean_cosine=cos, dim_std=0.01, knn_acc=None, feature_dim=DIM,
                     projector_rank=proj, spectrum=np.linspace(1, 0, DIM).astype(np.float32))

    panel = SpectrumPanel()
    qtbot.addWidget(panel)
    for p in SIMCLR_CIFAR:
        panel.handle_events([probe(*p)])
        assert panel.verdict is None and panel.banner.isHidden(), p
    panel.clear()
    panel.handle_events([probe(*BYOL_NO_STOPGRAD[0])])
    assert panel.verdict is None
    panel.handle_events([probe(*BYOL_NO_STOPGRAD[1])])
    assert panel.verdict == "representational collapse" and not panel.banner.isHidden()
    assert "at step 25" in panel.banner.text()
