"""Training runs and trained checkpoints in the database (a thin layer over ``storage.repository``).

A training run is a ``runs`` row of kind ``train`` (status running -> completed / failed / cancelled /
interrupted; ``cells_done``/``cells_total`` count optimizer steps). A trained model is registered like
any other checkpoint (by content fingerprint, name = its folder path) with its training card attached,
so every page lists it. Only finished folders are registered: a cancelled or failed run registers none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import checkpoints, datasets
from core.registry import checkpoint_values, dataset_values

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from sqlalchemy.orm import Session, sessionmaker


def start_train_run(
    factory: sessionmaker[Session],
    base: checkpoints.CheckpointInfo,
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    params: dict[str, Any],
    total_steps: int,
    provenance: dict[str, Any],
) -> int:
    """Register the base checkpoint and the dataset, open a 'running' train run; return its id."""
    from storage import repository

    with factory() as s, s.begin():
        repository.upsert_checkpoint(s, **checkpoint_values(base))
        repository.upsert_dataset(s, **dataset_values(spec))
        repository.mark_interrupted_runs(s)
        run = repository.start_run(
            s,
            kind="train",
            checkpoint_fp=base.fingerprint,
            dataset_fp=dataset_fp,
            params=params,
            cells_total=total_steps,
            provenance=provenance,
        )
        return run.id


class ProgressRecorder:
    """Stores a run's step count at most every ``every_s`` seconds (and always the last step)."""

    def __init__(self, factory: sessionmaker[Session], run_id: int, every_s: float = 2.0) -> None:
        self.factory, self.run_id, self.every_s = factory, run_id, every_s
        self._last = 0.0

    def __call__(self, step: int, total: int, force: bool = False) -> None:
        """Record ``step`` of ``total`` when due."""
        from storage import repository

        now = time.monotonic()
        if not force and step < total and now - self._last < self.every_s:
            return
        self._last = now
        with self.factory() as s, s.begin():
            repository.record_progress(s, self.run_id, step, total)


def finish_train_run(
    factory: sessionmaker[Session], run_id: int, status: str, error: str | None = None
) -> None:
    """Close a train run with a final status (completed, failed, cancelled, interrupted)."""
    from storage import repository

    with factory() as s, s.begin():
        repository.finish_run(s, run_id, status, error_text=error)


def describe_trained(folder: Path, model: SentenceTransformer) -> checkpoints.CheckpointInfo:
    """Describe a just-saved checkpoint folder (fingerprint of its files) without loading it again."""
    spec = checkpoints.parse_checkpoint(str(folder))
    return checkpoints.describe_model(
        spec, Path(spec.location), checkpoints.fingerprint_folder(folder), model
    )


def register_trained(
    factory: sessionmaker[Session], info: checkpoints.CheckpointInfo, card: dict[str, Any]
) -> None:
    """Register a trained checkpoint and attach its training card, in one transaction."""
    from storage import repository

    with factory() as s, s.begin():
        repository.upsert_checkpoint(s, **checkpoint_values(info))
        repository.set_training_card(s, info.fingerprint, card)
