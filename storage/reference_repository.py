"""Reads and writes of reference models (published MTEB results); every function takes a ``Session``.

Scope: storing what ``core.mteb`` parsed (models per revision with their own meta, one result per task
file with path + sha256, its scores) and reading it back as plain values and DataFrames. No parsing,
no rules: which meta figure wins and which revision a plot shows are ``core.mteb``'s.
Writes use plain multi-row statements (the import of the whole public results repository writes
about two million scores); the callers own the transaction (``with Session() as s, s.begin():``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from typing import Any

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.orm import Session

from storage.reference_models import ReferenceImport, ReferenceModel, ReferenceResult, ReferenceScore

SCORE_COLUMNS: tuple[str, ...] = (
    "model",
    "revision",
    "task",
    "split",
    "subset",
    "metric",
    "value",
    "mteb_version",
    "source",
    "sha256",
)
_CHUNK = 5000  # rows per executemany batch
_SQLITE_CACHE_KIB = 256 * 1024  # page cache of a connection writing scores (kept by the pooled connection)
_RESULT_COLUMNS = ("model_id", "task", "source_path", "sha256", "mteb_version", "dataset_revision")
# One task file's scores as columns: (splits, subsets, metrics, values), all the same length.
ScoreColumns = tuple[Sequence[str], Sequence[str], Sequence[str], Sequence[float | None]]


@dataclass(frozen=True)
class ReferenceModelRecord:
    """One (model, revision) folder with its own meta figures as published."""

    id: int
    name: str
    revision: str
    embed_dim: int | None
    n_parameters: int | None
    max_tokens: int | None
    similarity: str | None
    meta_path: str | None
    meta_sha256: str | None


@dataclass(frozen=True)
class StoredResult:
    """What is stored of one task file: its id, path and sha256."""

    id: int
    source_path: str
    sha256: str
    file_size: int | None = None
    file_mtime_ns: int | None = None


@dataclass(frozen=True)
class ImportRecord:
    """One logged import."""

    id: int
    root: str
    files_seen: int
    files_changed: int
    files_failed: int
    scores_written: int
    wall_time_s: float
    errors: list[Any]
    imported_at: datetime


def _model_record(row: ReferenceModel) -> ReferenceModelRecord:
    return ReferenceModelRecord(
        id=row.id,
        name=row.name,
        revision=row.revision,
        embed_dim=row.embed_dim,
        n_parameters=row.n_parameters,
        max_tokens=row.max_tokens,
        similarity=row.similarity,
        meta_path=row.meta_path,
        meta_sha256=row.meta_sha256,
    )


def model_ids(s: Session) -> dict[tuple[str, str], int]:
    """(name, revision) -> id of every stored reference model revision."""
    rows = s.execute(select(ReferenceModel.name, ReferenceModel.revision, ReferenceModel.id))
    return {(name, revision): int(id_) for name, revision, id_ in rows}


def ensure_models(s: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Insert the (name, revision) rows that do not exist yet; returns the id of every stored one."""
    known = model_ids(s)
    new = sorted({k for k in keys if k not in known})
    for start in range(0, len(new), _CHUNK):
        s.execute(
            insert(ReferenceModel), [{"name": n, "revision": r} for n, r in new[start : start + _CHUNK]]
        )
    return model_ids(s) if new else known


def set_model_meta(s: Session, model_id: int, meta: Mapping[str, Any]) -> bool:
    """Store a revision's meta figures (embed_dim, n_parameters, max_tokens, similarity, meta_path,
    meta_sha256); returns False when the same meta file (by sha256) is stored already."""
    row = s.get(ReferenceModel, model_id)
    if row is None:
        raise LookupError(f"no reference model with id {model_id}")
    if row.meta_sha256 == meta.get("meta_sha256"):
        return False
    for key in ("embed_dim", "n_parameters", "max_tokens", "similarity", "meta_path", "meta_sha256"):
        setattr(row, key, meta.get(key))
    return True


def stored_results(s: Session) -> dict[tuple[int, str], StoredResult]:
    """(model_id, task) -> stored path, sha256, size and mtime of every task file."""
    rows = s.execute(
        select(
            ReferenceResult.model_id,
            ReferenceResult.task,
            ReferenceResult.id,
            ReferenceResult.source_path,
            ReferenceResult.sha256,
            ReferenceResult.file_size,
            ReferenceResult.file_mtime_ns,
        )
    )
    return {(int(m), t): StoredResult(int(i), p, h, z, n) for m, t, i, p, h, z, n in rows}


def set_file_stats(s: Session, stats: Sequence[tuple[int, int, int]]) -> None:
    """Record (result id, size, mtime_ns) of task files read again and found unchanged (same sha256)."""
    connection = s.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = f"UPDATE reference_results SET file_size = {mark}, file_mtime_ns = {mark} WHERE id = {mark}"
    rows = [(size, mtime_ns, result_id) for result_id, size, mtime_ns in stats]
    for start in range(0, len(rows), _CHUNK):
        connection.exec_driver_sql(sql, rows[start : start + _CHUNK])


def replace_results(s: Session, results: Sequence[Mapping[str, Any]], scores: Sequence[ScoreColumns]) -> int:
    """Store task files and their scores, replacing whatever was stored for the same (model_id, task).

    ``results[i]`` has model_id, task, source_path, sha256, mteb_version, dataset_revision (and optionally
    file_size, file_mtime_ns);
    ``scores[i]`` its scores as four equal-length columns: (splits, subsets, metrics, values), row ``j``
    being ``splits[j], subsets[j], metrics[j], values[j]``. Returns the number of scores written.
    """
    if not results:
        return 0
    keys = {(int(r["model_id"]), str(r["task"])) for r in results}
    stored = {
        (int(m), t): int(i)
        for m, t, i in s.execute(
            select(ReferenceResult.model_id, ReferenceResult.task, ReferenceResult.id).where(
                ReferenceResult.model_id.in_({m for m, _ in keys})
            )
        )
        if (int(m), t) in keys
    }
    old = list(stored.values())
    for start in range(0, len(old), _CHUNK):  # explicit: SQLite cascades only with foreign_keys=ON
        chunk = old[start : start + _CHUNK]
        s.execute(delete(ReferenceScore).where(ReferenceScore.result_id.in_(chunk)))
        s.execute(delete(ReferenceResult).where(ReferenceResult.id.in_(chunk)))
    connection = s.connection()
    if connection.dialect.name == "sqlite":  # the score indexes outgrow SQLite's 2 MB default page cache
        connection.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
    columns = (*_RESULT_COLUMNS, "file_size", "file_mtime_ns")
    _insert_rows(connection, "reference_results", columns, [tuple(map(r.get, columns)) for r in results])
    new_ids = {
        (int(m), t): int(i)
        for m, t, i in s.execute(
            select(ReferenceResult.model_id, ReferenceResult.task, ReferenceResult.id).where(
                ReferenceResult.model_id.in_({m for m, _ in keys})
            )
        )
    }
    ids = [new_ids[(int(r["model_id"]), str(r["task"]))] for r in results]
    payload = list(  # rows built in C (zip), not a Python loop per score
        chain.from_iterable(
            zip(repeat(rid, len(columns[0])), *columns, strict=True)
            for rid, columns in zip(ids, scores, strict=True)
        )
    )
    _insert_rows(connection, "reference_scores", ("result_id", "split", "subset", "metric", "value"), payload)
    return len(payload)


def _insert_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert plain tuples: ``COPY .. FROM STDIN`` on PostgreSQL through psycopg (the whole public results
    repository: 94 s with executemany, whose rows each wait on the server), else DBAPI executemany (the
    ORM's per-row bookkeeping tripled the time of a full import, and INSERT .. RETURNING in parameter order
    ran one statement per row on SQLite)."""
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        raw: Any = connection.connection.dbapi_connection  # psycopg's, in the same transaction
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    for start in range(0, len(rows), _CHUNK):
        connection.exec_driver_sql(sql, rows[start : start + _CHUNK])


def log_import(s: Session, **fields: Any) -> int:
    """Record one import (root, files_seen, files_changed, files_failed, scores_written, wall_time_s, errors)."""
    row = ReferenceImport(**fields)
    s.add(row)
    s.flush()
    return int(row.id)


def imports(s: Session, root: str | None = None) -> list[ImportRecord]:
    """Logged imports, newest first (only those of ``root`` when given)."""
    query = select(ReferenceImport).order_by(ReferenceImport.id.desc())
    if root is not None:
        query = query.where(ReferenceImport.root == root)
    return [
        ImportRecord(
            r.id,
            r.root,
            r.files_seen,
            r.files_changed,
            r.files_failed,
            r.scores_written,
            r.wall_time_s,
            list(r.errors or []),
            r.imported_at,
        )
        for r in s.scalars(query)
    ]


def list_models(s: Session) -> list[ReferenceModelRecord]:
    """Every stored (model, revision), by name then revision."""
    query = select(ReferenceModel).order_by(ReferenceModel.name, ReferenceModel.revision)
    return [_model_record(r) for r in s.scalars(query)]


def task_counts(s: Session) -> dict[str, int]:
    """Model name -> how many distinct tasks it has stored (over all its revisions)."""
    query = (
        select(ReferenceModel.name, func.count(func.distinct(ReferenceResult.task)))
        .join(ReferenceResult, ReferenceResult.model_id == ReferenceModel.id)
        .group_by(ReferenceModel.name)
    )
    return {name: int(n) for name, n in s.execute(query)}


def count_scores(s: Session) -> int:
    """How many reference scores are stored."""
    return int(s.scalar(select(func.count()).select_from(ReferenceScore)) or 0)


def scores_frame(
    s: Session,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    split: str | None = None,
    subset: str | None = None,
) -> pd.DataFrame:
    """Stored scores with :data:`SCORE_COLUMNS` (value NULL -> NaN), filtered, sorted by model, revision, task."""
    query = (
        select(
            ReferenceModel.name,
            ReferenceModel.revision,
            ReferenceResult.task,
            ReferenceScore.split,
            ReferenceScore.subset,
            ReferenceScore.metric,
            ReferenceScore.value,
            ReferenceResult.mteb_version,
            ReferenceResult.source_path,
            ReferenceResult.sha256,
        )
        .join(ReferenceResult, ReferenceResult.id == ReferenceScore.result_id)
        .join(ReferenceModel, ReferenceModel.id == ReferenceResult.model_id)
    )
    if models:
        query = query.where(ReferenceModel.name.in_(list(models)))
    if tasks:
        query = query.where(ReferenceResult.task.in_(list(tasks)))
    if metrics:
        query = query.where(ReferenceScore.metric.in_(list(metrics)))
    if split is not None:
        query = query.where(ReferenceScore.split == split)
    if subset is not None:
        query = query.where(ReferenceScore.subset == subset)
    query = query.order_by(
        ReferenceModel.name,
        ReferenceModel.revision,
        ReferenceResult.task,
        ReferenceScore.split,
        ReferenceScore.subset,
        ReferenceScore.metric,
    )
    frame = pd.DataFrame.from_records([tuple(r) for r in s.execute(query)], columns=list(SCORE_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame
