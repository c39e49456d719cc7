"""The declarative ``Base`` every table module builds on: one metadata with the constraint naming convention.

Table modules (``storage.models``, ``storage.cost_models``, ...) import this and never each other;
``storage.schema`` imports them all, so ``schema.metadata`` holds every table (Alembic compares it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

FP = String(128)  # fingerprints are hex digests (32 chars today)
DEFAULT_BACKEND = "torch"  # deployment backend of rows stored before backends existed (issue 12)


def utc_now() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


def in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
