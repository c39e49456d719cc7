"""Reads for the pages: each opens a session on the factory it is given and returns plain values.

The Streamlit code (``app.py``, ``pages/``, ``ui/``) reaches storage only through ``core.lab``; this
module holds the small reads and writes it needs (listing checkpoints, datasets, runs and results,
deleting a run, marking dead runs), so the UI never opens a session or imports ``storage`` itself.
Records are the repository's frozen dataclasses, re-exported here for type hints.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from core.lab import cost as lab_cost
from storage import db, repository
from storage.repository import RESUMABLE_STATUSES, CheckpointRecord, DatasetRecord, RunRecord

__all__ = [
    "RESUMABLE_STATUSES",
    "CheckpointRecord",
    "DatasetRecord",
    "RunRecord",
    "checkpoint",
    "checkpoints",
    "datasets",
    "mark_interrupted_runs",
    "results",
    "runs",
    "safe_url",
]

Factory = sessionmaker[Session]


def safe_url(url: str) -> str:
    """``url`` with any password masked, for display."""
    return db.safe_url(url)


def checkpoints(factory: Factory) -> list[CheckpointRecord]:
    """Every registered checkpoint."""
    with factory() as s:
        return repository.list_checkpoints(s)


def checkpoint(factory: Factory, name_or_fingerprint: str) -> CheckpointRecord | None:
    """One registered checkpoint by name or fingerprint, None when unknown."""
    with factory() as s:
        return repository.get_checkpoint(s, name_or_fingerprint)


def datasets(factory: Factory) -> list[DatasetRecord]:
    """Every registered dataset."""
    with factory() as s:
        return repository.list_datasets(s)


def runs(factory: Factory) -> list[RunRecord]:
    """Every run, newest first (read only: call :func:`mark_interrupted_runs` first to settle dead runs)."""
    with factory() as s:
        return repository.list_runs(s)


def mark_interrupted_runs(factory: Factory) -> int:
    """Mark 'running' runs whose process is gone as interrupted (one short transaction); how many."""
    with factory() as s, s.begin():
        return repository.mark_interrupted_runs(s)


def results(
    factory: Factory,
    checkpoint_fp: str | None = None,
    dataset_fp: str | None = None,
    run_id: int | None = None,
    backend: str | None = "torch",
) -> pd.DataFrame:
    """Stored results in long format (``repository.RESULT_COLUMNS``), filtered (``backend=None``: all)."""
    with factory() as s:
        return repository.results_frame(
            s, checkpoint_fp=checkpoint_fp, dataset_fp=dataset_fp, run_id=run_id, backend=backend
        )


def stored_backends(factory: Factory, checkpoint_fp: str, dataset_fp: str | None = None) -> list[str]:
    """Deployment backends with stored results of a checkpoint (on a dataset), torch first."""
    with factory() as s:
        return repository.stored_backends(s, checkpoint_fp, dataset_fp)


def measured_costs(
    factory: Factory, checkpoint_fps: Iterable[str], dataset_fp: str | None, backend: str = "torch"
) -> pd.DataFrame:
    """Stored cost columns of these checkpoints on ``backend`` (``core.lab.cost.cost_frame``); empty if none."""
    with factory() as s:
        return lab_cost.cost_frame(s, list(checkpoint_fps), dataset_fp=dataset_fp, backend=backend)
