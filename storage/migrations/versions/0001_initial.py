"""Initial schema: checkpoints, datasets, runs, results, item_scores.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None

FP = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("revision", sa.String(256), nullable=True),
        sa.Column("fingerprint", FP, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("num_layers", sa.Integer(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("pooling", sa.String(64), nullable=False),
        sa.Column("similarity", sa.String(64), nullable=False),
        sa.Column("max_seq_length", sa.Integer(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("training_card", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.UniqueConstraint("fingerprint", name="uq_checkpoints_fingerprint"),
    )
    op.create_index("ix_checkpoints_name", "checkpoints", ["name"])

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("split", sa.String(128), nullable=False),
        sa.Column("fingerprint", FP, nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('sts', 'retrieval')", name="ck_datasets_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("fingerprint", name="uq_datasets_fingerprint"),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("checkpoint_fp", FP, nullable=False),
        sa.Column("dataset_fp", FP, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("cells_total", sa.Integer(), nullable=False),
        sa.Column("cells_done", sa.Integer(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("wall_time_s", sa.Double(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(256), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.CheckConstraint("kind IN ('evaluate', 'cost', 'train')", name="ck_runs_kind"),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed', 'interrupted', 'cancelled')", name="ck_runs_status"
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_fp"], ["checkpoints.fingerprint"], name="fk_runs_checkpoint_fp_checkpoints"
        ),
        sa.ForeignKeyConstraint(["dataset_fp"], ["datasets.fingerprint"], name="fk_runs_dataset_fp_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_checkpoint_fp", "runs", ["checkpoint_fp"])
    op.create_index("ix_runs_dataset_fp", "runs", ["dataset_fp"])

    def cell_columns() -> list[sa.Column]:
        return [
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("run_id", sa.Integer(), nullable=False),
            sa.Column("checkpoint_fp", FP, nullable=False),
            sa.Column("dataset_fp", FP, nullable=False),
            sa.Column("split", sa.String(128), nullable=False),
            sa.Column("layer", sa.Integer(), nullable=False),
            sa.Column("dim", sa.Integer(), nullable=False),
            sa.Column("precision", sa.String(32), nullable=False),
        ]

    op.create_table(
        "results",
        *cell_columns(),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_results_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["checkpoint_fp"], ["checkpoints.fingerprint"], name="fk_results_checkpoint_fp_checkpoints"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_fp"], ["datasets.fingerprint"], name="fk_results_dataset_fp_datasets"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
        sa.UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "split",
            "layer",
            "dim",
            "precision",
            "metric",
            name="uq_results_cell_metric",
        ),
    )
    op.create_index("ix_results_run_id", "results", ["run_id"])

    op.create_table(
        "item_scores",
        *cell_columns(),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("ids", sa.JSON(), nullable=False),
        sa.Column("values_npy", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_item_scores_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_fp"], ["checkpoints.fingerprint"], name="fk_item_scores_checkpoint_fp_checkpoints"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_fp"], ["datasets.fingerprint"], name="fk_item_scores_dataset_fp_datasets"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_item_scores"),
        sa.UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "split",
            "layer",
            "dim",
            "precision",
            "kind",
            name="uq_item_scores_cell_kind",
        ),
    )
    op.create_index("ix_item_scores_run_id", "item_scores", ["run_id"])


def downgrade() -> None:
    op.drop_table("item_scores")
    op.drop_table("results")
    op.drop_table("runs")
    op.drop_table("datasets")
    op.drop_table("checkpoints")
