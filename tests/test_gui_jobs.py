"""The one background-job helper: results, errors and progress reach the GUI thread; a generator job can be cancelled."""

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from ssl_studio.gui.jobs import JobCancelled, start_job
from ssl_studio.gui.main_thread_gc import main_thread_collection


def _on_gui_thread():
    return threading.current_thread() is threading.main_thread()


def test_a_result_arrives_on_the_gui_thread_after_the_work_ran_elsewhere(qtbot):
    seen = {}
    held = main_thread_collection.holders
    job = start_job(lambda a, b=0: (threading.current_thread() is threading.main_thread(), a + b), 2, b=3,
                    on_returned=lambda r: seen.update(result=r, gui=_on_gui_thread()))
    assert main_thread_collection.holders == held + 1  # no cyclic collection in the pool thread meanwhile
    qtbot.waitUntil(lambda: job.done, timeout=10_000)  # the end is delivered by the event loop, after start returned
    assert seen == {"result": (False, 5), "gui": True}
    assert job.done and main_thread_collection.holders == held


def test_an_exception_is_reported_not_raised(qtbot):
    errors = []

    def boom():
        raise ValueError("bad value")

    job = start_job(boom, on_errored=errors.append)
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_a_generator_reports_progress_and_stops_when_cancelled(qtbot):
    gate = threading.Event()
    progress, errors = [], []

    def count():
        for i in range(1000):
            yield i
            if i == 2:
                gate.wait(10)

    job = start_job(count, on_progress=progress.append, on_errored=errors.append)
    qtbot.waitUntil(lambda: len(progress) >= 3, timeout=10_000)
    job.cancel()
    gate.set()
    qtbot.waitUntil(lambda: job.done, timeout=10_000)
    assert progress[:3] == [0, 1, 2] and len(progress) < 1000
    assert len(errors) == 1 and isinstance(errors[0], JobCancelled)


def test_a_plain_function_reports_progress_through_its_job(qtbot):
    from ssl_studio.gui.jobs import Job

    progress, results = [], []
    job = Job(lambda: [job.report(f) for f in (0.5, 1.0)] and "done")
    job.signals.progress.connect(progress.append)
    job.signals.returned.connect(results.append)
    with qtbot.waitSignal(job.signals.finished, timeout=10_000):
        job.start()
    assert progress == [0.5, 1.0] and results == ["done"]
