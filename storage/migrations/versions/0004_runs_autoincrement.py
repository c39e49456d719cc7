"""Run ids are never reused: SQLite ``AUTOINCREMENT`` on runs.id (issue 14).

Without it SQLite hands out ``max(id) + 1``, so deleting the newest run gave its id to the next one and
an exported ``run_id`` became ambiguous. PostgreSQL's sequence never goes back: nothing to do there.

Revision ID: 0004_runs_autoincrement
Revises: 0003_reference_models
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_runs_autoincrement"
down_revision: str | Sequence[str] | None = "0003_reference_models"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # recreate the table (rows and ids kept) with AUTOINCREMENT; sqlite_sequence starts at max(id)
    with op.batch_alter_table("runs", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("runs", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
