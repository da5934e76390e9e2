"""The generic step-metrics panel: built from an objective's ``metric_specs``, fed by Step events, offscreen."""

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from ssl_studio.engine.events import Started, Step
from ssl_studio.engine.runs import replay_events
from ssl_studio.gui.panels.step_metrics import StepMetricsPanel, objective_metric_specs
from ssl_studio.objectives.base import MetricSpec
from ssl_studio.objectives.simclr import SimCLR


class TermsObjective(SimCLR):
    """A test objective that declares three step metrics in two groups."""

    name = "terms-test"
    metric_specs = {"inv": MetricSpec("invariance"), "var": MetricSpec("variance"),
                    "entropy": MetricSpec("entropy", unit="nats", group="entropies")}


def _specs(name):
    return TermsObjective.metric_specs if name == TermsObjective.name else {}


def started(objective):
    return Started(run_dir="run", objective=objective, data="shapes", backbone="convnet", device="cpu", precision="float32",
                   channels_last=False, num_train=100, num_probe=60, feature_dim=16, parameters=1000, flops_per_image=1,
                   total_steps=10, steps_per_epoch=10, batch_size=32)


def step(n, **metrics):
    return Step(step=n, epoch=n / 10, loss=1.0, lr=0.1, images_per_s=10.0, elapsed_s=float(n), progress=n / 10, eta_s=None,
                metrics=metrics)


def make(qtbot):
    panel = StepMetricsPanel(specs_for=_specs)
    qtbot.addWidget(panel)
    panel.show()
    return panel


def test_one_plot_per_group_and_a_curve_per_declared_metric(qtbot):
    panel = make(qtbot)
    panel.handle_events([started("terms-test"), step(1, inv=2.0, var=1.0, entropy=3.0, undeclared=9.0), step(2, inv=1.5)])
    assert list(panel.plots) == ["terms", "entropies"]
    assert sorted(panel.curves) == ["entropy", "inv", "var"]  # an undeclared key gets no curve
    x, y = panel.curves["inv"].getData()
    assert list(x) == [1, 2] and list(y) == [2.0, 1.5]
    assert list(panel.curves["var"].getData()[1]) == [1.0]
    assert not panel.message.isVisibleTo(panel) and panel.graphics.isVisibleTo(panel)
    assert panel.table()[1][:2] == [["inv", 1.0, 2.0], ["inv", 2.0, 1.5]]


def test_a_new_run_clears_the_curves(qtbot):
    panel = make(qtbot)
    panel.handle_events([started("terms-test"), step(1, inv=2.0)])
    panel.clear()
    assert panel.curves == {} and panel.message.isVisibleTo(panel)
    panel.handle_events([started("terms-test"), step(5, inv=0.5)])
    assert list(panel.curves["inv"].getData()[0]) == [5]


def test_an_objective_without_step_metrics_says_so_in_one_line(qtbot):
    panel = make(qtbot)
    panel.handle_events([started("simclr"), step(1, anything=1.0)])
    assert panel.plots == {} and not panel.graphics.isVisibleTo(panel)
    assert panel.message.isVisibleTo(panel) and "simclr reports no step metrics" in panel.message.text()
    assert "\n" not in panel.message.text()


def test_unknown_objective_names_have_no_specs():
    assert objective_metric_specs("no-such-objective") == {}


def test_a_past_run_folder_draws_the_same_curves(qtbot, tmp_path):
    records = [{"event": "started", **{k: v for k, v in vars(started("terms-test")).items()}},
               {"event": "step", **vars(step(1, inv=3.0, entropy=1.0))}, {"event": "step", **vars(step(2, inv=2.0))}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    events, _ = replay_events(tmp_path)
    panel = make(qtbot)
    panel.handle_events(events)
    assert list(panel.curves["inv"].getData()[1]) == [3.0, 2.0]
    assert list(panel.curves["entropy"].getData()[0]) == [1]


def test_the_window_docks_the_panel_from_the_registry(window):
    assert window.step_metrics_panel in window.panels
    assert window.docks["stepMetricsDock"].widget() is window.step_metrics_panel
