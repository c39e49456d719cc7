"""ORM models of measured costs (issue 6): machines, encoding cost per layer, search cost per (dim, precision).

Scope: table definitions only, on the shared ``storage.base.Base`` metadata (``storage.schema`` imports
every table module, so ``schema.metadata`` sees these tables); schema changes go through Alembic
(``storage/migrations/versions/0002_cost_tables.py``). Reads and writes are in
``storage/cost_repository.py``.

Natural keys (unique, so measuring again upserts):

- ``encoding_costs``: (checkpoint_fp, layer, machine_fp, batch_size, seq_len, backend);
- ``search_costs``: (checkpoint_fp, dataset_fp, dim, precision, index_kind, machine_fp).

Every timing is keyed by the machine fingerprint (CPU model, cores, torch threads, torch version,
architecture), so numbers from different machines are never mixed silently. ``run_id`` points at the
``cost`` run that measured the row (deleting that run deletes its rows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Double, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import DEFAULT_BACKEND, FP, Base, utc_now


class Machine(Base):
    """A machine configuration that timings were measured on, by fingerprint."""

    __tablename__ = "machines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(FP, unique=True)
    cpu_model: Mapped[str] = mapped_column(Text)
    logical_cores: Mapped[int] = mapped_column(Integer)
    physical_cores: Mapped[int] = mapped_column(Integer)
    torch_threads: Mapped[int] = mapped_column(Integer)
    torch_version: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(64))
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class EncodingCost(Base):
    """Encoding latency/throughput of the first ``layer`` layers at one batch size and sequence length."""

    __tablename__ = "encoding_costs"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_fp",
            "layer",
            "machine_fp",
            "batch_size",
            "seq_len",
            "backend",
            name="uq_encoding_costs_key",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    checkpoint_fp: Mapped[str] = mapped_column(FP, ForeignKey("checkpoints.fingerprint"))
    machine_fp: Mapped[str] = mapped_column(FP, ForeignKey("machines.fingerprint"))
    layer: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(32), default=DEFAULT_BACKEND, server_default=DEFAULT_BACKEND)
    batch_size: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    latency_ms_p50: Mapped[float] = mapped_column(Double)
    latency_ms_p95: Mapped[float] = mapped_column(Double)
    latency_ms_mean: Mapped[float] = mapped_column(Double)
    throughput_per_s: Mapped[float] = mapped_column(Double)
    batch_ms_p50: Mapped[float] = mapped_column(Double)
    flops_per_token: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    repeats: Mapped[int] = mapped_column(Integer)
    batch_repeats: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class SearchCost(Base):
    """Bytes and search time of one (dim, precision, index kind) over a dataset's corpus."""

    __tablename__ = "search_costs"
    __table_args__ = (
        UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "dim",
            "precision",
            "index_kind",
            "machine_fp",
            name="uq_search_costs_key",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    checkpoint_fp: Mapped[str] = mapped_column(FP, ForeignKey("checkpoints.fingerprint"))
    dataset_fp: Mapped[str] = mapped_column(FP, ForeignKey("datasets.fingerprint"))
    machine_fp: Mapped[str] = mapped_column(FP, ForeignKey("machines.fingerprint"))
    dim: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(32))
    index_kind: Mapped[str] = mapped_column(String(64))
    layer: Mapped[int] = mapped_column(Integer)  # the layer whose embeddings were searched
    n_docs: Mapped[int] = mapped_column(Integer)
    n_queries: Mapped[int] = mapped_column(Integer)
    k: Mapped[int] = mapped_column(Integer)
    bytes_per_vector: Mapped[int] = mapped_column(Integer)
    index_bytes: Mapped[int] = mapped_column(BigInteger)
    build_s: Mapped[float] = mapped_column(Double)
    search_ms_per_query: Mapped[float] = mapped_column(Double)
    search_ms_p50: Mapped[float] = mapped_column(Double)  # one query per call
    search_ms_p95: Mapped[float] = mapped_column(Double)
    recall_at_k: Mapped[float | None] = mapped_column(
        Double
    )  # vs exact search, same precision; NULL if exact
    recall_vs_float32: Mapped[float | None] = mapped_column(Double)  # vs exact float32 search at the same dim
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
