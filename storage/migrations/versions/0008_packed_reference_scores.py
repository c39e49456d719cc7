"""Each MTEB task file's scores packed into its ``reference_results`` row; ``reference_scores`` dropped.

A task file's scores are only ever written, replaced and read together, but they were stored one row per
(split, subset, metric): an import of the whole public MTEB results repository wrote ~2.1 million rows,
binding and indexing them was most of the importing process's CPU, and that process is the one every
reader waits on. ``reference_results.scores`` now holds them as JSON, a list of
``[split, subset, metric, value]`` rows (value null = NaN/null in the file), with ``n_scores`` their count.

Rows are carried over as they are (same split, subset, metric and value, NULL as null; a file that had no
score rows gets ``[]``); the downgrade unpacks them into a ``reference_scores`` table of 0007's shape.

Revision ID: 0008_packed_reference_scores
Revises: 0007_checkpoint_alias
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter

import sqlalchemy as sa
from alembic import op

revision: str = "0008_packed_reference_scores"
down_revision: str | Sequence[str] | None = "0007_checkpoint_alias"

RESULTS = "reference_results"
SCORES = "reference_scores"
KEY = ("split", "subset", "metric")
BATCH = 5000


def _pack(rows: Sequence[Sequence[object]]) -> str:
    return json.dumps([list(row) for row in rows], separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column(RESULTS, sa.Column("scores", sa.Text(), nullable=True))
    op.add_column(RESULTS, sa.Column("n_scores", sa.Integer(), nullable=True))
    query = sa.text(f"SELECT result_id, split, subset, metric, value FROM {SCORES} ORDER BY result_id, split, subset, metric")
    packed = [
        {"id": result_id, "scores": _pack([row[1:] for row in group]), "n": len(group)}
        for result_id, group in ((k, list(g)) for k, g in groupby(bind.execute(query), key=itemgetter(0)))
    ]
    update = sa.text(f"UPDATE {RESULTS} SET scores = :scores, n_scores = :n WHERE id = :id")
    for start in range(0, len(packed), BATCH):
        bind.execute(update, packed[start : start + BATCH])
    bind.execute(sa.text(f"UPDATE {RESULTS} SET scores = '[]', n_scores = 0 WHERE scores IS NULL"))
    op.drop_table(SCORES)
    with op.batch_alter_table(RESULTS) as batch:
        batch.alter_column("scores", existing_type=sa.Text(), nullable=False)
        batch.alter_column("n_scores", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        SCORES,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(128), nullable=False),
        sa.Column("subset", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["result_id"], [f"{RESULTS}.id"], name="fk_reference_scores_result_id_reference_results",
                                ondelete="CASCADE"),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name="pk_reference_scores"),
        sa.UniqueConstraint("result_id", *KEY, name="uq_reference_scores_key"),
    )
    rows = [
        {"result_id": result_id, "split": split, "subset": subset, "metric": metric, "value": value}
        for result_id, scores in bind.execute(sa.text(f"SELECT id, scores FROM {RESULTS} ORDER BY id"))
        for split, subset, metric, value in json.loads(scores)
    ]
    insert = sa.text(f"INSERT INTO {SCORES} (result_id, split, subset, metric, value) "
                     "VALUES (:result_id, :split, :subset, :metric, :value)")  # fmt: skip
    for start in range(0, len(rows), BATCH):
        bind.execute(insert, rows[start : start + BATCH])
    with op.batch_alter_table(RESULTS) as batch:
        batch.drop_column("n_scores")
        batch.drop_column("scores")
