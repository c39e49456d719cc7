"""Storage: migrations, upserts, NaN, cell-by-cell commits, run liveness, deletion, item scores.

Every test taking ``db_url`` runs on SQLite and (when MLAB_TEST_POSTGRES_URL is set) on PostgreSQL.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core.lab.store import open_store
from storage import db, repository
from storage.base import utc_now
from storage.models import Result, Run
from storage.schema import metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
CK_FP = "c" * 32
DS_FP = "d" * 32
SPLIT = "test"


def _checkpoint(fingerprint: str = CK_FP, name: str = "default", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": name,
        "kind": "default",
        "location": "default",
        "revision": None,
        "fingerprint": fingerprint,
        "path": "/models/minilm",
        "num_layers": 6,
        "hidden_size": 384,
        "embedding_dim": 384,
        "pooling": "mean",
        "similarity": "cosine",
        "max_seq_length": 256,
        "info": {"name": name, "normalized": True, "prompts": {}},
    }
    values.update(overrides)
    return values


def _dataset(fingerprint: str = DS_FP, name: str = "stsb-test", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": name,
        "kind": "sts",
        "path": "data/stsb/test.tsv",
        "split": SPLIT,
        "fingerprint": fingerprint,
        "n_items": 1379,
        "info": {"n_pairs": 1379},
    }
    values.update(overrides)
    return values


def _row(layer: int, dim: int, metric: str, value: float, precision: str = "float32") -> dict[str, Any]:
    return {
        "checkpoint_fp": CK_FP,
        "dataset_fp": DS_FP,
        "split": SPLIT,
        "layer": layer,
        "dim": dim,
        "precision": precision,
        "metric": metric,
        "value": value,
    }


@pytest.fixture
def factory(db_url: str) -> sessionmaker[Session]:
    return db.init_db(db_url)


@pytest.fixture
def registered(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """A database with one checkpoint and one dataset."""
    with factory() as s, s.begin():
        repository.upsert_checkpoint(s, **_checkpoint())
        repository.upsert_dataset(s, **_dataset())
    return factory


def _start(factory: sessionmaker[Session], params: dict[str, Any] | None = None, **kwargs: Any) -> int:
    with factory() as s, s.begin():
        run = repository.start_run(
            s, "evaluate", CK_FP, DS_FP, params or {"layers": [1, 6]}, 4, {"lab": "test"}, **kwargs
        )
    return run.id


# ---------------------------------------------------------------- schema and engine


def test_migrations_create_the_schema_of_the_models(db_url: str) -> None:
    db.init_db(db_url)
    engine = db.get_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"checkpoints", "datasets", "runs", "results", "item_scores", "alembic_version"} <= tables
    assert db.current_revision(db_url) == db.head_revision()
    with engine.connect() as conn:  # head of the migrations == the ORM models
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    uniques = {u["name"]: u["column_names"] for u in inspect(engine).get_unique_constraints("results")}
    assert uniques["uq_results_cell_metric"] == [
        "checkpoint_fp",
        "dataset_fp",
        "split",
        "layer",
        "dim",
        "precision",
        "backend",  # issue 12: the deployment backend is part of the natural key
        "metric",
    ]


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'folder' / 'lab.db'}"
    db.init_db(url)  # creates the parent folders
    with db.get_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    assert db.get_engine(url) is db.get_engine(url)
    assert db.session_factory(db.get_engine(url)) is db.init_db(url)


def test_init_db_uses_the_configured_url_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    factory = open_store()  # MLAB_DATABASE_URL from the autouse fixture
    with factory() as s:
        assert repository.list_checkpoints(s) == []
    assert Path(os.environ["MLAB_HOME"], "lab.sqlite3").is_file()


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    db.init_db(db_url)
    db.migrate(db_url, "base")
    assert db.current_revision(db_url) is None
    assert "results" not in inspect(db.get_engine(db_url)).get_table_names()
    db.migrate(db_url, "head")
    assert db.current_revision(db_url) == db.head_revision()
    assert db.known_revisions()[-1] == db.head_revision()


def test_refuses_a_database_at_an_unknown_newer_revision(db_url: str) -> None:
    db.init_db(db_url)
    with db.get_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    db.dispose_engines()  # a new process
    with pytest.raises(db.UnknownRevisionError, match="9999_from_the_future"):
        db.init_db(db_url)


def test_invalid_and_unreachable_urls_raise_storage_error() -> None:
    with pytest.raises(db.StorageError, match="invalid database URL"):
        db.init_db("not a url")
    with pytest.raises(db.StorageError, match="cannot use database URL"):
        db.init_db("nosuchdialect://x/y")
    with pytest.raises(db.StorageError, match=r"127\.0\.0\.1:1") as caught:
        db.init_db("postgresql+psycopg://lab:secret@127.0.0.1:1/lab")
    assert "secret" not in str(caught.value)


# ---------------------------------------------------------------- checkpoints and datasets


def test_checkpoint_upsert_updates_in_place_and_keeps_the_training_card(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s, s.begin():
        first = repository.upsert_checkpoint(s, **_checkpoint(name="default"))
        repository.set_training_card(s, CK_FP, {"loss": "starbucks", "epochs": 1})
    with factory() as s, s.begin():
        second = repository.upsert_checkpoint(s, **_checkpoint(name="renamed", max_seq_length=128))
    with factory() as s:
        stored = repository.list_checkpoints(s)
        assert len(stored) == 1
        assert stored[0] == second
        assert second.name == "renamed" and second.max_seq_length == 128
        assert second.training_card == {"loss": "starbucks", "epochs": 1}
        assert second.created_at == first.created_at
        assert second.created_at.tzinfo is not None
        assert repository.get_checkpoint(s, "renamed") == second
        assert repository.get_checkpoint(s, CK_FP) == second
        assert repository.get_checkpoint(s, "default") is None
    with factory() as s, s.begin(), pytest.raises(repository.NotFoundError, match="nope"):
        repository.set_training_card(s, "nope", {})


def test_dataset_upsert_does_not_duplicate_and_checks_kind(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        repository.upsert_dataset(s, **_dataset(n_items=10))
        again = repository.upsert_dataset(s, **_dataset(n_items=11, info={"x": float("nan")}))
    assert again.n_items == 11 and again.info == {"x": None}  # NaN inside JSON is stored as null
    with factory() as s:
        assert [d.fingerprint for d in repository.list_datasets(s)] == [DS_FP]
        assert repository.get_dataset(s, "stsb-test") == again
        assert repository.get_dataset(s, "missing") is None
    with factory() as s, s.begin(), pytest.raises(repository.StorageError, match="'qa'"):
        repository.upsert_dataset(s, **_dataset(fingerprint="e" * 32, kind="qa"))


# ---------------------------------------------------------------- results


def test_rerunning_a_cell_upserts_instead_of_duplicating(registered: sessionmaker[Session]) -> None:
    run_a = _start(registered)
    run_b = _start(registered)
    with registered() as s, s.begin():
        repository.upsert_results(s, run_a, [_row(6, 384, "cosine_spearman", 0.5)])
    with registered() as s, s.begin():
        repository.upsert_results(s, run_b, [_row(6, 384, "cosine_spearman", 0.7), _row(6, 384, "p", 0.1)])
    with registered() as s:
        frame = repository.results_frame(s)
        assert s.scalar(select(Result.id).where(Result.metric == "cosine_spearman").limit(1)) is not None
    assert list(frame.columns) == list(repository.RESULT_COLUMNS)
    assert len(frame) == 2
    spearman = frame[frame["metric"] == "cosine_spearman"].iloc[0]
    assert spearman["value"] == 0.7 and spearman["run_id"] == run_b
    assert spearman["checkpoint"] == "default" and spearman["dataset"] == "stsb-test"


def test_nan_is_stored_as_null_and_read_back_as_nan(registered: sessionmaker[Session]) -> None:
    run_id = _start(registered)
    with registered() as s, s.begin():
        repository.upsert_results(
            s,
            run_id,
            [_row(1, 32, "cosine_spearman", float("nan")), _row(1, 64, "cosine_spearman", 0.25)],
        )
    with registered() as s:
        raw = s.execute(select(Result.dim, Result.value).order_by(Result.dim)).all()
        frame = repository.results_frame(s, metric="cosine_spearman")
        done = repository.done_cells(s, CK_FP, DS_FP, SPLIT, "cosine_spearman")
    assert [tuple(r) for r in raw] == [(32, None), (64, 0.25)]
    assert frame["value"].dtype == np.float64
    assert math.isnan(frame["value"].iloc[0]) and frame["value"].iloc[1] == 0.25
    assert done == {(1, 32, "float32"), (1, 64, "float32")}


def test_results_frame_filters_and_empty_shape(registered: sessionmaker[Session]) -> None:
    with registered() as s:
        empty = repository.results_frame(s)
    assert list(empty.columns) == list(repository.RESULT_COLUMNS) and empty.empty
    run_id = _start(registered)
    with registered() as s, s.begin():
        repository.upsert_results(
            s,
            run_id,
            [
                _row(1, 32, "cosine_spearman", 0.1),
                _row(1, 32, "cosine_spearman", 0.2, precision="int8"),
                _row(2, 32, "cosine_pearson", 0.3),
            ],
        )
    with registered() as s:
        assert len(repository.results_frame(s, precision="int8")) == 1
        assert list(repository.results_frame(s, metric="cosine_spearman")["value"]) == [0.1, 0.2]
        assert len(repository.results_frame(s, checkpoint_fp="other")) == 0
        assert len(repository.results_frame(s, dataset_fp=DS_FP, split=SPLIT)) == 3
        assert repository.done_cells(s, CK_FP, DS_FP, SPLIT, "cosine_pearson") == {(2, 32, "float32")}


def test_committed_cells_survive_a_rollback_of_a_later_cell(registered: sessionmaker[Session]) -> None:
    run_id = _start(registered)
    with registered() as s, s.begin():
        repository.upsert_results(s, run_id, [_row(1, 32, "cosine_spearman", 0.1)])
        repository.record_progress(s, run_id, 1)

    class CellFailed(RuntimeError):
        pass

    with pytest.raises(CellFailed), registered() as s, s.begin():
        repository.upsert_results(s, run_id, [_row(1, 64, "cosine_spearman", 0.2)])
        repository.record_progress(s, run_id, 2)
        raise CellFailed
    with registered() as s:
        assert repository.done_cells(s, CK_FP, DS_FP, SPLIT, "cosine_spearman") == {(1, 32, "float32")}
        run = repository.get_run(s, run_id)
    assert run is not None and run.cells_done == 1 and run.cells_total == 4


# ---------------------------------------------------------------- runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_of_dead_processes_become_interrupted_and_resume(registered: sessionmaker[Session]) -> None:
    params = {"layers": [1, 2], "dims": [32], "precisions": ["float32"]}
    dead = _start(registered, params, pid=_dead_pid())
    alive = _start(registered, params)  # this process
    far_stale = _start(registered, params, host="elsewhere", pid=1)
    far_fresh = _start(registered, params, host="elsewhere", pid=1)
    with registered() as s, s.begin():
        old = utc_now() - timedelta(hours=2)
        s.execute(update(Run).where(Run.id == far_stale).values(heartbeat_at=old))
    with registered() as s, s.begin():
        assert repository.mark_interrupted_runs(s, stale_after_s=3600) == 2
    with registered() as s:
        status = {r.id: r.status for r in repository.list_runs(s)}
        dead_run = repository.get_run(s, dead)
    assert status == {dead: "interrupted", alive: "running", far_stale: "interrupted", far_fresh: "running"}
    assert dead_run is not None and dead_run.error_text and dead_run.ended_at is not None

    with registered() as s, s.begin():
        assert repository.find_resumable_run(s, "evaluate", CK_FP, DS_FP, {"layers": [9]}) is None
        found = repository.find_resumable_run(s, "evaluate", CK_FP, DS_FP, dict(params))
        assert found is not None and found.id == far_stale  # the latest interrupted one
        resumed = repository.resume_run(s, found.id, cells_done=1, provenance={"again": True})
    assert resumed.status == "running" and resumed.pid == os.getpid() and resumed.cells_done == 1
    assert resumed.provenance == {"lab": "test", "resumed": [{"again": True}]}
    assert resumed.ended_at is None and resumed.error_text is None


def test_finish_and_list_runs(registered: sessionmaker[Session]) -> None:
    with registered() as s, s.begin():
        repository.upsert_checkpoint(s, **_checkpoint(fingerprint="f" * 32, name="other"))
        other = repository.start_run(s, "train", "f" * 32, None, {"epochs": 1}, 1, {})
    first = _start(registered)
    with registered() as s, s.begin():
        done = repository.finish_run(s, first, "failed", error_text="ValueError: bad")
        with pytest.raises(repository.StorageError, match="'running'"):
            repository.finish_run(s, first, "running")
        with pytest.raises(repository.StorageError, match="'fit'"):
            repository.start_run(s, "fit", CK_FP, None, {}, 1, {})
        with pytest.raises(repository.NotFoundError, match="no dataset"):
            repository.start_run(s, "evaluate", CK_FP, "x" * 32, {}, 1, {})
    assert done.status == "failed" and done.error_text == "ValueError: bad"
    assert done.ended_at is not None and done.wall_time_s is not None
    assert done.wall_time_s == pytest.approx((done.ended_at - done.started_at).total_seconds())
    with registered() as s:
        assert [r.id for r in repository.list_runs(s)] == [first, other.id]
        assert [r.id for r in repository.list_runs(s, status="failed")] == [first]
        assert [r.id for r in repository.list_runs(s, checkpoint="other")] == [other.id]
        assert [r.id for r in repository.list_runs(s, dataset="stsb-test")] == [first]
        assert [r.id for r in repository.list_runs(s, dataset=DS_FP, kind="evaluate")] == [first]
        listed = repository.list_runs(s, checkpoint=CK_FP)[0]
        assert (listed.checkpoint_name, listed.dataset_name) == ("default", "stsb-test")
        assert repository.get_run(s, 10_000) is None
    with registered() as s, s.begin(), pytest.raises(repository.NotFoundError):
        repository.record_progress(s, 10_000, 1)


def test_delete_run_removes_its_results_and_item_scores_only(registered: sessionmaker[Session]) -> None:
    keep, drop = _start(registered), _start(registered)
    cell = {"checkpoint_fp": CK_FP, "dataset_fp": DS_FP, "split": SPLIT, "layer": 1, "precision": "float32"}
    with registered() as s, s.begin():
        repository.upsert_results(s, keep, [_row(1, 32, "cosine_spearman", 0.1)])
        repository.upsert_results(s, drop, [_row(1, 64, "cosine_spearman", 0.2)])
        for run_id, dim in ((keep, 32), (drop, 64)):
            repository.put_item_scores(
                s, run_id=run_id, dim=dim, kind="pair_similarity", ids=["a"], values=np.ones(1), **cell
            )
    with registered() as s, s.begin():
        repository.delete_run(s, drop)
    with registered() as s:
        assert list(repository.results_frame(s)["run_id"]) == [keep]
        assert repository.get_run(s, drop) is None
        assert repository.get_item_scores(s, dim=64, kind="pair_similarity", **cell) is None
        assert repository.get_item_scores(s, dim=32, kind="pair_similarity", **cell) is not None
    with registered() as s, s.begin(), pytest.raises(repository.NotFoundError):
        repository.delete_run(s, drop)


# ---------------------------------------------------------------- item scores


def test_item_scores_round_trip_exactly(registered: sessionmaker[Session]) -> None:
    run_id = _start(registered)
    rng = np.random.default_rng(0)
    values = rng.standard_normal(1000).astype(np.float32)  # (n_pairs,)
    values[:4] = [np.nan, -0.0, np.float32(1e-38), np.inf]
    ids = [f"pair-{i}" for i in range(1000)]
    cell = {"checkpoint_fp": CK_FP, "dataset_fp": DS_FP, "split": SPLIT, "layer": 3, "dim": 64}
    with registered() as s, s.begin():
        repository.put_item_scores(
            s, run_id=run_id, precision="float32", kind="pair_similarity", ids=ids, values=values, **cell
        )
        repository.put_item_scores(  # float64 in: stored as float32
            s,
            run_id=run_id,
            precision="int8",
            kind="query_ndcg_at_10",
            ids=ids[:3],
            values=np.array([0.1, 1, 0]),
            **cell,
        )
        with pytest.raises(repository.StorageError, match="2 ids"):
            repository.put_item_scores(
                s, run_id=run_id, precision="int8", kind="x", ids=["a", "b"], values=np.ones(3), **cell
            )
    with registered() as s:
        got = repository.get_item_scores(s, precision="float32", kind="pair_similarity", **cell)
        per_query = repository.get_item_scores(s, precision="int8", kind="query_ndcg_at_10", **cell)
        assert repository.get_item_scores(s, precision="binary", kind="pair_similarity", **cell) is None
    assert got is not None and per_query is not None
    got_ids, got_values = got
    assert got_ids == ids
    assert got_values.dtype == np.float32
    np.testing.assert_array_equal(got_values, values)
    assert np.signbit(got_values[1])
    np.testing.assert_array_equal(per_query.values, np.array([0.1, 1, 0], dtype=np.float32))
    with registered() as s, s.begin():  # a rerun replaces the stored scores
        repository.put_item_scores(
            s,
            run_id=run_id,
            precision="float32",
            kind="pair_similarity",
            ids=["z"],
            values=np.zeros(1),
            **cell,
        )
    with registered() as s:
        again = repository.get_item_scores(s, precision="float32", kind="pair_similarity", **cell)
    assert again is not None and again.ids == ["z"] and again.values.tolist() == [0.0]


# ---------------------------------------------------------------- concurrency


_WRITER = textwrap.dedent(
    """
    import sys
    from storage import db, repository
    url, run_id, layer, ck_fp, ds_fp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    factory = db.init_db(url)
    for dim in range(1, 41):
        with factory() as s, s.begin():
            repository.upsert_results(s, run_id, [{
                "checkpoint_fp": ck_fp, "dataset_fp": ds_fp, "split": "test", "layer": layer,
                "dim": dim, "precision": "float32", "metric": "m", "value": dim / 100}])
            repository.record_progress(s, run_id, dim)
    """
)


def test_two_processes_write_at_once_without_lock_errors(
    registered: sessionmaker[Session], db_url: str
) -> None:
    run_id = _start(registered)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, db_url, str(run_id), str(layer), CK_FP, DS_FP],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for layer in (1, 2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with registered() as s:
        frame = repository.results_frame(s, metric="m")
    assert len(frame) == 80


def test_wal_switch_waits_for_a_writer_on_a_fresh_database(tmp_path: Path) -> None:
    """SQLite refuses ``journal_mode = WAL`` at once (no busy wait) while another connection writes to a
    fresh rollback-journal file: the race of two processes creating one database. The lab retries."""
    path = str(tmp_path / "fresh.sqlite3")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE t (x)")
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode = WAL")  # SQLite's own answer, before any waiting
    release = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    release.start()
    db._set_wal(other.cursor())
    release.join()
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_two_processes_initialise_a_fresh_database_at_once(db_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    script = "import sys; from storage import db; db.init_db(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, db_url], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert db.current_revision(db_url) == db.head_revision()
