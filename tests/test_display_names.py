"""One display name per checkpoint (issue 14): the default rule, validation of a rename, the CLI."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core.cli.main import main
from core.lab import registry
from storage import db, repository

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _add(s: Session, name: str, fingerprint: str, label: str, kind: str = "local") -> None:
    repository.upsert_checkpoint(
        s, name=name, kind=kind, location=name, revision=None, fingerprint=fingerprint, path=name,
        num_layers=2, hidden_size=8, embedding_dim=8, pooling="mean", similarity="cosine", max_seq_length=16,
        info={"label": label}, alias=label if kind != "default" else "default",
    )  # fmt: skip


@pytest.fixture
def factory(db_url: str) -> sessionmaker[Session]:
    factory = db.init_db(db_url)
    with factory() as s, s.begin():
        _add(s, "default", "a" * 32, "all-MiniLM-L6-v2", kind="default")
        _add(s, "/runs/sb", "b" * 32, "starbucks (from default)")
        _add(s, "/runs/sb-again", "c" * 32, "starbucks (from default)")  # same label: gets @cccccc
    return factory


def test_registration_gives_the_pages_names_made_unique(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        records = repository.list_checkpoints(s)
    assert registry.display_names(records) == {
        "a" * 32: "default",
        "b" * 32: "starbucks (from default)",
        "c" * 32: "starbucks (from default)@cccccc",
    }
    # a row stored without a display name falls back to the same rule (clashes made unique)
    bare = [dataclasses.replace(r, alias=None) for r in records]
    assert registry.display_names(bare)["c" * 32] == "starbucks (from default)@cccccc"
    assert registry.display_names(bare)["a" * 32] == "default"


def test_a_rename_is_trimmed_checked_and_kept_by_a_refresh(factory: sessionmaker[Session]) -> None:
    renamed = registry.rename_checkpoint("/runs/sb", "  sb   120 steps ", session_factory=factory)
    assert renamed.alias == "sb 120 steps"  # ends trimmed, inner runs of spaces collapsed
    assert (
        registry.rename_checkpoint("b" * 32, "SB 120 steps", session_factory=factory).alias == "SB 120 steps"
    )
    refusals = {
        "": "cannot be empty",
        "  \t ": "cannot be empty",
        "x" * (registry.ALIAS_MAX_LEN + 1): f"at most {registry.ALIAS_MAX_LEN}",
        "DEFAULT": "is taken",  # another checkpoint's name, ignoring case
        "starbucks (from default)@CCCCCC": "is taken",
        "bell\x07": "control characters",
    }
    for text, why in refusals.items():
        with pytest.raises(registry.AliasError, match=why):
            registry.rename_checkpoint("/runs/sb", text, session_factory=factory)
    with pytest.raises(repository.NotFoundError, match="nope"):
        registry.rename_checkpoint("nope", "fine", session_factory=factory)
    assert registry.rename_checkpoint("/runs/sb", "x" * registry.ALIAS_MAX_LEN, session_factory=factory).alias
    with factory() as s:
        assert repository.get_checkpoint(s, "c" * 32).alias == "starbucks (from default)@cccccc"  # type: ignore[union-attr]


def test_read_only_mode_refuses_a_rename(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    with pytest.raises(settings.ReadOnlyError, match="renaming a checkpoint"):
        registry.rename_checkpoint("/runs/sb", "fine", session_factory=factory)
    with factory() as s:
        assert repository.get_checkpoint(s, "b" * 32).alias == "starbucks (from default)"  # type: ignore[union-attr]


def test_cli_lists_and_renames(factory: sessionmaker[Session], db_url: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("MLAB_DATABASE_URL", db_url)
    assert main(["alias", "--checkpoint", "/runs/sb", "--name", "sb-120", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["display_name"]) == ("/runs/sb", "sb-120")
    assert main(["checkpoints", "--json"]) == 0
    shown = {r["name"]: r["display_name"] for r in json.loads(capsys.readouterr().out)}
    assert shown == {
        "default": "default",
        "/runs/sb": "sb-120",
        "/runs/sb-again": "starbucks (from default)@cccccc",
    }
    assert main(["alias", "--checkpoint", "/runs/sb-again", "--name", "SB-120"]) == 2
    assert capsys.readouterr().err == "error: display name 'SB-120' is taken by another checkpoint\n"
