"""Register checkpoints and datasets in the results database without evaluating anything.

The app's Home sidebar uses these: a checkpoint is loaded (which validates it, fingerprints it and
describes its shape) and a dataset is parsed (which validates every line) before anything is stored.
Both refuse in read-only demo mode (``settings.ensure_writable``), whatever the UI shows.

Out of scope: evaluation (core.lab.evaluate registers what it evaluates by itself).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import checkpoints, datasets
from storage import repository
from storage.repository import CheckpointRecord, DatasetRecord


def checkpoint_values(info: checkpoints.CheckpointInfo) -> dict[str, Any]:
    """Keyword arguments of ``repository.upsert_checkpoint`` for a described checkpoint."""
    return {
        "name": info.name,
        "kind": info.kind,
        "location": info.location,
        "revision": info.revision,
        "fingerprint": info.fingerprint,
        "path": info.path,
        "num_layers": info.num_layers,
        "hidden_size": info.hidden_size,
        "embedding_dim": info.embedding_dim,
        "pooling": info.pooling,
        "similarity": info.similarity,
        "max_seq_length": info.max_seq_length,
        "info": info.to_dict(),
    }


def dataset_values(spec: datasets.DatasetSpec) -> dict[str, Any]:
    """Keyword arguments of ``repository.upsert_dataset`` (parses the dataset: raises on bad input)."""
    described = datasets.describe_dataset(spec)
    return {
        "name": spec.name,
        "kind": spec.kind,
        "path": str(spec.path),
        "split": spec.split,
        "fingerprint": str(described["fingerprint"]),
        "n_items": int(described["n_items"]),
        "info": described,
    }


def register_checkpoint(
    checkpoint: str | checkpoints.CheckpointSpec, *, session_factory: sessionmaker[Session]
) -> CheckpointRecord:
    """Load ``checkpoint`` (folder, hub id@rev or ``default``) and store its description.

    Raises:
        ReadOnlyError: in read-only demo mode.
        CheckpointError: the checkpoint cannot be found or loaded (the message says why).
    """
    settings.ensure_writable("registering a checkpoint")
    loaded = checkpoints.load(checkpoint)
    factory = session_factory
    with factory() as s, s.begin():
        return repository.upsert_checkpoint(s, **checkpoint_values(loaded.info))


def register_dataset(spec: datasets.DatasetSpec, *, session_factory: sessionmaker[Session]) -> DatasetRecord:
    """Validate a dataset and store its description.

    Raises:
        ReadOnlyError: in read-only demo mode.
        DatasetError: a malformed file (the message names the file and line).
    """
    settings.ensure_writable("registering a dataset")
    values = dataset_values(spec)
    factory = session_factory
    with factory() as s, s.begin():
        return repository.upsert_dataset(s, **values)
