"""Cost tables: machines, encoding_costs (per layer), search_costs (per dim, precision, index kind).

Revision ID: 0002_cost_tables
Revises: 0001_initial
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_cost_tables"
down_revision: str | Sequence[str] | None = "0001_initial"

FP = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", FP, nullable=False),
        sa.Column("cpu_model", sa.Text(), nullable=False),
        sa.Column("logical_cores", sa.Integer(), nullable=False),
        sa.Column("physical_cores", sa.Integer(), nullable=False),
        sa.Column("torch_threads", sa.Integer(), nullable=False),
        sa.Column("torch_version", sa.String(64), nullable=False),
        sa.Column("arch", sa.String(64), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_machines"),
        sa.UniqueConstraint("fingerprint", name="uq_machines_fingerprint"),
    )

    op.create_table(
        "encoding_costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_fp", FP, nullable=False),
        sa.Column("machine_fp", FP, nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("latency_ms_p50", sa.Double(), nullable=False),
        sa.Column("latency_ms_p95", sa.Double(), nullable=False),
        sa.Column("latency_ms_mean", sa.Double(), nullable=False),
        sa.Column("throughput_per_s", sa.Double(), nullable=False),
        sa.Column("batch_ms_p50", sa.Double(), nullable=False),
        sa.Column("flops_per_token", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("batch_repeats", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("measured_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_encoding_costs_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_fp"], ["checkpoints.fingerprint"], name="fk_encoding_costs_checkpoint_fp_checkpoints"
        ),
        sa.ForeignKeyConstraint(
            ["machine_fp"], ["machines.fingerprint"], name="fk_encoding_costs_machine_fp_machines"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_encoding_costs"),
        sa.UniqueConstraint(
            "checkpoint_fp", "layer", "machine_fp", "batch_size", "seq_len", name="uq_encoding_costs_key"
        ),
    )
    op.create_index("ix_encoding_costs_run_id", "encoding_costs", ["run_id"])

    op.create_table(
        "search_costs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_fp", FP, nullable=False),
        sa.Column("dataset_fp", FP, nullable=False),
        sa.Column("machine_fp", FP, nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("precision", sa.String(32), nullable=False),
        sa.Column("index_kind", sa.String(64), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("n_docs", sa.Integer(), nullable=False),
        sa.Column("n_queries", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("bytes_per_vector", sa.Integer(), nullable=False),
        sa.Column("index_bytes", sa.BigInteger(), nullable=False),
        sa.Column("build_s", sa.Double(), nullable=False),
        sa.Column("search_ms_per_query", sa.Double(), nullable=False),
        sa.Column("search_ms_p50", sa.Double(), nullable=False),
        sa.Column("search_ms_p95", sa.Double(), nullable=False),
        sa.Column("recall_at_k", sa.Double(), nullable=True),
        sa.Column("recall_vs_float32", sa.Double(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("measured_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_search_costs_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["checkpoint_fp"], ["checkpoints.fingerprint"], name="fk_search_costs_checkpoint_fp_checkpoints"
        ),
        sa.ForeignKeyConstraint(
            ["dataset_fp"], ["datasets.fingerprint"], name="fk_search_costs_dataset_fp_datasets"
        ),
        sa.ForeignKeyConstraint(
            ["machine_fp"], ["machines.fingerprint"], name="fk_search_costs_machine_fp_machines"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_search_costs"),
        sa.UniqueConstraint(
            "checkpoint_fp",
            "dataset_fp",
            "dim",
            "precision",
            "index_kind",
            "machine_fp",
            name="uq_search_costs_key",
        ),
    )
    op.create_index("ix_search_costs_run_id", "search_costs", ["run_id"])


def downgrade() -> None:
    op.drop_table("search_costs")
    op.drop_table("encoding_costs")
    op.drop_table("machines")
