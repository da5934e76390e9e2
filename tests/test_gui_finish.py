"""Issue 25's finishing touches: the budget box, data details per source, quit confirmation, loading an opened
run's settings, and the before-Start warning for budgets too short for the objective."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from ssl_studio.config import load_config  # noqa: E402
from ssl_studio.gui.experiment_panel import ExperimentPanel  # noqa: E402
from ssl_studio.presets import list_presets  # noqa: E402


@pytest.fixture
def panel(qtbot):
    p = ExperimentPanel()
    qtbot.addWidget(p)
    p.show()
    yield p
    p.shutdown()


def test_budget_after_a_preset_is_a_plain_number_beside_its_unit(panel):
    info = next(i for i in list_presets() if load_config(i.path).budget.minutes is not None)
    panel.load_config(load_config(info.path))
    kind = panel.budget_kind.currentText()
    assert kind == "minutes"
    text = panel.budget_value.text().strip()
    float(text)  # a plain number: the unit lives in the box beside it, not in the number
    assert "min" not in text
    panel.budget_kind.setCurrentIndex(panel.budget_kind.findData("steps"))
    float(panel.budget_value.text().strip())


@pytest.mark.parametrize("source, shown, hidden", [
    ("shapes", ["num_images", "held_out", "backgrounds", "fixed_background"], ["limit"]),
    ("digits", [], ["num_images", "held_out", "backgrounds", "fixed_background", "limit"]),
    ("folder:{tmp}", ["limit"], ["num_images", "held_out", "backgrounds", "fixed_background"]),
    ("cifar:{tmp}", ["limit"], ["num_images", "held_out", "backgrounds", "fixed_background"]),
])
def test_data_details_show_only_the_fields_the_source_reads(panel, tmp_path, source, shown, hidden):
    panel.set_data_source(source.format(tmp=tmp_path))
    for name in ["resolution", "val_fraction", *shown]:
        assert panel.data_form.layout_.isRowVisible(panel.data_form.widget_for(name)), name
    for name in hidden:
        assert not panel.data_form.layout_.isRowVisible(panel.data_form.widget_for(name)), name
    assert panel.valid, panel.error
