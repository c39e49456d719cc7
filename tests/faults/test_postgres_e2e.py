"""PostgreSQL end to end: ``MLAB_DATABASE_URL=postgresql+psycopg://...`` works unchanged.

Grid evaluation in-process, the CLI in a subprocess (only the environment variable differs from a
SQLite user's), and ``results`` listing, all against a real PostgreSQL server: the server named by
``MLAB_TEST_POSTGRES_URL`` (``.ci/run`` starts one on 127.0.0.1), in a fresh schema per test. Skipped,
with that reason, only where the variable is unset.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text

from core.cli import main as cli
from core.lab import evaluate
from core.lab.store import open_store
from core.submodels import EmbeddingCache
from storage import db
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

pytestmark = pytest.mark.postgres


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return build_tiny_checkpoint(tmp_path / "tiny", layers=2, hidden=32)


def _cli_json(*args: str) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_evaluate_and_results_on_postgres_unchanged(
    db_url: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert db_url.startswith("postgresql+psycopg://")
    monkeypatch.setenv("MLAB_DATABASE_URL", db_url)
    sts = support.write_sts(tmp_path / "pairs.tsv", 30)

    # In-process, with no session factory given: the engine finds the database from the setting alone.
    report = evaluate.evaluate_grid(
        str(tiny), str(sts), dims=[8, 32], precisions=["float32", "int8"], session_factory=open_store()
    )
    assert report.computed == 2 * 2 * 2 and report.run_id is not None
    again = evaluate.evaluate_grid(
        str(tiny), str(sts), dims=[8, 32], precisions=["float32", "int8"], session_factory=open_store()
    )
    assert again.computed == 0 and again.encoded_texts == 0  # stored on PostgreSQL, read back

    # The CLI in a subprocess, configured only by the environment (another grid of the same checkpoint).
    env = support.lab_env(tmp_path / "cli-home")
    env["MLAB_DATABASE_URL"] = db_url
    out = subprocess.run(
        [sys.executable, "-m", "core", "evaluate", "--checkpoint", str(tiny), "--dataset", str(sts),
         "--dims", "16", "--json", "--quiet"],
        cwd=support.REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert len(printed) == 2 * 2  # 2 layers x 1 dim x 2 metrics

    listed = _cli_json("results", "--format", "json", "--checkpoint", str(tiny))
    assert len(listed) == (8 + 2) * 2  # every cell of both grids, once
    by_key = {(r["layer"], r["dim"], r["precision"], r["metric"]): r["value"] for r in listed}
    for r in printed:
        assert by_key[(r["layer"], r["dim"], r["precision"], r["metric"])] == pytest.approx(r["value"])

    # Same numbers as the same grid on SQLite.
    sqlite = evaluate.evaluate_grid(
        str(tiny),
        str(sts),
        dims=[8, 32],
        precisions=["float32", "int8"],
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'same.sqlite3'}"),
        cache=EmbeddingCache(tmp_path / "sqlite-cache"),
    )
    expected = {(int(r.layer), int(r.dim), r.precision, r.metric): r.value for r in sqlite.frame.itertuples()}
    keys = sorted(expected)
    np.testing.assert_allclose([by_key[k] for k in keys], [expected[k] for k in keys], atol=1e-6)
    runs = _cli_json("checkpoints", "--json")
    assert any(r["name"] == str(tiny) for r in runs)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_cli_writers_on_postgres_store_each_cell_once(db_url: str, tiny: Path, tmp_path: Path) -> None:
    """Two processes evaluating the same grid into one PostgreSQL schema at once: both finish, no error
    reaches either user, each cell is stored once (concurrent upserts of one key wait, then update)."""
    sts = support.write_sts(tmp_path / "pairs.tsv", 40)
    dims = ",".join(str(d) for d in range(2, 33, 2))  # 16 dims x 2 layers x 2 precisions = 64 cells
    args = ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), "--dims", dims,
            "--precision", "float32,int8", "--quiet"]  # fmt: skip
    engine = db.get_engine(db_url)
    db.init_db(db_url)  # the schema exists before the lock below is taken
    # Hold a write lock on the results table while both start, so they really write at the same time:
    # each reads "nothing stored yet", opens its own run, encodes, and queues on its first result
    # write; only when both wait on the lock (seen in pg_locks) is it released and both go at once.
    holder = engine.connect()
    holder.execute(text("LOCK TABLE results IN EXCLUSIVE MODE"))
    procs = []
    try:
        for name in ("a", "b"):
            env = support.lab_env(tmp_path / f"home-{name}")  # separate caches: both really encode
            env["MLAB_DATABASE_URL"] = db_url
            procs.append(support.start_cli(args, env, tmp_path / f"{name}.log"))
        _wait_until_both_queue_on_results(engine, procs)
    finally:
        holder.rollback()
        holder.close()
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"{n}.log").read_text() for n in "ab"]
    assert codes == [0, 0], logs
    for log in logs:
        assert "error" not in log.lower() and "Traceback" not in log, log
    with engine.connect() as conn:
        results = conn.execute(text("SELECT COUNT(*) FROM results")).scalar_one()
        distinct = conn.execute(
            text("SELECT COUNT(*) FROM (SELECT DISTINCT layer, dim, precision, metric FROM results) t")
        ).scalar_one()
        items = conn.execute(text("SELECT COUNT(*) FROM item_scores")).scalar_one()
        statuses = [r[0] for r in conn.execute(text("SELECT status FROM runs"))]
    cells = 2 * 16 * 2
    assert results == distinct == cells * 2 and items == cells
    assert statuses == ["completed", "completed"]


def _wait_until_both_queue_on_results(
    engine: Engine, procs: list[subprocess.Popen[bytes]], max_wait_s: float = 300.0
) -> None:
    """Wait until two sessions wait for a lock on ``results`` (both writers queued), or fail."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text("SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND relation = 'results'::regclass")
            ).scalar_one()
        if waiting >= 2:
            return
        exited = [p.returncode for p in procs if p.poll() is not None]
        assert not exited, f"a writer exited before writing (codes {exited})"
        time.sleep(0.2)
    raise AssertionError("the two writers did not both queue on the results table in time")
