"""One display name per checkpoint: ``checkpoints.alias`` (issue 14), editable, unique.

Before, a checkpoint had several names: its full path on Home, its folder name on Explore and Demo, its
training label ("starbucks (from default)") on Compare and Curves. ``alias`` is the one name every page
shows; links and the CLI keep using the stable ``name``/fingerprint, so a rename breaks no link.

Existing rows get the name the pages gave them best: ``default`` for the default checkpoint, else the
stored label (a trained checkpoint's training label, a folder's name, a hub model's name), else the last
part of the name; a clash keeps the older row's name and gives the newer ``name@<fingerprint prefix>``.
The same rule lives in ``core.checkpoints.default_display_name`` for rows registered from now on (copied
here so this migration does not change when the code does).

Revision ID: 0007_checkpoint_alias
Revises: 0006_reference_file_stats
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007_checkpoint_alias"
down_revision: str | Sequence[str] | None = "0006_reference_file_stats"

ALIAS_COLUMN_LEN = 256


def _default_name(name: str, kind: str, info: Any) -> str:
    if kind == "default" or name == "default":
        return "default"
    label = str((info or {}).get("label") or "").strip() if isinstance(info, dict) else ""
    return (label or name.rstrip("/").rsplit("/", 1)[-1] or name)[:ALIAS_COLUMN_LEN]


def _free(wanted: str, fingerprint: str, taken: set[str]) -> str:
    for candidate in (wanted, f"{wanted}@{fingerprint[:6]}", f"{wanted}@{fingerprint[:12]}", fingerprint):
        if candidate not in taken:
            return candidate
    return f"{wanted}@{fingerprint}"


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("alias", sa.String(ALIAS_COLUMN_LEN), nullable=True))
        batch.create_unique_constraint("uq_checkpoints_alias", ["alias"])
    table = sa.table(
        "checkpoints",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
        sa.column("fingerprint", sa.String),
        sa.column("info", sa.JSON),
        sa.column("created_at", sa.DateTime),
        sa.column("alias", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(table.c.id, table.c.name, table.c.kind, table.c.fingerprint, table.c.info).order_by(
            table.c.created_at, table.c.id
        )
    ).all()
    taken: set[str] = set()
    for row in rows:
        alias = _free(_default_name(row.name, row.kind, row.info), row.fingerprint, taken)
        taken.add(alias)
        bind.execute(table.update().where(table.c.id == row.id).values(alias=alias))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_constraint("uq_checkpoints_alias", type_="unique")
        batch.drop_column("alias")
