"""Schema evolution: a database filled at the OLDEST Alembic revision keeps every row through upgrade to head.

The rows are written with plain SQL valid at the oldest revision (as an old lab would have written
them), read back as they were, upgraded with ``storage.db.migrate(url, "head")`` and read again: every
table of the old schema must hold the same rows with the same values (columns added later may appear;
none may vanish), and the repository (today's code) must read the old rows. The test walks whatever
migrations exist, so it keeps guarding later ones (``0002_...`` and on) without change. Runs on SQLite
and, where ``MLAB_TEST_POSTGRES_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import MetaData, Table, create_engine, inspect, select, text

from storage import db, reference_repository, repository

T0 = datetime(2025, 11, 23, 12, 0, 0, tzinfo=UTC)
CK_A, CK_B = "a" * 32, "b" * 32
DS_STS, DS_RET = "1" * 64, "2" * 64


def _npy(values: list[float]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _rows() -> dict[str, list[dict[str, Any]]]:
    """Realistic rows of the first schema: two checkpoints (one trained), two datasets, runs of every
    kind and status, results with a NaN (NULL) value, and item scores."""
    info_a = {"name": "default", "num_layers": 6, "hidden_size": 384, "prompts": {}, "label": "MiniLM é"}
    card = {"method": "starbucks", "pairs": [[1, 32], [6, 384]], "loss_curve": [0.5, 0.25]}
    checkpoints = [
        dict(id=1, name="default", kind="default", location="default", revision=None, fingerprint=CK_A,
             path="/opt/model", num_layers=6, hidden_size=384, embedding_dim=384, pooling="mean",
             similarity="cosine", max_seq_length=256, info=json.dumps(info_a), training_card=None,
             created_at=T0),
        dict(id=2, name="/models/starbucks ü", kind="local", location="/models/starbucks ü", revision=None,
             fingerprint=CK_B, path="/models/starbucks ü", num_layers=6, hidden_size=384, embedding_dim=384,
             pooling="cls", similarity="cosine", max_seq_length=128, info=json.dumps({"label": "sb"}),
             training_card=json.dumps(card), created_at=T0 + timedelta(minutes=5)),
    ]  # fmt: skip
    datasets = [
        dict(id=1, name="stsb-test", kind="sts", path="/data/stsb/test.tsv", split="test", fingerprint=DS_STS,
             n_items=3, info=json.dumps({"pairs": 3}), created_at=T0),
        dict(id=2, name="cranfield", kind="retrieval", path="/data/cranfield", split="test",
             fingerprint=DS_RET, n_items=2, info=json.dumps({"documents": 1400}), created_at=T0),
    ]  # fmt: skip
    statuses = ["completed", "interrupted", "failed", "running", "cancelled"]
    runs = []
    for i, status in enumerate(statuses, start=1):
        runs.append(
            dict(id=i, kind=("evaluate", "evaluate", "cost", "evaluate", "train")[i - 1],
                 checkpoint_fp=CK_A if i % 2 else CK_B, dataset_fp=DS_STS if i != 3 else None,
                 status=status, params=json.dumps({"layers": [1, 6], "dims": [32, 384]}),
                 cells_total=4, cells_done=4 if status == "completed" else 2,
                 provenance=json.dumps({"torch": "2.13.0", "cpu": "x86"}),
                 started_at=T0 + timedelta(hours=i), ended_at=None if status == "running" else T0 + timedelta(hours=i, minutes=3),
                 wall_time_s=None if status == "running" else 180.5, error_text="boom" if status == "failed" else None,
                 pid=1000 + i, host="lab-host", heartbeat_at=T0 + timedelta(hours=i, minutes=1))
        )  # fmt: skip
    results, items = [], []
    rid = iid = 0
    for layer in (1, 6):
        for dim in (32, 384):
            for metric, value in (
                ("cosine_spearman", 0.5 + layer / 100 + dim / 10000),
                ("cosine_pearson", None),
            ):
                rid += 1
                results.append(
                    dict(id=rid, run_id=1, checkpoint_fp=CK_A, dataset_fp=DS_STS, split="test", layer=layer,
                         dim=dim, precision="float32", metric=metric, value=value, created_at=T0)
                )  # fmt: skip
            iid += 1
            items.append(
                dict(id=iid, run_id=1, checkpoint_fp=CK_A, dataset_fp=DS_STS, split="test", layer=layer,
                     dim=dim, precision="float32", kind="pair_similarity", n_items=3,
                     ids=json.dumps(["0", "1", "2"]), values_npy=_npy([0.1 * layer, 0.2, dim / 1000]),
                     created_at=T0)
            )  # fmt: skip
    results.append(
        dict(id=rid + 1, run_id=2, checkpoint_fp=CK_B, dataset_fp=DS_RET, split="test", layer=6, dim=384,
             precision="int8", metric="ndcg_at_10", value=0.25, created_at=T0)
    )  # fmt: skip
    return {
        "checkpoints": checkpoints,
        "datasets": datasets,
        "runs": runs,
        "results": results,
        "item_scores": items,
    }


def _snapshot(url: str, tables: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Every row of ``tables`` (only the given columns), ordered by id, as plain Python values."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        out = {}
        with engine.connect() as conn:
            for name, columns in tables.items():
                table = Table(name, meta, autoload_with=conn)
                rows = conn.execute(select(*[table.c[c] for c in columns]).order_by(table.c.id)).all()
                out[name] = [tuple(_plain(v) for v in row) for row in rows]
        return out
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def test_rows_written_at_the_oldest_revision_survive_upgrade_to_head(db_url: str) -> None:
    revisions = db.known_revisions()
    oldest = revisions[0]
    db.migrate(db_url, oldest)
    assert db.current_revision(db_url) == oldest
    rows = _rows()
    engine = db.get_engine(db_url)
    with engine.begin() as conn:
        old_columns = {table: [c["name"] for c in inspect(conn).get_columns(table)] for table in rows}
        for table, records in rows.items():
            for record in records:
                assert set(record) == set(old_columns[table]), table  # SQL valid at the oldest revision
                columns = ", ".join(record)
                params = ", ".join(f":{k}" for k in record)
                conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), record)
    before = _snapshot(db_url, old_columns)
    assert {t: len(v) for t, v in before.items()} == {t: len(v) for t, v in rows.items()}

    db.migrate(db_url, "head")
    assert db.current_revision(db_url) == db.head_revision() == revisions[-1]

    engine = db.get_engine(db_url)
    with engine.connect() as conn:
        new_columns = {table: {c["name"] for c in inspect(conn).get_columns(table)} for table in rows}
    for table, columns in old_columns.items():
        assert set(columns) <= new_columns[table], f"{table} lost columns {set(columns) - new_columns[table]}"
    after = _snapshot(db_url, old_columns)
    assert after == before  # every row, every value

    # Today's code reads the old rows.
    factory = db.init_db(db_url)
    with factory() as s:
        trained = repository.get_checkpoint(s, CK_B)
        assert trained is not None and trained.training_card == rows_card()
        frame = repository.results_frame(s, checkpoint_fp=CK_A)
        assert len(frame) == 8 and frame["value"].isna().sum() == 4  # NULL still reads as NaN
        spearman = frame[(frame.metric == "cosine_spearman") & (frame.layer == 6) & (frame.dim == 384)]
        assert math.isclose(float(spearman["value"].iloc[0]), 0.5 + 0.06 + 0.0384)
        runs = repository.list_runs(s)
        assert sorted(r.status for r in runs) == sorted(
            ["completed", "interrupted", "failed", "running", "cancelled"]
        )
        scores = repository.get_item_scores(
            s, checkpoint_fp=CK_A, dataset_fp=DS_STS, split="test", layer=6, dim=384,
            precision="float32", kind="pair_similarity",
        )  # fmt: skip
        assert scores is not None and scores.ids == ["0", "1", "2"]
        np.testing.assert_allclose(scores.values, [0.6, 0.2, 0.384], rtol=1e-6)
        assert repository.done_cells(s, CK_A, DS_STS, "test", "cosine_spearman") == {
            (1, 32, "float32"), (1, 384, "float32"), (6, 32, "float32"), (6, 384, "float32")
        }  # fmt: skip


def rows_card() -> dict[str, Any]:
    """The training card stored in the old rows."""
    return {"method": "starbucks", "pairs": [[1, 32], [6, 384]], "loss_curve": [0.5, 0.25]}


def test_every_single_migration_step_keeps_the_rows(db_url: str) -> None:
    """Upgrading revision by revision (as users who update often do) keeps every row too."""
    revisions = db.known_revisions()
    db.migrate(db_url, revisions[0])
    rows = _rows()
    with db.get_engine(db_url).begin() as conn:
        for table, records in rows.items():
            for record in records:
                columns = ", ".join(record)
                params = ", ".join(f":{k}" for k in record)
                conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), record)
    columns = {t: list(rows[t][0]) for t in rows}
    before = _snapshot(db_url, columns)
    for revision in revisions[1:]:
        db.migrate(db_url, revision)
        assert db.current_revision(db_url) == revision
        assert _snapshot(db_url, columns) == before, revision


def test_run_ids_are_never_reused_after_a_delete(db_url: str) -> None:
    """Issue 14: deleting the newest run must not hand its id to the next run (exports name run ids)."""
    from core.lab import runs as lab_runs
    from storage import db as storage_db
    from storage import repository as repo

    factory = storage_db.init_db(db_url)
    fp = "f" * 64
    with factory() as s, s.begin():
        repo.upsert_checkpoint(s, name="ids", kind="local", location="/x", revision=None, fingerprint=fp,
                               path="/x", num_layers=1, hidden_size=8, embedding_dim=8, pooling="mean",
                               similarity="cosine", max_seq_length=16)  # fmt: skip

    def start() -> int:
        with factory() as s, s.begin():
            return repo.start_run(s, "evaluate", fp, None, {}, 1, {}).id

    first, second = start(), start()
    lab_runs.delete_run(factory, second)
    third = start()
    assert first < second < third


def test_existing_checkpoints_get_the_display_names_the_pages_gave_them(db_url: str) -> None:
    """Migration 0007 (issue 14): ``default``, else the stored label, else the folder; a clash keeps the
    older row's name and gives the newer ``name@<fingerprint prefix>``; new rows get the same rule."""
    db.migrate(db_url, "0006_reference_file_stats")
    base = dict(kind="local", revision=None, num_layers=2, hidden_size=8, embedding_dim=8, pooling="mean",
                similarity="cosine", max_seq_length=16, training_card=None)  # fmt: skip
    rows = [
        dict(base, name="default", kind="default", location="default", path="/opt/m", fingerprint=CK_A,
             info=json.dumps({"label": "all-MiniLM-L6-v2"}), created_at=T0),
        dict(base, name="/runs/sb", location="/runs/sb", path="/runs/sb", fingerprint=CK_B,
             info=json.dumps({"label": "starbucks (from default)"}), created_at=T0 + timedelta(minutes=1)),
        dict(base, name="/runs/sb2", location="/runs/sb2", path="/runs/sb2", fingerprint="c" * 32,
             info=json.dumps({"label": "starbucks (from default)"}), created_at=T0 + timedelta(minutes=2)),
        dict(base, name="/models/plain/", location="/models/plain/", path="/models/plain",
             fingerprint="d" * 32, info=json.dumps({}), created_at=T0 + timedelta(minutes=3)),
    ]  # fmt: skip
    with db.get_engine(db_url).begin() as conn:
        for record in rows:
            columns, params = ", ".join(record), ", ".join(f":{k}" for k in record)
            conn.execute(text(f"INSERT INTO checkpoints ({columns}) VALUES ({params})"), record)
    db.migrate(db_url, "head")
    factory = db.init_db(db_url)
    with factory() as s, s.begin():
        aliases = {r.fingerprint: r.alias for r in repository.list_checkpoints(s)}
        assert aliases == {
            CK_A: "default",
            CK_B: "starbucks (from default)",
            "c" * 32: "starbucks (from default)@cccccc",
            "d" * 32: "plain",
        }
        # a new checkpoint whose default name is taken gets the fingerprint prefix; a refresh keeps a rename
        fresh = dict(base, name="/other/plain", location="/other/plain", path="/other/plain",
                     fingerprint="e" * 32, alias="plain")  # fmt: skip
        fresh.pop("training_card")
        assert repository.upsert_checkpoint(s, **fresh).alias == "plain@eeeeee"
        repository.set_checkpoint_alias(s, "e" * 32, "mine")
        assert repository.upsert_checkpoint(s, **fresh).alias == "mine"


def test_reference_scores_are_packed_into_their_task_files_rows(db_url: str) -> None:
    """Migration 0008 (issue 13): each task file's score rows move into its ``reference_results`` row
    (JSON ``[[split, subset, metric, value], ...]``, ``n_scores``) and ``reference_scores`` is dropped;
    every score survives, NULL values and a file without scores included, and so does a downgrade back."""
    db.migrate(db_url, "0007_checkpoint_alias")
    key = "result_id, split, subset, metric"
    with db.get_engine(db_url).begin() as conn:
        conn.execute(
            text("INSERT INTO reference_models (name, revision) VALUES ('a/m', 'r1'), ('b/n', 'external')")
        )
        models = dict(conn.execute(text("SELECT name, id FROM reference_models")).all())
        for model, task in (
            ("a/m", "STSBenchmark"),
            ("a/m", "SciFact"),
            ("b/n", "STSBenchmark"),
            ("b/n", "Empty"),
        ):
            conn.execute(
                text(
                    "INSERT INTO reference_results (model_id, task, source_path, sha256) VALUES (:m, :t, :p, :h)"
                ),
                {"m": models[model], "t": task, "p": f"results/{model}/{task}.json", "h": "f" * 64},
            )
        results = conn.execute(text("SELECT id FROM reference_results ORDER BY id")).scalars().all()
        scores = [
            (results[0], "test", "default", "main_score", 0.85863),
            (results[0], "test", "default", "cosine_spearman", 0.85863),
            (results[0], "test", "en-dé", "main_score", None),  # NaN in the file; a non-ASCII subset
            (results[1], "test", "default", "ndcg_at_10", 0.5),
            (results[2], "validation", "default", "main_score", 0.79184),
        ]
        for row in reversed(scores):  # stored out of key order: the packing must not depend on it
            conn.execute(
                text(f"INSERT INTO reference_scores ({key}, value) VALUES (:r, :s, :u, :m, :v)"),
                dict(zip("rsumv", row, strict=True)),
            )
    expected = sorted(scores, key=lambda r: r[:4])
    db.migrate(db_url, "head")
    with db.get_engine(db_url).connect() as conn:
        assert "reference_scores" not in inspect(conn).get_table_names()
        packed = conn.execute(text("SELECT id, scores, n_scores FROM reference_results ORDER BY id")).all()
    unpacked = sorted((rid, *row) for rid, text_, _ in packed for row in json.loads(text_))
    assert [tuple(r) for r in unpacked] == expected
    assert [n for _, _, n in packed] == [3, 1, 1, 0] and packed[3][1] == "[]"
    # Today's code reads them as before (sorted by split, subset, metric; NULL as NaN) and counts them.
    factory = db.init_db(db_url)
    with factory() as s:
        frame = reference_repository.scores_frame(s, models=["a/m"], tasks=["STSBenchmark"])
        assert frame[["split", "subset", "metric"]].values.tolist() == [
            ["test", "default", "cosine_spearman"], ["test", "default", "main_score"], ["test", "en-dé", "main_score"]
        ]  # fmt: skip
        assert frame["value"].isna().tolist() == [False, False, True]
        assert reference_repository.count_scores(s) == 5
    db.migrate(db_url, "0007_checkpoint_alias")
    with db.get_engine(db_url).connect() as conn:
        assert {"scores", "n_scores"}.isdisjoint(
            c["name"] for c in inspect(conn).get_columns("reference_results")
        )
        back = conn.execute(text(f"SELECT {key}, value FROM reference_scores ORDER BY {key}")).all()
    assert [tuple(r) for r in back] == expected
