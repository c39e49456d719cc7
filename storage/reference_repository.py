"""Reads and writes of reference models (published MTEB results); every function takes a ``Session``.

Scope: storing what ``core.mteb`` parsed (models per revision with their own meta, one result per task
file with path + sha256 and its scores packed, :func:`pack_scores`) and reading it back as plain values
and DataFrames (:func:`scores_frame` unpacks). No parsing, no rules: which meta figure wins and which
revision a plot shows are ``core.mteb``'s. Writes use plain multi-row statements or COPY (the import of
the whole public results repository writes ~100,000 task files holding ~2 million scores); the callers
own the transaction (``with Session() as s, s.begin():``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.orm import Session

from storage.reference_models import ReferenceImport, ReferenceModel, ReferenceResult

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
_ROW_KEY = itemgetter(0, 1, 2)  # (split, subset, metric) of a packed score row
_RESULT_COLUMNS = ("model_id", "task", "source_path", "sha256", "mteb_version", "dataset_revision", "file_size",
                   "file_mtime_ns", "scores", "n_scores")  # fmt: skip
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
    _execute_batches(
        s.connection(),
        "UPDATE reference_results SET file_size = ?, file_mtime_ns = ? WHERE id = ?",
        [(size, mtime_ns, result_id) for result_id, size, mtime_ns in stats],
    )


def pack_scores(columns: ScoreColumns) -> tuple[str, int]:
    """A task file's score columns as stored (``reference_results.scores``: JSON ``[[split, subset, metric,
    value], ...]``, None as null) and their count.

    >>> pack_scores((("test", "test"), ("default", "en"), ("main_score", "main_score"), (0.85863, None)))
    ('[["test","default","main_score",0.85863],["test","en","main_score",null]]', 2)
    """
    rows = list(zip(*columns, strict=True))
    return orjson.dumps(rows).decode(), len(rows)


def replace_results(s: Session, results: Sequence[Mapping[str, Any]]) -> int:
    """Store task files with their scores, replacing whatever was stored for the same (model_id, task).

    ``results[i]`` has model_id, task, source_path, sha256, mteb_version, dataset_revision, ``scores`` and
    ``n_scores`` (:func:`pack_scores`), and optionally file_size, file_mtime_ns. Returns the number of
    scores written.
    """
    if not results:
        return 0
    keys = {(int(r["model_id"]), str(r["task"])) for r in results}
    old = [
        int(i)
        for m, t, i in s.execute(
            select(ReferenceResult.model_id, ReferenceResult.task, ReferenceResult.id).where(
                ReferenceResult.model_id.in_({m for m, _ in keys})
            )
        )
        if (int(m), t) in keys
    ]
    for start in range(0, len(old), _CHUNK):
        s.execute(delete(ReferenceResult).where(ReferenceResult.id.in_(old[start : start + _CHUNK])))
    rows = [tuple(map(r.get, _RESULT_COLUMNS)) for r in results]
    _insert_rows(s.connection(), "reference_results", _RESULT_COLUMNS, rows)
    return sum(int(r["n_scores"]) for r in results)


def _insert_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert plain tuples: ``COPY .. FROM STDIN`` on PostgreSQL through psycopg (with executemany each row
    waits on the server: half the time of a whole-repository import there), else DBAPI executemany (the
    ORM's per-row bookkeeping tripled the time of a full import, and INSERT .. RETURNING in parameter order
    ran one statement per row on SQLite)."""
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        raw: Any = connection.connection.dbapi_connection  # psycopg's, in the same transaction
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    _execute_batches(
        connection,
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})",
        rows,
    )


def _execute_batches(connection: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """DBAPI executemany of ``sql`` (``?`` placeholders, written as the driver's paramstyle) over ``rows``,
    :data:`_CHUNK` rows at a time."""
    if connection.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
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
    return int(s.scalar(select(func.sum(ReferenceResult.n_scores))) or 0)


def scores_frame(
    s: Session,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    split: str | None = None,
    subset: str | None = None,
) -> pd.DataFrame:
    """Stored scores with :data:`SCORE_COLUMNS` (value null -> NaN), filtered, sorted by model, revision,
    task, split, subset, metric (each file's packed scores unpacked here)."""
    query = (
        select(
            ReferenceModel.name,
            ReferenceModel.revision,
            ReferenceResult.task,
            ReferenceResult.scores,
            ReferenceResult.mteb_version,
            ReferenceResult.source_path,
            ReferenceResult.sha256,
        )
        .join(ReferenceModel, ReferenceModel.id == ReferenceResult.model_id)
        .order_by(ReferenceModel.name, ReferenceModel.revision, ReferenceResult.task)
    )
    if models:
        query = query.where(ReferenceModel.name.in_(list(models)))
    if tasks:
        query = query.where(ReferenceResult.task.in_(list(tasks)))
    wanted = frozenset(metrics) if metrics else None
    records = [
        (name, revision, task, row_split, row_subset, metric, value, version, source, sha)
        for name, revision, task, packed, version, source, sha in s.execute(query)
        for row_split, row_subset, metric, value in sorted(orjson.loads(packed), key=_ROW_KEY)
        if (wanted is None or metric in wanted)
        and (split is None or row_split == split)
        and (subset is None or row_subset == subset)
    ]
    frame = pd.DataFrame.from_records(records, columns=list(SCORE_COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    return frame
