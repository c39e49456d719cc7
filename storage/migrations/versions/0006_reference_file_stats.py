"""Faster MTEB imports: each task file's size and mtime, and no index on reference_scores.metric.

``reference_results.file_size`` / ``file_mtime_ns``: a re-import skips a file whose path, size and mtime
are the stored ones without reading it. Both are nullable: rows imported before this revision have NULL
and are read (hashed) once more on the next import, which fills them in.

``ix_reference_scores_metric`` is dropped: ``main_score`` is most rows, so the index narrowed no read,
and maintaining it cost a quarter of the insert time of a whole-repository import.

Revision ID: 0006_reference_file_stats
Revises: 0005_backends
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_reference_file_stats"
down_revision: str | Sequence[str] | None = "0005_backends"


def upgrade() -> None:
    with op.batch_alter_table("reference_results") as batch:
        batch.add_column(sa.Column("file_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("file_mtime_ns", sa.BigInteger(), nullable=True))
    op.drop_index("ix_reference_scores_metric", table_name="reference_scores")


def downgrade() -> None:
    op.create_index("ix_reference_scores_metric", "reference_scores", ["metric"])
    with op.batch_alter_table("reference_results") as batch:
        batch.drop_column("file_mtime_ns")
        batch.drop_column("file_size")
