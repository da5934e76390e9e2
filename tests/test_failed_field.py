"""A run refused for a configuration or data mistake says which setting in ``Failed.field``, and the window
marks that setting from the field (no parsing of the message)."""

from __future__ import annotations

import pytest

from ssl_studio.config import config_from_mapping
from ssl_studio.engine.events import Failed
from ssl_studio.engine.runs import record_to_event
from ssl_studio.engine.trainer import Trainer


def test_a_refused_run_names_the_field_of_its_mistake(tmp_path):
    cfg = config_from_mapping({"objective": {"name": "simclr"}, "data": {"source": f"folder:{tmp_path / 'missing'}"},
                               "budget": {"steps": 1}, "out": str(tmp_path / "runs"), "device": "cpu"})
    events = []
    result = Trainer(cfg, callback=events.append).run()
    failed = [e for e in events if isinstance(e, Failed)]
    assert result.refused and len(failed) == 1
    assert failed[0].field == "data.source" and failed[0].message.startswith("data.source ")


def test_the_field_survives_the_run_folder_and_old_records_still_read():
    record = Failed(step=0, status="failed", message="data.source has no labels", field="data.source").to_record()
    assert record_to_event(record).field == "data.source"
    del record["field"]  # a failed record written before the field existed
    assert record_to_event(record).field is None


def test_the_window_marks_the_field_a_failure_names(window):
    pytest.importorskip("PySide6")
    # a message that does not start with its field: only Failed.field can say which control to mark
    window._on_failed_event(Failed(step=0, status="failed", message="The seed cannot be used here.", field="seed"), live=False)
    assert window.experiment.seed_spin.property("invalid") is True
    assert "seed cannot be used" in window.experiment.error_label.text()
