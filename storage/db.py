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

import psutil
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import LabError, redact
from common.jsonsafe import json_ready

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10


class StorageError(LabError):
    """The database cannot be used: invalid or unreachable URL, unknown schema revision, bad record."""


class InvalidURLError(StorageError):
    """The database URL cannot be parsed or used (bad port, unknown driver, a folder that is a file)."""


class DatabaseLockedError(StorageError):
    """Another program held the SQLite write lock for longer than the busy timeout."""


class DamagedDatabaseError(StorageError):
    """The database file fails SQLite's ``PRAGMA quick_check`` (or is not a database at all)."""


class UnknownRevisionError(StorageError):
    """The database schema is at a revision this code does not know (written by a newer lab)."""


_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[int, sessionmaker[Session]] = {}
_migrated: set[str] = set()
_read_only_urls: dict[str, Engine] = {}
_read_only_engines: set[Engine] = set()
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
    except (ArgumentError, ValueError):
        return redact(str(url))


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


def _configure_sqlite(engine: Engine, path: str | None, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not read_only:
                _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> Exception | None:
        return _user_facing_sqlite_error(context.original_exception, path)


def _user_facing_sqlite_error(exc: BaseException, path: str | None) -> Exception | None:
    """A ``StorageError`` for what SQLite says about the file itself (locked, read-only, damaged)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = str(exc)
    where = path or "the SQLite database"
    if "database is locked" in text or "database table is locked" in text:
        holders = lock_holders(path) if path else []
        who = f" (held by {', '.join(holders)})" if holders else ""
        return DatabaseLockedError(
            f"{where} stayed locked by another program for more than {SQLITE_BUSY_TIMEOUT_MS // 1000} s"
            f"{who}; nothing was lost: everything committed before is stored and this change was not "
            "half-written - run the command again once that program is done"
        )
    if "readonly" in text or "read-only" in text:
        return StorageError(f"{where} is read-only: reading works, but this needs to write to it")
    if "malformed" in text or "not a database" in text or "disk image" in text:
        return DamagedDatabaseError(
            f"{where} is damaged ({text}); nothing was changed. Restore it from a backup, or move it "
            "away and the lab starts a new one"
        )
    return None


def lock_holders(path: str) -> list[str]:
    """Processes (``name (pid N)``) other than this one that have the SQLite file or its WAL open."""
    wanted = {str(Path(path).resolve()) + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    found: list[str] = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if any(f.path in wanted for f in proc.open_files()):
                found.append(f"{proc.info['name']} (pid {proc.info['pid']})")
        except (psutil.Error, OSError):
            continue
    return found[:5]


def _parse(url: str) -> URL:
    """``make_url`` with every parsing failure (bad port, garbage) as an ``InvalidURLError``."""
    try:
        parsed = make_url(url)
        port = parsed.port  # a non-numeric port raises here or in make_url
    except (ArgumentError, ValueError, TypeError) as exc:
        raise InvalidURLError(f"invalid database URL {safe_url(url)}: {redact(str(exc))}") from None
    if port is not None and not 0 < port < 65536:
        raise InvalidURLError(f"invalid database URL {safe_url(url)}: port {port} is outside 1..65535")
    return parsed


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.database.startswith("file:"):
        return None
    return str(Path(parsed.database).expanduser())


def get_engine(url: str, read_only: bool = False, immutable: bool = False) -> Engine:
    """The engine for ``url``, created once per URL (``read_only``: a SQLite file opened ``mode=ro``;
    ``immutable``: also without the WAL's shared-memory file, for a folder this process cannot write).

    Raises:
        InvalidURLError: the URL cannot be parsed, names a driver that is not installed, or a SQLite file
            whose folder cannot be made.
    """
    read_only = read_only or immutable
    cache_key = ("immutable:" if immutable else "ro:" if read_only else "") + url
    with _lock:
        engine = _engines.get(cache_key)
        if engine is not None:
            return engine
        parsed = _parse(url)
        path = sqlite_path(url)
        kwargs: dict[str, Any] = {"json_serializer": json_dumps, "pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            if path is not None:
                folder = Path(path).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise InvalidURLError(
                        f"database URL {safe_url(parsed)}: cannot use {str(folder)!r} as its folder "
                        f"({exc.strerror or exc})"
                    ) from None
                if Path(path).is_dir():
                    raise InvalidURLError(
                        f"database URL {safe_url(parsed)}: {path!r} is a folder, not a file"
                    )
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            if read_only and path is not None:
                extra = "&immutable=1" if immutable else ""
                parsed = make_url(f"sqlite:///file:{Path(path).resolve()}?mode=ro{extra}&uri=true")
        elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
            raise InvalidURLError(f"cannot use database URL {safe_url(parsed)}: {redact(str(exc))}") from None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, path, read_only)
        _engines[cache_key] = engine
        return engine


def is_read_only(factory: sessionmaker[Session]) -> bool:
    """True when ``factory`` reads a SQLite file opened read-only (writes would be refused)."""
    bind = factory.kw.get("bind")
    return bool(bind is not None and bind in _read_only_engines)


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
        _read_only_urls.clear()
        _read_only_engines.clear()


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
        raise StorageError(f"cannot reach the database {safe_url(url)}: {redact(str(exc.orig))}") from None
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
        raise StorageError(
            f"cannot reach or migrate the database {safe_url(url)}: {redact(str(exc.orig))}"
        ) from None


def _is_ancestor(script: Any, maybe_ancestor: str, rev: str) -> bool:
    """True when ``maybe_ancestor`` comes before ``rev`` in the migration history."""
    return any(r.revision == maybe_ancestor for r in script.iterate_revisions(rev, "base"))


def _writable_file(path: str) -> bool:
    """False when a SQLite file (or its folder, where the WAL lives) cannot be written by this process."""
    file = Path(path)
    if not file.exists():
        return True
    return os.access(file, os.W_OK) and os.access(file.parent, os.W_OK)


def quick_check(engine: Engine, path: str) -> None:
    """SQLite's ``PRAGMA quick_check`` (page structure, cheap at this size); raise when it fails."""
    try:
        with engine.connect() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    except DamagedDatabaseError:
        raise
    except DBAPIError as exc:
        damaged = _user_facing_sqlite_error(exc.orig, path) if exc.orig is not None else None
        if damaged is not None:
            raise damaged from None
        raise StorageError(f"cannot read the database {path}: {redact(str(exc.orig))}") from None
    if rows != ["ok"]:
        raise DamagedDatabaseError(
            f"{path} is damaged (PRAGMA quick_check: {'; '.join(rows[:3])}); nothing was changed. Restore it "
            "from a backup, or move it away and the lab starts a new one"
        )


def _open_read_only(url: str, path: str) -> Engine:
    """A read-only engine on an existing SQLite file at the current schema revision.

    A WAL database in a folder this process cannot write has no shared-memory file to read through;
    it is then opened ``immutable`` (SQLite reads the file as it is, taking no locks).
    """
    engine = get_engine(url, read_only=True)
    try:
        quick_check(engine, path)
    except StorageError as exc:
        if "read-only" not in str(exc):
            raise
        engine = get_engine(url, immutable=True)
        quick_check(engine, path)
    try:
        with engine.connect() as conn:
            heads = _current_heads(conn)
    except DBAPIError as exc:
        raise StorageError(f"cannot read the database {path}: {redact(str(exc.orig))}") from None
    _check_known(heads, url)
    if (heads[0] if heads else None) != head_revision():
        raise StorageError(
            f"{path} is read-only and at schema revision {heads[0] if heads else 'none'!r}; this lab needs "
            f"{head_revision()!r}: make the file writable once so the lab can upgrade it"
        )
    _read_only_engines.add(engine)
    return engine


def init_db(url: str) -> sessionmaker[Session]:
    """Migrate the database at ``url`` to head; return its session factory.

    Migration runs once per URL per process; later calls only return the factory. A SQLite file is
    checked first (``PRAGMA quick_check``); one this process cannot write is opened read-only (no
    migration: it must already be at head), so listing results works on a read-only copy.

    Raises:
        UnknownRevisionError: the database was written by a newer lab (refuses to start).
        DamagedDatabaseError: a SQLite file fails its quick check.
        StorageError: invalid or unreachable URL.
    """
    path = sqlite_path(url)
    engine = get_engine(url)
    if url in _read_only_urls:
        return session_factory(_read_only_urls[url])
    if url not in _migrated:
        if path is not None and not _writable_file(path):
            _read_only_urls[url] = _open_read_only(url, path)
            return session_factory(_read_only_urls[url])
        if path is not None and Path(path).exists():
            quick_check(engine, path)
        try:
            migrate(url, "head")
        except StorageError as exc:
            if path is None or ("read-only" not in str(exc) and "readonly" not in str(exc)):
                raise
            # SQLite itself found it cannot write (e.g. the WAL files of another user).
            _read_only_urls[url] = _open_read_only(url, path)
            return session_factory(_read_only_urls[url])
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot prepare the database {safe_url(url)}: {redact(str(exc))}") from None
        _migrated.add(url)
    return session_factory(engine)
