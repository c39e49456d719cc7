"""Alembic environment of the results database.

Run programmatically by ``storage.db.migrate``/``init_db`` (which passes an open connection in
``config.attributes["connection"]``), or from the command line with the repo's ``alembic.ini``
(``alembic revision --autogenerate -m "..."``, ``alembic upgrade head``), where the URL comes from
``common.settings.database_url()`` unless ``sqlalchemy.url`` is set.
"""

from __future__ import annotations

import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # the alembic CLI does not put the repo on sys.path
    sys.path.insert(0, str(_ROOT))

from common import settings  # noqa: E402
from storage import db, schema  # noqa: E402

config = context.config
if config.config_file_name is not None:  # alembic CLI only; the lab's own logging is left alone
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = schema.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
        # storage.db makes SQLite DDL transactional (explicit BEGIN IMMEDIATE); PostgreSQL's already is
        transactional_ddl=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    url = config.get_main_option("sqlalchemy.url") or settings.database_url()
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through the connection given by storage.db, or one opened here."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or settings.database_url()
    with db.migration_connection(db.get_engine(url)) as conn:
        _configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
