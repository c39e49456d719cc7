"""``reference_scores`` keyed by (result_id, split, subset, metric): no surrogate id, and on SQLite ``WITHOUT ROWID``.

Before, every score went into two b-trees: the rowid table and the unique index on its natural key. An
import of the whole public MTEB results repository writes about two million scores, and that second
b-tree was a third of the importing process's insert CPU and of the file. Nothing read the ``id``. Now the
natural key is the primary key (``pk_reference_scores``), and on SQLite the table is that key's b-tree.

Rows are carried over as they are (same result, split, subset, metric, value; NULL stays NULL). SQLite
cannot change a table's primary key or rowid-ness in place, so the table is rebuilt (create, copy in key
order, drop, rename); PostgreSQL drops the unique constraint and ``id`` and adds the key in place.

Revision ID: 0008_reference_scores_key
Revises: 0007_checkpoint_alias
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_reference_scores_key"
down_revision: str | Sequence[str] | None = "0007_checkpoint_alias"

TABLE = "reference_scores"
KEY = ["result_id", "split", "subset", "metric"]
COLUMNS = ", ".join([*KEY, "value"])
FOREIGN_KEY = "fk_reference_scores_result_id_reference_results"


def _columns(with_id: bool) -> list[sa.SchemaItem]:
    return [
        *([sa.Column("id", sa.Integer(), nullable=False)] if with_id else []),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(128), nullable=False),
        sa.Column("subset", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["result_id"], ["reference_results.id"], name=FOREIGN_KEY, ondelete="CASCADE"),
    ]


def _rebuild_sqlite(with_id: bool) -> None:
    """Copy the rows into a table of the other shape, then swap it in (foreign keys are off meanwhile:
    ``storage.db.migration_connection``; no table references this one)."""
    staging = f"{TABLE}_0008"
    if with_id:  # back to 0007's shape: the surrogate id and the unique natural key
        op.create_table(
            staging,
            *_columns(with_id=True),
            sa.PrimaryKeyConstraint("id", name="pk_reference_scores"),
            sa.UniqueConstraint(*KEY, name="uq_reference_scores_key"),
        )
    else:
        op.create_table(staging, *_columns(with_id=False), sa.PrimaryKeyConstraint(*KEY, name="pk_reference_scores"),
                        sqlite_with_rowid=False)  # fmt: skip
    op.execute(f"INSERT INTO {staging} ({COLUMNS}) SELECT {COLUMNS} FROM {TABLE} ORDER BY {', '.join(KEY)}")
    op.drop_table(TABLE)
    op.rename_table(staging, TABLE)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_id=False)
        return
    op.drop_constraint("uq_reference_scores_key", TABLE, type_="unique")
    op.drop_constraint("pk_reference_scores", TABLE, type_="primary")
    op.drop_column(TABLE, "id")  # its sequence goes with it
    op.create_primary_key("pk_reference_scores", TABLE, KEY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_id=True)
        return
    op.drop_constraint("pk_reference_scores", TABLE, type_="primary")
    op.execute(f"ALTER TABLE {TABLE} ADD COLUMN id SERIAL")  # numbers the existing rows
    op.create_primary_key("pk_reference_scores", TABLE, ["id"])
    op.create_unique_constraint("uq_reference_scores_key", TABLE, KEY)
