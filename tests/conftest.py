"""Shared pytest fixtures: every test gets its own lab home, cache and database under tmp_path.

``db_url`` is parametrized over SQLite and PostgreSQL. The PostgreSQL case uses the server named by
``MLAB_TEST_POSTGRES_URL`` (CI sets it), in a fresh schema per test that is dropped afterwards; when the
variable is unset only that case is skipped, with the reason.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSTGRES_ENV = "MLAB_TEST_POSTGRES_URL"


def _dispose_storage_engines() -> None:
    db = sys.modules.get("storage.db")
    if db is not None:
        db.dispose_engines()


@pytest.fixture(autouse=True)
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point MLAB_HOME, MLAB_CACHE_DIR and MLAB_DATABASE_URL at tmp_path (never the user's data dir)."""
    home = tmp_path / "mlab-home"
    monkeypatch.setenv("MLAB_HOME", str(home))
    monkeypatch.setenv("MLAB_CACHE_DIR", str(home / "embedding-cache"))
    monkeypatch.setenv("MLAB_DATABASE_URL", f"sqlite:///{home / 'lab.sqlite3'}")
    monkeypatch.delenv("MLAB_READ_ONLY", raising=False)
    yield home
    _dispose_storage_engines()


def _postgres_schema_url(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema on the test server; the schema is dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"mlab_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        _dispose_storage_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real BERT sentence-transformers checkpoint (3 layers x 48 dims, mean pooling), built once.

    Read-only for the tests that share it: a test that changes a checkpoint builds its own.
    """
    from tests.tinymodel import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layers=3, hidden=48)


@pytest.fixture(scope="module")
def lab_template(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The populated page lab of ``tests.pagedata.build_lab`` (in its own home), built once per module.

    Tests take a private copy of its database (``tests.pagedata.copy_lab_database``) before writing.
    """
    from tests.pagedata import build_lab_in_own_home

    return build_lab_in_own_home(tmp_path_factory.mktemp("lab"))


def write_sts_pairs(
    path: Path, pairs: list[tuple[str, str, float]] | tuple[tuple[str, str, float], ...]
) -> Path:
    """An STS tsv (``sentence1 sentence2 score`` header) of ``pairs`` at ``path``."""
    lines = ["sentence1\tsentence2\tscore", *(f"{a}\t{b}\t{s}" for a, b, s in pairs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, lab_env: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file under tmp_path, or a new schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{lab_env / 'lab.sqlite3'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set: the PostgreSQL variant runs where a server is given (CI)")
    yield from _postgres_schema_url(base)
