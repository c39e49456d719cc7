"""ORM models of the results database (SQLAlchemy 2.0 declarative, typed).

Scope: table definitions only. Schema changes go through Alembic (storage/migrations/versions); a test
checks that the migrations at head equal these models. Code outside storage/ never sees ORM rows: the
repository (storage/repository.py) returns frozen dataclasses.

Design notes:
- Checkpoints and datasets are identified by their content fingerprint (UNIQUE); runs, results and item
  scores refer to them by fingerprint, so the natural key of a result row is readable on its own.
- A result value of NULL means NaN (e.g. a Spearman correlation of constant scores): stored, not an error.
- Constraints are named through the metadata naming convention, so later (batch) migrations on SQLite
  can drop or alter them by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import DEFAULT_BACKEND, FP, Base, in_list, utc_now

ALIAS_COLUMN_LEN = 256  # stored display names; a name typed by a user is bounded lower (core.lab.registry)
RUN_KINDS: tuple[str, ...] = ("evaluate", "cost", "train")
RUN_STATUSES: tuple[str, ...] = ("running", "completed", "failed", "interrupted", "cancelled")
DATASET_KINDS: tuple[str, ...] = ("sts", "retrieval")


class Checkpoint(Base):
    """A sentence-embedding checkpoint, by content fingerprint."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512), index=True)
    # The display name every page shows (editable); NULL only for rows stored without one. Links and the
    # CLI keep using ``name``/``fingerprint``, so renaming never breaks a shared link (migration 0007).
    alias: Mapped[str | None] = mapped_column(String(ALIAS_COLUMN_LEN), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Text)
    revision: Mapped[str | None] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(FP, unique=True)
    path: Mapped[str] = mapped_column(Text)
    num_layers: Mapped[int] = mapped_column(Integer)
    hidden_size: Mapped[int] = mapped_column(Integer)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    pooling: Mapped[str] = mapped_column(String(64))
    similarity: Mapped[str] = mapped_column(String(64))
    max_seq_length: Mapped[int] = mapped_column(Integer)
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    training_card: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Dataset(Base):
    """An STS or retrieval dataset split, by content fingerprint."""

    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint(in_list("kind", DATASET_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    split: Mapped[str] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(FP, unique=True)
    n_items: Mapped[int] = mapped_column(Integer)
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Run(Base):
    """One evaluation, cost measurement or training run, with its provenance and liveness."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(in_list("kind", RUN_KINDS), name="kind"),
        CheckConstraint(in_list("status", RUN_STATUSES), name="status"),
        Index("ix_runs_status", "status"),
        {"sqlite_autoincrement": True},  # ids are never reused after a delete (migration 0004)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    checkpoint_fp: Mapped[str] = mapped_column(FP, ForeignKey("checkpoints.fingerprint"), index=True)
    dataset_fp: Mapped[str | None] = mapped_column(FP, ForeignKey("datasets.fingerprint"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    cells_total: Mapped[int] = mapped_column(Integer, default=0)
    cells_done: Mapped[int] = mapped_column(Integer, default=0)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wall_time_s: Mapped[float | None] = mapped_column(Double)
    error_text: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(256))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Result(Base):
    """One metric value of one sub-model cell; the natural key is unique so re-running upserts."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "split",
            "layer",
            "dim",
            "precision",
            "backend",
            "metric",
            name="uq_results_cell_metric",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    checkpoint_fp: Mapped[str] = mapped_column(FP, ForeignKey("checkpoints.fingerprint"))
    dataset_fp: Mapped[str] = mapped_column(FP, ForeignKey("datasets.fingerprint"))
    split: Mapped[str] = mapped_column(String(128))
    layer: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(32))
    backend: Mapped[str] = mapped_column(String(32), default=DEFAULT_BACKEND, server_default=DEFAULT_BACKEND)
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Double)  # NULL = NaN
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ItemScores(Base):
    """Raw per-item scores of one cell (per-pair similarities, per-query metric values)."""

    __tablename__ = "item_scores"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "split",
            "layer",
            "dim",
            "precision",
            "backend",
            "kind",
            name="uq_item_scores_cell_kind",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    checkpoint_fp: Mapped[str] = mapped_column(FP, ForeignKey("checkpoints.fingerprint"))
    dataset_fp: Mapped[str] = mapped_column(FP, ForeignKey("datasets.fingerprint"))
    split: Mapped[str] = mapped_column(String(128))
    layer: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(32))
    backend: Mapped[str] = mapped_column(String(32), default=DEFAULT_BACKEND, server_default=DEFAULT_BACKEND)
    kind: Mapped[str] = mapped_column(String(64))
    n_items: Mapped[int] = mapped_column(Integer)
    ids: Mapped[list[Any]] = mapped_column(JSON)
    values_npy: Mapped[bytes] = mapped_column(LargeBinary)  # np.save of a float32 array
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
