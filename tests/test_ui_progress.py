"""Progress texts: counts, elapsed time, time left (evaluation, corpus encoding) and s/step (training)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime
from pathlib import Path

from core.lab.jobs import TrainJob
from ui import progress, train_widgets


def test_doctests() -> None:
    assert doctest.testmod(progress).failed == 0


def test_progress_text_hand_worked() -> None:
    assert progress.progress_text("Scoring cells", 12, 12, 61.0) == "Scoring cells: 12/12 · 01:01 elapsed"
    assert progress.progress_text("Encoding texts", 1, 4, 3600.0) == (
        "Encoding texts: 1/4 · 1:00:00 elapsed, about 3:00:00 left"
    )


def test_training_job_shows_seconds_per_step_and_time_left() -> None:
    job = TrainJob(id="j", folder=Path("."), status="running", step=30, total=120, losses=[], output="o",
                   method="starbucks", error=None, pid=None, started_at="2026-01-01T10:00:00+00:00")  # fmt: skip
    now = datetime(2026, 1, 1, 10, 1, 0, tzinfo=UTC)  # 60 s for 30 steps: 2 s/step, 90 steps left
    assert (
        train_widgets.job_progress_text(job, now)
        == "running: 30/120 · 01:00 elapsed · 2.0 s/step, about 03:00 left"
    )
    starting = TrainJob(id="j", folder=Path("."), status="starting", step=0, total=0, losses=[], output="o",
                        method="starbucks", error=None, pid=None, started_at="")  # fmt: skip
    assert train_widgets.job_progress_text(starting, now) == "starting: step 0 of ?"
