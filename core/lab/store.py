"""The lab's database: the one place that turns the configured URL into a session factory.

Entry points (the CLI, the app, background jobs) call :func:`open_store` once and hand the factory to
every orchestration function, which takes it as a required argument: a library call never opens, migrates
or writes a database of its own choosing.
"""

from __future__ import annotations

import os

from sqlalchemy.orm import Session, sessionmaker

from common import settings
from storage import db


def open_store(url: str | None = None) -> sessionmaker[Session]:
    """The session factory of ``url`` (default: ``MLAB_DATABASE_URL`` / the lab's SQLite file), migrated.

    Raises:
        StorageError: invalid or unreachable URL, or a database written by a newer lab.
    """
    if url is None and os.environ.get("MLAB_DATABASE_URL"):
        try:
            return db.init_db(settings.database_url())
        except db.StorageError as exc:  # name where the URL came from
            raise type(exc)(f"MLAB_DATABASE_URL: {exc}") from None
    return db.init_db(url or settings.database_url())
