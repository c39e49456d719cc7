"""What the lab knows: checkpoints, datasets and stored results, as plain rows for the CLI and the pages."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from common.errors import LabError
from common.jsonsafe import nan_to_none
from core import checkpoints, datasets
from core.lab import queries, registry
from storage import db, repository

RESULT_KEYS = ("checkpoint", "dataset", "layer", "dim", "precision", "metric", "value", "backend")


class CatalogError(LabError):
    """A name that is not stored (the message says where to look)."""


def result_rows(
    frame: pd.DataFrame, checkpoint: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """One plain row per stored result (``RESULT_KEYS`` first, then provenance keys), sorted."""
    rows = []
    for rec in frame.to_dict("records"):
        rows.append(
            {
                "checkpoint": checkpoint or rec["checkpoint"],
                "dataset": dataset or rec["dataset"],
                "layer": int(rec["layer"]),
                "dim": int(rec["dim"]),
                "precision": rec["precision"],
                "metric": rec["metric"],
                "value": nan_to_none(rec["value"]),
                "split": rec.get("split"),
                "checkpoint_fingerprint": rec.get("checkpoint_fp"),
                "dataset_fingerprint": rec.get("dataset_fp"),
                "run_id": None if rec.get("run_id") is None else int(rec["run_id"]),
                "backend": rec.get("backend") or "torch",
            }
        )
    rows.sort(
        key=lambda r: (
            r["checkpoint"],
            r["dataset"],
            r["backend"] != "torch",
            r["backend"],
            r["precision"],
            r["layer"],
            r["dim"],
            r["metric"],
        )
    )
    return rows


def _fingerprint(s: Session, kind: str, name: str | None) -> str | None:
    """The stored fingerprint of a checkpoint/dataset name (None for no filter)."""
    if not name:
        return None
    getter = repository.get_checkpoint if kind == "checkpoint" else repository.get_dataset
    record: Any = getter(s, name)
    if record is None and kind == "checkpoint" and name != "default":
        try:
            record = getter(s, checkpoints.parse_checkpoint(name).name)
        except checkpoints.CheckpointError:
            record = None
    if record is None and kind == "dataset":  # another name (a copy, a path) of stored content
        try:
            record = getter(s, datasets.dataset_fingerprint(datasets.resolve_dataset(name)))
        except datasets.DatasetError:
            record = None
    if record is None:
        raise CatalogError(f"no stored {kind} named {name!r} (see `python -m core {kind}s`)")
    return str(record.fingerprint)


def stored_results(
    session_factory: sessionmaker[Session], checkpoint: str | None = None, dataset: str | None = None
) -> list[dict[str, Any]]:
    """Stored results, optionally filtered by checkpoint and dataset name or fingerprint.

    Runs whose process is gone are marked interrupted first (not on a database opened read-only).
    """
    if not db.is_read_only(session_factory):
        with session_factory() as s, s.begin():
            repository.mark_interrupted_runs(s)
    with session_factory() as s:
        checkpoint_fp = _fingerprint(s, "checkpoint", checkpoint)
        dataset_fp = _fingerprint(s, "dataset", dataset)
        frame = repository.results_frame(s, checkpoint_fp=checkpoint_fp, dataset_fp=dataset_fp, backend=None)
    return result_rows(frame)


def checkpoint_rows(session_factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    """The default checkpoint and every checkpoint known to the database."""
    records = queries.checkpoints(session_factory)
    names = registry.display_names(records)
    rows = [
        {
            "name": r.name,
            "display_name": names[r.fingerprint],
            "kind": r.kind,
            "fingerprint": r.fingerprint,
            "layers": r.num_layers,
            "dim": r.embedding_dim,
            "pooling": r.pooling,
            "similarity": r.similarity,
            "trained": r.training_card is not None,
        }
        for r in records
    ]
    if not any(r["name"] == "default" for r in rows):
        rows.insert(
            0,
            {
                "name": "default",
                "display_name": "default",
                "kind": "default",
                "fingerprint": None,
                "layers": 6,
                "dim": 384,
                "pooling": "mean",
                "similarity": "cosine",
                "trained": False,
            },
        )
    return rows


def dataset_rows(session_factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    """Built-in datasets and every dataset known to the database."""
    rows: dict[str, dict[str, Any]] = {}
    for name, spec in datasets.builtin_datasets().items():
        rows[name] = {
            "name": name,
            "kind": spec.kind,
            "split": spec.split,
            "path": spec.path,
            "builtin": True,
        }
    for record in queries.datasets(session_factory):
        rows.setdefault(
            record.name,
            {
                "name": record.name,
                "kind": record.kind,
                "split": record.split,
                "path": record.path,
                "builtin": False,
            },
        )
    return list(rows.values())
