"""ORM models of reference models (issue 13): published MTEB results stored beside the lab's own.

Scope: table definitions only, on the shared ``storage.base.Base`` metadata (``storage.schema`` imports
this module); schema changes go through Alembic
(``storage/migrations/versions/0003_reference_models.py``); reads and writes are in
``storage/reference_repository.py``.

- ``reference_models``: one row per (model, revision) folder, with that folder's own
  ``model_meta.json`` figures as published (NULL where the folder has none) and the meta file's path
  and sha256. Resolving disagreeing figures across revisions is a read-time rule (``core.mteb``), so
  the stored rows stay what the files say.
- ``reference_results``: one row per task file (model revision, task), with the file's path and
  sha256 (provenance) and its ``mteb_version`` / ``dataset_revision``; its size and mtime as last read
  (``file_size``, ``file_mtime_ns``: a re-import's cheap "unchanged" check before any hashing).
- Each task file's scores are stored with it, packed (``reference_results.scores``: a JSON list of
  ``[split, subset, metric, value]`` rows, ``n_scores`` of them): ``main_score`` as the file states it
  and the metrics the lab also computes, in the lab's key generation; value null = NaN/null. A file's
  scores are only ever written, replaced and read together, and one row per score (a ``reference_scores``
  table until migration 0008) made the database writes of a whole-repository import (~2 million
  scores) its slowest part; ``storage.reference_repository.scores_frame`` unpacks them.
- ``reference_imports``: one row per import (root folder, counts, wall time, the files that failed).

Natural keys: (name, revision); (model_id, task); (split, subset, metric) within a file's scores.
Importing an unchanged file (same path, size and mtime, else same sha256) writes nothing; a changed
file's scores are replaced as a whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Double, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utc_now

SHA = String(64)


class ReferenceModel(Base):
    """A published model at one revision folder, with that folder's own metadata."""

    __tablename__ = "reference_models"
    __table_args__ = (UniqueConstraint("name", "revision", name="uq_reference_models_name_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    revision: Mapped[str] = mapped_column(String(256))
    embed_dim: Mapped[int | None] = mapped_column(Integer)
    n_parameters: Mapped[int | None] = mapped_column(BigInteger)
    max_tokens: Mapped[int | None] = mapped_column(Integer)
    similarity: Mapped[str | None] = mapped_column(String(64))
    meta_path: Mapped[str | None] = mapped_column(Text)
    meta_sha256: Mapped[str | None] = mapped_column(SHA)


class ReferenceResult(Base):
    """One task file of a reference model revision, with its provenance."""

    __tablename__ = "reference_results"
    __table_args__ = (UniqueConstraint("model_id", "task", name="uq_reference_results_model_id_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, ForeignKey("reference_models.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(256), index=True)
    source_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(SHA)
    mteb_version: Mapped[str | None] = mapped_column(String(64))
    dataset_revision: Mapped[str | None] = mapped_column(String(256))
    # The file's size and modification time (ns) when it was last read: a re-import skips a file whose
    # path, size and mtime are these without reading it (migration 0006); NULL = read it again.
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    # The file's scores: JSON [[split, subset, metric, value], ...] (migration 0008) and how many.
    scores: Mapped[str] = mapped_column(Text)
    n_scores: Mapped[int] = mapped_column(Integer)


class ReferenceImport(Base):
    """One import of a results folder: what was read, written and refused."""

    __tablename__ = "reference_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(Text, index=True)
    files_seen: Mapped[int] = mapped_column(Integer)
    files_changed: Mapped[int] = mapped_column(Integer)
    files_failed: Mapped[int] = mapped_column(Integer)
    scores_written: Mapped[int] = mapped_column(Integer)
    wall_time_s: Mapped[float] = mapped_column(Double)
    errors: Mapped[list[Any]] = mapped_column(JSON)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
