"""Deployment backend as part of a result's natural key (issue 12): results, item_scores, encoding_costs.

Every existing row was measured on torch float32, so the new ``backend`` column is filled with
``torch`` (its server default) and the unique keys are rebuilt with it.

Revision ID: 0005_backends
Revises: 0004_runs_autoincrement
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_backends"
down_revision: str | Sequence[str] | None = "0004_runs_autoincrement"

# table -> (unique constraint, its columns before this revision)
KEYS: dict[str, tuple[str, list[str]]] = {
    "results": (
        "uq_results_cell_metric",
        ["checkpoint_fp", "dataset_fp", "split", "layer", "dim", "precision", "metric"],
    ),
    "item_scores": (
        "uq_item_scores_cell_kind",
        ["checkpoint_fp", "dataset_fp", "split", "layer", "dim", "precision", "kind"],
    ),
    "encoding_costs": (
        "uq_encoding_costs_key",
        ["checkpoint_fp", "layer", "machine_fp", "batch_size", "seq_len"],
    ),
}


def _with_backend(columns: list[str]) -> list[str]:
    """The new key: ``backend`` after ``precision`` (results, item_scores) or last (encoding_costs)."""
    if "precision" in columns:
        at = columns.index("precision") + 1
        return [*columns[:at], "backend", *columns[at:]]
    return [*columns, "backend"]


def upgrade() -> None:
    for table, (name, columns) in KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("backend", sa.String(32), nullable=False, server_default="torch"))
            batch.drop_constraint(name, type_="unique")
            batch.create_unique_constraint(name, _with_backend(columns))


def downgrade() -> None:
    for table, (name, columns) in KEYS.items():
        op.execute(sa.text(f"DELETE FROM {table} WHERE backend != 'torch'"))
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="unique")
            batch.create_unique_constraint(name, columns)
            batch.drop_column("backend")
