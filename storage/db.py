"""Engine, session factory and schema migrations of the results database.

Scope: turning a database URL (given by the caller: ``core.lab.store`` passes the configured one; SQLite file or
``postgresql+psycopg://...``) into a cached engine and one ``sessionmaker`` per engine, and upgrading
the schema with Alembic (scripts in ``storage/migrations``, found from this file, not the cwd).

SQLite connections get ``journal_mode=WAL``, ``foreign_keys=ON`` and ``busy_timeout``; every SQLite
transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of failing
with "database is locked" when a read transaction tries to become a write one. DDL is transactional
on SQLite too, so a failed migration leaves the schema untouched.

Typical use::

    Session = init_db(url)                  # migrate to head, then return the factory
    with Session() as s, s.begin():
        repository.upsert_results(s, run_id, rows)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import LabError
from common.jsonsafe import json_ready

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10


class StorageError(LabError):
    """The database cannot be used: invalid or unreachable URL, unknown schema revision, bad record."""


class UnknownRevisionError(StorageError):
    """The database schema is at a revision this code does not know (written by a newer lab)."""


_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[int, sessionmaker[Session]] = {}
_migrated: set[str] = set()
MIGRATION_LOCK_KEY = 0x6D6C6162  # PostgreSQL advisory lock held while migrating ("mlab")


def _forget_engines_in_child() -> None:
    """After fork: drop inherited pooled connections without closing the parent's (SQLAlchemy's advice)."""
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_engines_in_child)


def safe_url(url: str | URL) -> str:
    """The URL as text with any password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def json_dumps(value: Any) -> str:
    """The JSON serializer of every engine (portable across SQLite and PostgreSQL)."""
    return json.dumps(json_ready(value), allow_nan=False, sort_keys=True)


def _set_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds a lock.

    Switching a fresh database file to WAL takes an exclusive lock, and SQLite may answer "database is
    locked" at once instead of waiting on the busy timeout (seen in CI: two processes opening one new
    database). Once the file is in WAL mode (it stays so), the pragma changes nothing and takes no lock.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """The engine for ``url``, created once per URL.

    Raises:
        StorageError: the URL cannot be parsed or names a driver that is not installed.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StorageError(f"invalid database URL {url!r}: {exc}") from None
        kwargs: dict[str, Any] = {"json_serializer": json_dumps, "pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"cannot use database URL {safe_url(parsed)}: {exc}") from None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        _engines[url] = engine
        return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """The one ``sessionmaker`` of ``engine`` (objects stay readable after commit)."""
    with _lock:
        factory = _factories.get(id(engine))
        if factory is None or factory.kw.get("bind") is not engine:
            factory = sessionmaker(bind=engine, expire_on_commit=False)
            _factories[id(engine)] = factory
        return factory


def dispose_engines() -> None:
    """Close every cached engine (tests, and processes that fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
        _migrated.clear()


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` pointing at ``storage/migrations`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _script_directory() -> Any:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration revision this code knows."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return str(head)


def known_revisions() -> list[str]:
    """Every migration revision this code knows, oldest first."""
    return [str(r.revision) for r in reversed(list(_script_directory().walk_revisions()))]


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def _check_known(heads: tuple[str, ...], url: str) -> None:
    script = _script_directory()
    for rev in heads:
        try:
            known = script.get_revision(rev) is not None
        except Exception:  # alembic raises ResolutionError/CommandError subclasses
            known = False
        if not known:
            raise UnknownRevisionError(
                f"the database {safe_url(url)} is at schema revision {rev!r}, which this version of the lab "
                f"does not know (its newest is {head_revision()!r}); it was probably written by a newer "
                "lab - upgrade the lab, or point MLAB_DATABASE_URL at another database"
            )


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction for migrations; SQLite foreign keys are off meanwhile.

    Batch migrations on SQLite recreate tables (copy, drop, rename); with foreign keys on, dropping a
    parent table would cascade-delete its children's rows. Foreign keys are checked again at the end.
    Concurrent migrations queue: SQLite on ``BEGIN IMMEDIATE``, PostgreSQL on an advisory lock.
    """
    with engine.connect() as conn:
        is_sqlite = engine.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection if is_sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys = OFF")  # no transaction is open yet, so this takes effect
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield conn
                if is_sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StorageError(f"migration left rows with broken foreign keys: {broken[:5]}")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")


def current_revision(url: str) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    try:
        with get_engine(url).connect() as conn:
            heads = _current_heads(conn)
    except DBAPIError as exc:
        raise StorageError(f"cannot reach the database {safe_url(url)}: {exc.orig}") from None
    return heads[0] if heads else None


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade (or downgrade, for a revision behind the current one) the schema to ``revision``.

    Raises:
        UnknownRevisionError: the database is at a revision this code does not know.
        StorageError: the database cannot be reached.
    """
    engine = get_engine(url)
    cfg = alembic_config(url)
    try:
        with migration_connection(engine) as conn:
            heads = _current_heads(conn)
            _check_known(heads, url)
            cfg.attributes["connection"] = conn
            current = heads[0] if heads else None
            target = head_revision() if revision == "head" else revision
            script = _script_directory()
            behind = target == "base" or _is_ancestor(script, target, current) if current else False
            if current is not None and current != target and behind:
                command.downgrade(cfg, target)
            else:
                command.upgrade(cfg, target)
    except DBAPIError as exc:
        raise StorageError(f"cannot reach or migrate the database {safe_url(url)}: {exc.orig}") from None


def _is_ancestor(script: Any, maybe_ancestor: str, rev: str) -> bool:
    """True when ``maybe_ancestor`` comes before ``rev`` in the migration history."""
    return any(r.revision == maybe_ancestor for r in script.iterate_revisions(rev, "base"))


def init_db(url: str) -> sessionmaker[Session]:
    """Migrate the database at ``url`` to head; return its session factory.

    Migration runs once per URL per process; later calls only return the factory.

    Raises:
        UnknownRevisionError: the database was written by a newer lab (refuses to start).
        StorageError: invalid or unreachable URL.
    """
    engine = get_engine(url)
    if url not in _migrated:
        try:
            migrate(url, "head")
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot prepare the database {safe_url(url)}: {exc}") from None
        _migrated.add(url)
    return session_factory(engine)
