"""Portable upsert (INSERT ... ON CONFLICT DO UPDATE) and the JSON round trip of stored values."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.db import json_dumps


def plain_json(value: Any) -> Any:
    """The value as it will read back from a JSON column (tuples -> lists, NaN -> None)."""
    return json.loads(json_dumps(value))


@functools.lru_cache(maxsize=64)
def upsert_statement(
    dialect: str, table: Table, key: tuple[str, ...], update_columns: tuple[str, ...]
) -> Any:
    """The INSERT ... ON CONFLICT DO UPDATE statement of a table, built once (a cell stores several)."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: stmt.excluded[name] for name in update_columns},
    )


def upsert(
    s: Session,
    model: type[Any],
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
    update_columns: Sequence[str],
) -> None:
    """INSERT rows, updating ``update_columns`` where the unique ``key`` already exists."""
    if not rows:
        return
    dialect = s.get_bind().dialect.name
    if dialect in {"sqlite", "postgresql"}:
        s.execute(upsert_statement(dialect, model.__table__, tuple(key), tuple(update_columns)), list(rows))
        return
    for row in rows:  # portable fallback for other databases
        existing = s.scalars(select(model).filter_by(**{k: row[k] for k in key})).one_or_none()
        if existing is None:
            s.add(model(**row))
        else:
            for name in update_columns:
                setattr(existing, name, row[name])
    s.flush()
