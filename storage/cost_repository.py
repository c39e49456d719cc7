"""Repository functions of measured costs: plain values in, frozen dataclasses and DataFrames out.

Scope: machines, encoding costs per (checkpoint, layer, machine, batch size, seq length) and search
costs per (checkpoint, dataset, dim, precision, index kind, machine), on the tables of
``storage/cost_models.py``. Like ``storage.repository``, every function takes a ``Session`` and never
commits; writes are upserts on the natural key (re-measuring replaces, never duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.base import DEFAULT_BACKEND, utc_now
from storage.cost_models import EncodingCost, Machine, SearchCost
from storage.db import StorageError
from storage.upsert import plain_json, upsert

MACHINE_FIELDS: tuple[str, ...] = (
    "cpu_model",
    "logical_cores",
    "physical_cores",
    "torch_threads",
    "torch_version",
    "arch",
)
ENCODING_KEY: tuple[str, ...] = ("checkpoint_fp", "layer", "machine_fp", "batch_size", "seq_len", "backend")
ENCODING_VALUES: tuple[str, ...] = (
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_mean",
    "throughput_per_s",
    "batch_ms_p50",
    "flops_per_token",
    "params",
    "repeats",
    "batch_repeats",
)
SEARCH_KEY: tuple[str, ...] = ("checkpoint_fp", "dataset_fp", "dim", "precision", "index_kind", "machine_fp")
SEARCH_VALUES: tuple[str, ...] = (
    "layer",
    "n_docs",
    "n_queries",
    "k",
    "bytes_per_vector",
    "index_bytes",
    "build_s",
    "search_ms_per_query",
    "search_ms_p50",
    "search_ms_p95",
    "recall_at_k",
    "recall_vs_float32",
)
_INT_COLUMNS = {
    "layer",
    "batch_size",
    "seq_len",
    "flops_per_token",
    "params",
    "repeats",
    "batch_repeats",
    "dim",
    "n_docs",
    "n_queries",
    "k",
    "bytes_per_vector",
    "index_bytes",
}
ENCODING_COLUMNS: tuple[str, ...] = (
    *ENCODING_KEY,
    *ENCODING_VALUES,
    "machine",
    "run_id",
    "measured_at",
    "details",
)
SEARCH_COLUMNS: tuple[str, ...] = (*SEARCH_KEY, *SEARCH_VALUES, "machine", "run_id", "measured_at")


@dataclass(frozen=True)
class MachineRecord:
    """A stored machine configuration."""

    fingerprint: str
    cpu_model: str
    logical_cores: int
    physical_cores: int
    torch_threads: int
    torch_version: str
    arch: str
    info: dict[str, Any]

    @property
    def label(self) -> str:
        """``AMD EPYC, 2 cores, 2 torch threads``."""
        return f"{self.cpu_model}, {self.logical_cores} cores, {self.torch_threads} torch threads"


def _machine_record(row: Machine) -> MachineRecord:
    return MachineRecord(
        fingerprint=row.fingerprint,
        cpu_model=row.cpu_model,
        logical_cores=row.logical_cores,
        physical_cores=row.physical_cores,
        torch_threads=row.torch_threads,
        torch_version=row.torch_version,
        arch=row.arch,
        info=dict(row.info or {}),
    )


def _require(row: Mapping[str, Any], names: Iterable[str], what: str) -> None:
    missing = [n for n in names if n not in row]
    if missing:
        raise StorageError(f"{what} row lacks {', '.join(missing)}")


def upsert_machine(s: Session, fingerprint: str, info: Mapping[str, Any]) -> MachineRecord:
    """Register (or refresh) a machine by fingerprint; ``info`` has at least :data:`MACHINE_FIELDS`."""
    _require(info, MACHINE_FIELDS, "machine")
    row = {name: info[name] for name in MACHINE_FIELDS}
    row.update(fingerprint=fingerprint, info=plain_json(dict(info)), created_at=utc_now())
    upsert(s, Machine, [row], key=["fingerprint"], update_columns=["info"])
    found = s.scalars(select(Machine).where(Machine.fingerprint == fingerprint)).one()
    return _machine_record(found)


def list_machines(s: Session) -> list[MachineRecord]:
    """Every stored machine, oldest first."""
    return [_machine_record(r) for r in s.scalars(select(Machine).order_by(Machine.created_at, Machine.id))]


def _payload(
    rows: Iterable[Mapping[str, Any]],
    key: tuple[str, ...],
    values: tuple[str, ...],
    run_id: int | None,
    what: str,
) -> list[dict[str, Any]]:
    now = utc_now()
    payload = []
    for row in rows:
        if "backend" in key and "backend" not in row:
            row = {**row, "backend": DEFAULT_BACKEND}  # measured before backends existed: torch float32
        _require(row, (*key, *values), what)
        item: dict[str, Any] = {}
        for name in (*key, *values):
            value = row[name]
            if value is None:
                item[name] = None
            elif name in _INT_COLUMNS:
                item[name] = int(value)
            elif isinstance(value, str):
                item[name] = value
            else:
                item[name] = float(value)
        item.update(run_id=run_id, details=plain_json(dict(row.get("details") or {})), measured_at=now)
        payload.append(item)
    return payload


def upsert_encoding_costs(s: Session, rows: Iterable[Mapping[str, Any]], run_id: int | None = None) -> int:
    """Store encoding costs (keys :data:`ENCODING_KEY`, values :data:`ENCODING_VALUES`, optional ``details``).

    A row with the same key is replaced. Returns the number of rows written.
    """
    payload = _payload(rows, ENCODING_KEY, ENCODING_VALUES, run_id, "encoding cost")
    updates = [*ENCODING_VALUES, "run_id", "details", "measured_at"]
    upsert(s, EncodingCost, payload, key=list(ENCODING_KEY), update_columns=updates)
    return len(payload)


def upsert_search_costs(s: Session, rows: Iterable[Mapping[str, Any]], run_id: int | None = None) -> int:
    """Store search costs (keys :data:`SEARCH_KEY`, values :data:`SEARCH_VALUES`, optional ``details``)."""
    payload = _payload(rows, SEARCH_KEY, SEARCH_VALUES, run_id, "search cost")
    updates = [*SEARCH_VALUES, "run_id", "details", "measured_at"]
    upsert(s, SearchCost, payload, key=list(SEARCH_KEY), update_columns=updates)
    return len(payload)


def _frame(rows: list[tuple[Any, ...]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in columns:
        if name in _INT_COLUMNS:
            frame[name] = frame[name].astype("int64")
        elif name == "run_id":
            frame[name] = frame[name].astype("Int64")
        elif name == "measured_at":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif name not in {"machine", "details", *ENCODING_KEY, *SEARCH_KEY}:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _machine_label(row: Machine) -> str:
    return _machine_record(row).label


def _costs_frame(
    s: Session,
    model: type[EncodingCost] | type[SearchCost],
    checkpoint_fp: str | Iterable[str] | None,
    filters: dict[str, Any],
    order: Sequence[str],
    columns: tuple[str, ...],
) -> pd.DataFrame:
    """Rows of a cost table joined with their machine: key and value columns, machine label, run, time."""
    query = select(model, Machine).join(Machine, Machine.fingerprint == model.machine_fp)
    if isinstance(checkpoint_fp, str):
        query = query.where(model.checkpoint_fp == checkpoint_fp)
    elif checkpoint_fp is not None:
        query = query.where(model.checkpoint_fp.in_(list(checkpoint_fp)))
    for name, wanted in filters.items():
        if wanted is not None:
            query = query.where(getattr(model, name) == wanted)
    query = query.order_by(*(getattr(model, name) for name in order))
    details = columns[-1] == "details"  # encoding costs end with their details dict
    stored = columns[:-1] if details else columns
    names = stored[: len(stored) - 3]  # then: machine label, run id, measured at
    rows: list[tuple[Any, ...]] = []
    read = (*names, "run_id", "measured_at", *(("details",) if details else ()))
    for cost, machine in s.execute(query):
        values = [getattr(cost, n) for n in read]
        run_id, measured_at = values[len(names)], values[len(names) + 1]
        row = (*values[: len(names)], _machine_label(machine), run_id, _aware(measured_at))
        rows.append((*row, dict(values[-1] or {})) if details else row)
    return _frame(rows, columns)


def encoding_costs_frame(
    s: Session,
    checkpoint_fp: str | Iterable[str] | None = None,
    machine_fp: str | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    backend: str | None = DEFAULT_BACKEND,
) -> pd.DataFrame:
    """Stored encoding costs (columns :data:`ENCODING_COLUMNS`), ordered by key; ``backend=None``: all."""
    filters = {"machine_fp": machine_fp, "batch_size": batch_size, "seq_len": seq_len, "backend": backend}
    order = ("checkpoint_fp", "machine_fp", "batch_size", "seq_len", "backend", "layer")
    return _costs_frame(s, EncodingCost, checkpoint_fp, filters, order, ENCODING_COLUMNS)


def search_costs_frame(
    s: Session,
    checkpoint_fp: str | Iterable[str] | None = None,
    dataset_fp: str | None = None,
    machine_fp: str | None = None,
    index_kind: str | None = None,
) -> pd.DataFrame:
    """Stored search costs (columns :data:`SEARCH_COLUMNS`), ordered by key."""
    filters = {"dataset_fp": dataset_fp, "machine_fp": machine_fp, "index_kind": index_kind}
    order = ("checkpoint_fp", "dataset_fp", "machine_fp", "index_kind", "precision", "dim")
    return _costs_frame(s, SearchCost, checkpoint_fp, filters, order, SEARCH_COLUMNS)
