"""Repository functions over the results database: plain values in, frozen dataclasses out.

Scope: every read and write the engine, CLI and pages need. Each function takes a ``Session`` and
never commits; the caller owns the transaction (``with Session() as s, s.begin(): ...``), so work is
saved exactly at the caller's boundaries (one cell per transaction for grid evaluation).

Upserts use ``INSERT ... ON CONFLICT`` on SQLite and PostgreSQL (a select-then-write fallback elsewhere).
A NaN metric value is stored as NULL and read back as NaN. Item scores are stored as an ``.npy`` blob of
float32 values with their item ids as a JSON list.
"""

from __future__ import annotations

import io
import math
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session

from common.processes import pid_alive
from storage.base import DEFAULT_BACKEND
from storage.db import StorageError
from storage.models import (
    ALIAS_COLUMN_LEN,
    DATASET_KINDS,
    RUN_KINDS,
    RUN_STATUSES,
    Checkpoint,
    Dataset,
    ItemScores,
    Result,
    Run,
    utc_now,
)
from storage.upsert import plain_json, upsert

FINAL_STATUSES: tuple[str, ...] = ("completed", "failed", "interrupted", "cancelled")
RESUMABLE_STATUSES: tuple[str, ...] = ("interrupted", "failed")
DEFAULT_STALE_AFTER_S = 3600.0
RESULT_COLUMNS: tuple[str, ...] = (
    "checkpoint",
    "checkpoint_fp",
    "dataset",
    "dataset_fp",
    "split",
    "layer",
    "dim",
    "precision",
    "metric",
    "value",
    "run_id",
    "backend",
)


class NotFoundError(StorageError, LookupError):
    """A checkpoint, dataset or run named by the caller is not in the database."""


class AliasTakenError(StorageError):
    """A display name another checkpoint already has."""


# ---------------------------------------------------------------- records returned to callers


@dataclass(frozen=True)
class CheckpointRecord:
    """A stored checkpoint. ``info`` is the full description given at registration."""

    name: str
    kind: str
    location: str
    revision: str | None
    fingerprint: str
    path: str
    num_layers: int
    hidden_size: int
    embedding_dim: int
    pooling: str
    similarity: str
    max_seq_length: int
    info: dict[str, Any]
    training_card: dict[str, Any] | None
    created_at: datetime
    alias: str | None = None  # the display name (core.lab.registry.display_name); None: not stored


@dataclass(frozen=True)
class DatasetRecord:
    """A stored dataset split."""

    name: str
    kind: str
    path: str
    split: str
    fingerprint: str
    n_items: int
    info: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """A stored run with the names of its checkpoint and dataset."""

    id: int
    kind: str
    status: str
    checkpoint_fp: str
    checkpoint_name: str
    dataset_fp: str | None
    dataset_name: str | None
    params: dict[str, Any]
    cells_total: int
    cells_done: int
    provenance: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    wall_time_s: float | None
    error_text: str | None
    pid: int | None
    host: str | None
    heartbeat_at: datetime | None


@dataclass(frozen=True)
class ResultRow:
    """One metric value of one cell, as given to :func:`upsert_results` (NaN allowed)."""

    checkpoint_fp: str
    dataset_fp: str
    split: str
    layer: int
    dim: int
    precision: str
    metric: str
    value: float
    backend: str = DEFAULT_BACKEND


class ItemScoresRecord(NamedTuple):
    """Per-item scores of one cell: ``ids[i]`` scored ``values[i]`` (unpacks as ``ids, values``)."""

    ids: list[str]
    values: np.ndarray


# ---------------------------------------------------------------- helpers


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetime (SQLite returns naive values of what was stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _checkpoint_record(row: Checkpoint) -> CheckpointRecord:
    return CheckpointRecord(
        name=row.name,
        kind=row.kind,
        location=row.location,
        revision=row.revision,
        fingerprint=row.fingerprint,
        path=row.path,
        num_layers=row.num_layers,
        hidden_size=row.hidden_size,
        embedding_dim=row.embedding_dim,
        pooling=row.pooling,
        similarity=row.similarity,
        max_seq_length=row.max_seq_length,
        info=dict(row.info or {}),
        training_card=dict(row.training_card) if row.training_card is not None else None,
        created_at=_aware(row.created_at),
        alias=row.alias,
    )


def _dataset_record(row: Dataset) -> DatasetRecord:
    return DatasetRecord(
        name=row.name,
        kind=row.kind,
        path=row.path,
        split=row.split,
        fingerprint=row.fingerprint,
        n_items=row.n_items,
        info=dict(row.info or {}),
        created_at=_aware(row.created_at),
    )


# ---------------------------------------------------------------- checkpoints


def upsert_checkpoint(
    s: Session,
    *,
    name: str,
    kind: str,
    location: str,
    revision: str | None,
    fingerprint: str,
    path: str,
    num_layers: int,
    hidden_size: int,
    embedding_dim: int,
    pooling: str,
    similarity: str,
    max_seq_length: int,
    info: Mapping[str, Any] | None = None,
    alias: str | None = None,
) -> CheckpointRecord:
    """Register (or refresh) a checkpoint by fingerprint; ``info`` is its full description (JSON).

    An existing training card and display name are kept. A new checkpoint (or one stored without a
    display name) gets ``alias``, made unique with a fingerprint prefix (``name@1a2b3c``) when another
    checkpoint already has it.
    """
    row = {
        "name": name,
        "kind": kind,
        "location": str(location),
        "revision": revision,
        "fingerprint": fingerprint,
        "path": str(path),
        "num_layers": int(num_layers),
        "hidden_size": int(hidden_size),
        "embedding_dim": int(embedding_dim),
        "pooling": pooling,
        "similarity": similarity,
        "max_seq_length": int(max_seq_length),
        "info": plain_json(dict(info or {})),
        "created_at": utc_now(),
    }
    updatable = [k for k in row if k not in {"fingerprint", "created_at"}]
    upsert(s, Checkpoint, [row], key=["fingerprint"], update_columns=updatable)
    stored = _load_checkpoint(s, fingerprint)
    if stored.alias is None and alias:
        stored.alias = _free_alias(s, alias[:ALIAS_COLUMN_LEN], fingerprint)
        s.flush()
    return _checkpoint_record(stored)


def _free_alias(s: Session, wanted: str, fingerprint: str) -> str:
    """``wanted`` if no other checkpoint has it, else ``wanted@<fingerprint prefix>``."""
    for candidate in (wanted, f"{wanted}@{fingerprint[:6]}", f"{wanted}@{fingerprint[:12]}", fingerprint):
        owner = s.scalar(select(Checkpoint.fingerprint).where(Checkpoint.alias == candidate))
        if owner is None or owner == fingerprint:
            return candidate
    return f"{wanted}@{fingerprint}"


def set_checkpoint_alias(s: Session, fingerprint: str, alias: str) -> CheckpointRecord:
    """Give a stored checkpoint a new display name (validated by the caller).

    Raises:
        NotFoundError: no checkpoint has this fingerprint (or name).
        AliasTakenError: another checkpoint has this display name.
    """
    row = _load_checkpoint(s, fingerprint)
    owner = s.scalar(select(Checkpoint).where(Checkpoint.alias == alias, Checkpoint.id != row.id))
    if owner is not None:
        raise AliasTakenError(f"the display name {alias!r} is taken by another checkpoint ({owner.name})")
    row.alias = alias
    s.flush()
    return _checkpoint_record(row)


def list_checkpoints(s: Session) -> list[CheckpointRecord]:
    """Every stored checkpoint, by name then registration time."""
    rows = s.scalars(select(Checkpoint).order_by(Checkpoint.name, Checkpoint.created_at))
    return [_checkpoint_record(r) for r in rows]


def _find_checkpoint(s: Session, name_or_fingerprint: str) -> Checkpoint | None:
    by_fp = select(Checkpoint).where(Checkpoint.fingerprint == name_or_fingerprint)
    row = s.scalars(by_fp.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        by_name = (
            select(Checkpoint)
            .where(Checkpoint.name == name_or_fingerprint)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            .limit(1)
        )
        row = s.scalars(by_name.execution_options(populate_existing=True)).first()
    return row


def _load_checkpoint(s: Session, name_or_fingerprint: str) -> Checkpoint:
    row = _find_checkpoint(s, name_or_fingerprint)
    if row is None:
        raise NotFoundError(f"no checkpoint {name_or_fingerprint!r} in the database")
    return row


def get_checkpoint(s: Session, name_or_fingerprint: str) -> CheckpointRecord | None:
    """The checkpoint with this fingerprint, else the latest registered under this name; None if absent."""
    row = _find_checkpoint(s, name_or_fingerprint)
    return _checkpoint_record(row) if row is not None else None


def set_training_card(s: Session, fingerprint: str, card: Mapping[str, Any]) -> CheckpointRecord:
    """Attach a training card (how the checkpoint was trained) to a stored checkpoint.

    Raises:
        NotFoundError: no checkpoint has this fingerprint (or name).
    """
    row = _load_checkpoint(s, fingerprint)
    row.training_card = plain_json(dict(card))
    s.flush()
    return _checkpoint_record(row)


# ---------------------------------------------------------------- datasets


def upsert_dataset(
    s: Session,
    *,
    name: str,
    kind: str,
    path: str,
    split: str,
    fingerprint: str,
    n_items: int,
    info: Mapping[str, Any] | None = None,
) -> DatasetRecord:
    """Register (or refresh) a dataset split by fingerprint.

    Raises:
        StorageError: ``kind`` is not ``sts`` or ``retrieval``.
    """
    if kind not in DATASET_KINDS:
        raise StorageError(f"dataset kind {kind!r} is not one of {', '.join(DATASET_KINDS)}")
    row = {
        "name": name,
        "kind": kind,
        "path": str(path),
        "split": split,
        "fingerprint": fingerprint,
        "n_items": int(n_items),
        "info": plain_json(dict(info or {})),
        "created_at": utc_now(),
    }
    upsert(
        s,
        Dataset,
        [row],
        key=["fingerprint"],
        # A dataset is its content: the first name and split stay (results keep their key and name);
        # later names are aliases found through their content (core.lab.catalog).
        update_columns=["path", "n_items", "info"],
    )
    found = _find_dataset(s, fingerprint)
    if found is None:  # pragma: no cover - just written in this transaction
        raise NotFoundError(f"dataset {fingerprint!r} vanished during upsert")
    return _dataset_record(found)


def list_datasets(s: Session) -> list[DatasetRecord]:
    """Every stored dataset split, by name then registration time."""
    rows = s.scalars(select(Dataset).order_by(Dataset.name, Dataset.created_at))
    return [_dataset_record(r) for r in rows]


def _find_dataset(s: Session, name_or_fingerprint: str) -> Dataset | None:
    by_fp = select(Dataset).where(Dataset.fingerprint == name_or_fingerprint)
    row = s.scalars(by_fp.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        by_name = (
            select(Dataset)
            .where(Dataset.name == name_or_fingerprint)
            .order_by(Dataset.created_at.desc(), Dataset.id.desc())
            .limit(1)
        )
        row = s.scalars(by_name.execution_options(populate_existing=True)).first()
    return row


def get_dataset(s: Session, name_or_fingerprint: str) -> DatasetRecord | None:
    """The dataset with this fingerprint, else the latest registered under this name; None if absent."""
    row = _find_dataset(s, name_or_fingerprint)
    return _dataset_record(row) if row is not None else None


# ---------------------------------------------------------------- runs


def _runs_query() -> Select[Run, str, str]:  # the dataset name is None for runs without one
    return (
        select(Run, Checkpoint.name, Dataset.name)
        .join(Checkpoint, Checkpoint.fingerprint == Run.checkpoint_fp)
        .outerjoin(Dataset, Dataset.fingerprint == Run.dataset_fp)
        .execution_options(populate_existing=True)
    )


def _run_record(run: Run, checkpoint_name: str, dataset_name: str | None) -> RunRecord:
    return RunRecord(
        id=run.id,
        kind=run.kind,
        status=run.status,
        checkpoint_fp=run.checkpoint_fp,
        checkpoint_name=checkpoint_name,
        dataset_fp=run.dataset_fp,
        dataset_name=dataset_name,
        params=dict(run.params or {}),
        cells_total=run.cells_total,
        cells_done=run.cells_done,
        provenance=dict(run.provenance or {}),
        started_at=_aware(run.started_at),
        ended_at=_utc(run.ended_at),
        wall_time_s=run.wall_time_s,
        error_text=run.error_text,
        pid=run.pid,
        host=run.host,
        heartbeat_at=_utc(run.heartbeat_at),
    )


def _load_run(s: Session, run_id: int) -> Run:
    run = s.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFoundError(f"no run {run_id} in the database")
    return run


def get_run(s: Session, run_id: int) -> RunRecord | None:
    """One run by id, or None."""
    s.flush()
    found = s.execute(_runs_query().where(Run.id == run_id)).one_or_none()
    return _run_record(*found) if found is not None else None


def _require_run(s: Session, run_id: int) -> RunRecord:
    record = get_run(s, run_id)
    if record is None:
        raise NotFoundError(f"no run {run_id} in the database")
    return record


def this_host() -> str:
    """The host name recorded with runs (liveness of a pid is only judged on the same host)."""
    return socket.gethostname()


def start_run(
    s: Session,
    kind: str,
    checkpoint_fp: str,
    dataset_fp: str | None,
    params: Mapping[str, Any],
    cells_total: int,
    provenance: Mapping[str, Any],
    *,
    pid: int | None = None,
    host: str | None = None,
) -> RunRecord:
    """Record a new 'running' run owned by ``pid`` (default: this process) on ``host`` (default: this one).

    Raises:
        StorageError: unknown kind.
        NotFoundError: the checkpoint or dataset is not registered.
    """
    if kind not in RUN_KINDS:
        raise StorageError(f"run kind {kind!r} is not one of {', '.join(RUN_KINDS)}")
    if s.scalar(select(func.count()).where(Checkpoint.fingerprint == checkpoint_fp)) == 0:
        raise NotFoundError(f"no checkpoint with fingerprint {checkpoint_fp!r}; register it first")
    if (
        dataset_fp is not None
        and s.scalar(select(func.count()).where(Dataset.fingerprint == dataset_fp)) == 0
    ):
        raise NotFoundError(f"no dataset with fingerprint {dataset_fp!r}; register it first")
    now = utc_now()
    run = Run(
        kind=kind,
        checkpoint_fp=checkpoint_fp,
        dataset_fp=dataset_fp,
        status="running",
        params=plain_json(dict(params)),
        cells_total=int(cells_total),
        cells_done=0,
        provenance=plain_json(dict(provenance)),
        started_at=now,
        pid=os.getpid() if pid is None else int(pid),
        host=this_host() if host is None else host,
        heartbeat_at=now,
    )
    s.add(run)
    s.flush()
    return _require_run(s, run.id)


def heartbeat(s: Session, run_id: int) -> None:
    """Mark a run as alive now (call during long cells)."""
    s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utc_now()))


def record_progress(s: Session, run_id: int, cells_done: int, cells_total: int | None = None) -> None:
    """Store how many cells a run has finished (and optionally a new total); also a heartbeat.

    Raises:
        NotFoundError: no such run.
    """
    values: dict[str, Any] = {"cells_done": int(cells_done), "heartbeat_at": utc_now()}
    if cells_total is not None:
        values["cells_total"] = int(cells_total)
    done = s.execute(update(Run).where(Run.id == run_id).values(**values))
    if getattr(done, "rowcount", 1) == 0:
        raise NotFoundError(f"no run {run_id} in the database")


def finish_run(s: Session, run_id: int, status: str, error_text: str | None = None) -> RunRecord:
    """End a run: status, ``ended_at``, ``wall_time_s`` (end - start) and any error text.

    Raises:
        StorageError: ``status`` is not a final status.
        NotFoundError: no such run.
    """
    if status not in FINAL_STATUSES:
        raise StorageError(f"final run status {status!r} is not one of {', '.join(FINAL_STATUSES)}")
    run = _load_run(s, run_id)
    now = utc_now()
    run.status = status
    run.ended_at = now
    run.heartbeat_at = now
    run.wall_time_s = (now - _aware(run.started_at)).total_seconds()
    run.error_text = error_text
    s.flush()
    return _require_run(s, run_id)


def resume_run(
    s: Session,
    run_id: int,
    cells_done: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Set a stopped run running again in this process (its stored cells are kept).

    ``cells_done`` (if given) replaces the stored count, e.g. with the cells found in the database.
    A new ``provenance`` (of the resuming process) is appended to ``provenance["resumed"]``.

    Raises:
        NotFoundError: no such run.
    """
    run = _load_run(s, run_id)
    now = utc_now()
    run.status = "running"
    run.ended_at = None
    run.wall_time_s = None
    run.error_text = None
    run.pid = os.getpid()
    run.host = this_host()
    run.heartbeat_at = now
    if cells_done is not None:
        run.cells_done = int(cells_done)
    if provenance is not None:
        merged = dict(run.provenance or {})
        merged["resumed"] = [*merged.get("resumed", []), plain_json(dict(provenance))]
        run.provenance = merged
    s.flush()
    return _require_run(s, run_id)


def mark_interrupted_runs(s: Session, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> int:
    """Mark 'running' runs whose process is gone as 'interrupted'; return how many.

    On this host a run is gone when its pid is not alive (or was reused by a newer process). A run on
    another host (shared PostgreSQL) is gone when its heartbeat is older than ``stale_after_s``.
    """
    now = utc_now()
    host = this_host()
    count = 0
    for run in s.scalars(select(Run).where(Run.status == "running")):
        started = _aware(run.started_at)
        beat = _utc(run.heartbeat_at) or started
        if run.host == host and run.pid is not None:
            gone = not pid_alive(run.pid, started.timestamp())
        else:
            gone = (now - beat).total_seconds() > stale_after_s
        if gone:
            run.status = "interrupted"
            run.ended_at = beat
            run.wall_time_s = (beat - started).total_seconds()
            run.error_text = run.error_text or (
                f"process {run.pid} on {run.host} stopped without finishing (last heartbeat {beat.isoformat()})"
            )
            count += 1
    s.flush()
    return count


def find_resumable_run(
    s: Session,
    kind: str,
    checkpoint_fp: str,
    dataset_fp: str | None,
    params: Mapping[str, Any],
) -> RunRecord | None:
    """The latest interrupted or failed run of the same kind, checkpoint, dataset and params, if any.

    Call :func:`mark_interrupted_runs` first so dead 'running' runs count as interrupted.
    """
    wanted = plain_json(dict(params))
    query = (
        _runs_query()
        .where(Run.kind == kind, Run.checkpoint_fp == checkpoint_fp, Run.status.in_(RESUMABLE_STATUSES))
        .order_by(Run.started_at.desc(), Run.id.desc())
    )
    query = query.where(Run.dataset_fp.is_(None) if dataset_fp is None else Run.dataset_fp == dataset_fp)
    for run, ck_name, ds_name in s.execute(query):
        if run.params == wanted:
            return _run_record(run, ck_name, ds_name)
    return None


def list_runs(
    s: Session,
    status: str | None = None,
    checkpoint: str | None = None,
    dataset: str | None = None,
    kind: str | None = None,
) -> list[RunRecord]:
    """Runs, newest first; ``checkpoint``/``dataset`` match a name or a fingerprint."""
    if status is not None and status not in RUN_STATUSES:
        raise StorageError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
    query = _runs_query()
    if status is not None:
        query = query.where(Run.status == status)
    if kind is not None:
        query = query.where(Run.kind == kind)
    if checkpoint is not None:
        query = query.where(or_(Checkpoint.name == checkpoint, Checkpoint.fingerprint == checkpoint))
    if dataset is not None:
        query = query.where(or_(Dataset.name == dataset, Dataset.fingerprint == dataset))
    query = query.order_by(Run.started_at.desc(), Run.id.desc())
    return [_run_record(*row) for row in s.execute(query)]


def delete_run(s: Session, run_id: int) -> None:
    """Delete a run with the results and item scores it wrote.

    Raises:
        NotFoundError: no such run.
    """
    _load_run(s, run_id)
    s.execute(delete(ItemScores).where(ItemScores.run_id == run_id))
    s.execute(delete(Result).where(Result.run_id == run_id))
    s.execute(delete(Run).where(Run.id == run_id))
    s.expire_all()


# ---------------------------------------------------------------- results


def _result_dict(run_id: int, row: ResultRow | Mapping[str, Any], now: datetime) -> dict[str, Any]:
    get = (lambda k: getattr(row, k)) if isinstance(row, ResultRow) else row.__getitem__
    value = get("value")
    value = None if value is None else float(value)
    if value is not None and math.isnan(value):
        value = None
    return {
        "run_id": run_id,
        "checkpoint_fp": str(get("checkpoint_fp")),
        "dataset_fp": str(get("dataset_fp")),
        "split": str(get("split")),
        "layer": int(get("layer")),
        "dim": int(get("dim")),
        "precision": str(get("precision")),
        "backend": str(row.backend if isinstance(row, ResultRow) else row.get("backend", DEFAULT_BACKEND)),
        "metric": str(get("metric")),
        "value": value,
        "created_at": now,
    }


def upsert_results(s: Session, run_id: int, rows: Iterable[ResultRow | Mapping[str, Any]]) -> int:
    """Store metric values (NaN as NULL), replacing any stored value of the same natural key.

    Each row has checkpoint_fp, dataset_fp, split, layer, dim, precision, metric, value and optionally
    backend (default torch). Returns the number of rows written.
    """
    now = utc_now()
    payload = [_result_dict(run_id, row, now) for row in rows]
    upsert(
        s,
        Result,
        payload,
        key=["checkpoint_fp", "dataset_fp", "split", "layer", "dim", "precision", "backend", "metric"],
        update_columns=["value", "run_id", "created_at"],
    )
    return len(payload)


def results_frame(
    s: Session,
    checkpoint_fp: str | None = None,
    dataset_fp: str | None = None,
    split: str | None = None,
    precision: str | None = None,
    metric: str | None = None,
    run_id: int | None = None,
    backend: str | None = DEFAULT_BACKEND,
) -> pd.DataFrame:
    """Stored results as a DataFrame with columns :data:`RESULT_COLUMNS` (NULL restored to NaN).

    ``backend`` defaults to torch, so a caller that does not ask sees one row per cell and metric;
    ``None`` returns every backend.
    """
    query = (
        select(
            Checkpoint.name,
            Result.checkpoint_fp,
            Dataset.name,
            Result.dataset_fp,
            Result.split,
            Result.layer,
            Result.dim,
            Result.precision,
            Result.metric,
            Result.value,
            Result.run_id,
            Result.backend,
        )
        .join(Checkpoint, Checkpoint.fingerprint == Result.checkpoint_fp)
        .join(Dataset, Dataset.fingerprint == Result.dataset_fp)
    )
    filters = {
        Result.checkpoint_fp: checkpoint_fp,
        Result.dataset_fp: dataset_fp,
        Result.split: split,
        Result.precision: precision,
        Result.metric: metric,
        Result.run_id: run_id,
        Result.backend: backend,
    }
    for column, wanted in filters.items():
        if wanted is not None:
            query = query.where(column == wanted)
    query = query.order_by(
        Checkpoint.name,
        Dataset.name,
        Result.split,
        Result.layer,
        Result.dim,
        Result.precision,
        Result.backend,
        Result.metric,
    )
    rows = [tuple(r) for r in s.execute(query)]
    frame = pd.DataFrame.from_records(rows, columns=list(RESULT_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    for name in ("layer", "dim", "run_id"):
        frame[name] = frame[name].astype("int64")
    return frame


def stored_backends(s: Session, checkpoint_fp: str, dataset_fp: str | None = None) -> list[str]:
    """Backends with stored results of a checkpoint (on one dataset when given), torch first."""
    query = select(Result.backend).where(Result.checkpoint_fp == checkpoint_fp).distinct()
    if dataset_fp is not None:
        query = query.where(Result.dataset_fp == dataset_fp)
    found = {str(b) for b in s.scalars(query)}
    return sorted(found, key=lambda b: (b != DEFAULT_BACKEND, b))


def done_cells(
    s: Session,
    checkpoint_fp: str,
    dataset_fp: str,
    split: str,
    metric: str,
    backend: str = DEFAULT_BACKEND,
) -> set[tuple[int, int, str]]:
    """``(layer, dim, precision)`` of every cell of ``backend`` with a stored ``metric`` value (NaN counts)."""
    query = select(Result.layer, Result.dim, Result.precision).where(
        Result.checkpoint_fp == checkpoint_fp,
        Result.dataset_fp == dataset_fp,
        Result.split == split,
        Result.metric == metric,
        Result.backend == backend,
    )
    return {(int(layer), int(dim), str(prec)) for layer, dim, prec in s.execute(query)}


# ---------------------------------------------------------------- item scores


def _encode_values(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _decode_values(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def put_item_scores(
    s: Session,
    *,
    run_id: int,
    checkpoint_fp: str,
    dataset_fp: str,
    split: str,
    layer: int,
    dim: int,
    precision: str,
    kind: str,
    ids: Sequence[str],
    values: np.ndarray,
    backend: str = DEFAULT_BACKEND,
) -> None:
    """Store per-item scores of one cell (e.g. kind ``pair_similarity``, ``query_ndcg_at_10``) as float32.

    Raises:
        StorageError: ``values`` does not have one row per id.
    """
    array = np.asarray(values)
    if array.ndim < 1 or array.shape[0] != len(ids):
        raise StorageError(f"item scores {kind!r}: {len(ids)} ids but values of shape {tuple(array.shape)}")
    row = {
        "run_id": run_id,
        "checkpoint_fp": checkpoint_fp,
        "dataset_fp": dataset_fp,
        "split": split,
        "layer": int(layer),
        "dim": int(dim),
        "precision": precision,
        "backend": backend,
        "kind": kind,
        "n_items": len(ids),
        "ids": [str(i) for i in ids],
        "values_npy": _encode_values(array),
        "created_at": utc_now(),
    }
    upsert(
        s,
        ItemScores,
        [row],
        key=["checkpoint_fp", "dataset_fp", "split", "layer", "dim", "precision", "backend", "kind"],
        update_columns=["run_id", "n_items", "ids", "values_npy", "created_at"],
    )


def get_item_scores(
    s: Session,
    *,
    checkpoint_fp: str,
    dataset_fp: str,
    split: str,
    layer: int,
    dim: int,
    precision: str,
    kind: str,
    backend: str = DEFAULT_BACKEND,
) -> ItemScoresRecord | None:
    """The stored per-item scores of one cell, or None."""
    found = s.execute(
        select(ItemScores.ids, ItemScores.values_npy).where(
            ItemScores.checkpoint_fp == checkpoint_fp,
            ItemScores.dataset_fp == dataset_fp,
            ItemScores.split == split,
            ItemScores.layer == int(layer),
            ItemScores.dim == int(dim),
            ItemScores.precision == precision,
            ItemScores.backend == backend,
            ItemScores.kind == kind,
        )
    ).one_or_none()
    if found is None:
        return None
    ids, blob = found
    return ItemScoresRecord(ids=[str(i) for i in ids], values=_decode_values(bytes(blob)))
