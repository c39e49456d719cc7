"""Reference models (issue 13): published MTEB results with provenance, and the log of their imports.

Revision ID: 0003_reference_models
Revises: 0002_cost_tables
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reference_models"
down_revision: str | Sequence[str] | None = "0002_cost_tables"

SHA = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "reference_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("revision", sa.String(256), nullable=False),
        sa.Column("embed_dim", sa.Integer(), nullable=True),
        sa.Column("n_parameters", sa.BigInteger(), nullable=True),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("similarity", sa.String(64), nullable=True),
        sa.Column("meta_path", sa.Text(), nullable=True),
        sa.Column("meta_sha256", SHA, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reference_models"),
        sa.UniqueConstraint("name", "revision", name="uq_reference_models_name_revision"),
    )
    op.create_table(
        "reference_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(256), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("sha256", SHA, nullable=False),
        sa.Column("mteb_version", sa.String(64), nullable=True),
        sa.Column("dataset_revision", sa.String(256), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["reference_models.id"],
            name="fk_reference_results_model_id_reference_models",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reference_results"),
        sa.UniqueConstraint("model_id", "task", name="uq_reference_results_model_id_task"),
    )
    op.create_index("ix_reference_results_task", "reference_results", ["task"])
    op.create_table(
        "reference_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(128), nullable=False),
        sa.Column("subset", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["reference_results.id"],
            name="fk_reference_scores_result_id_reference_results",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reference_scores"),
        sa.UniqueConstraint("result_id", "split", "subset", "metric", name="uq_reference_scores_key"),
    )
    op.create_index("ix_reference_scores_metric", "reference_scores", ["metric"])
    op.create_table(
        "reference_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("files_seen", sa.Integer(), nullable=False),
        sa.Column("files_changed", sa.Integer(), nullable=False),
        sa.Column("files_failed", sa.Integer(), nullable=False),
        sa.Column("scores_written", sa.Integer(), nullable=False),
        sa.Column("wall_time_s", sa.Double(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reference_imports"),
    )
    op.create_index("ix_reference_imports_root", "reference_imports", ["root"])


def downgrade() -> None:
    op.drop_table("reference_imports")
    op.drop_table("reference_scores")
    op.drop_table("reference_results")
    op.drop_table("reference_models")
