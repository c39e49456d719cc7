"""Two CLI processes evaluating into one SQLite database at once, while the app-style reader polls it.

SQLite allows one writer at a time; the lab starts every transaction with ``BEGIN IMMEDIATE`` and waits
on a 30 s busy timeout, so concurrent writers queue instead of failing. These tests prove it end to end:
no "database is locked" (or any error) reaches a user, every row of both grids is stored exactly once,
and a reader doing what the Runs and Explore pages do (mark dead runs, list runs, read results) never
fails and never sees rows disappear.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.lab import evaluate
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

pytestmark = pytest.mark.slow

DIMS = list(range(4, 49, 4))  # 12 dims x 3 layers x 2 precisions = 72 cells per process


@pytest.fixture(scope="module")
def tinies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("concurrent")
    return (
        build_tiny_checkpoint(root / "tiny-a", layers=3, hidden=48, seed=0),
        build_tiny_checkpoint(root / "tiny-b", layers=3, hidden=48, seed=1),
    )


class AppReader(threading.Thread):
    """Polls the database like the app: mark dead runs (a write), list runs, read every result."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.counts: list[int] = []
        self.polls = 0

    def run(self) -> None:
        factory = db.init_db(self.url)
        while not self.stop.is_set():
            try:
                with factory() as s, s.begin():
                    repository.mark_interrupted_runs(s)
                    repository.list_runs(s)
                with factory() as s:
                    self.counts.append(len(repository.results_frame(s)))
                self.polls += 1
            except Exception as exc:  # any error here is what a user of the app would see
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)


def _args(checkpoint: Path, sts: Path, precisions: str) -> list[str]:
    return [
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        str(sts),
        "--dims",
        ",".join(map(str, DIMS)),
        "--precision",
        precisions,
        "--quiet",
    ]


def _run_two(tmp_path: Path, args_a: list[str], args_b: list[str]) -> tuple[Path, AppReader, list[str]]:
    home = tmp_path / "home"
    database = home / "lab.sqlite3"
    url = f"sqlite:///{database}"
    db.init_db(url)  # the app is open before the CLI starts
    env = support.lab_env(home, database)
    reader = AppReader(url)
    reader.start()
    # Hold the write lock while both start, so they really write at the same time: each blocks on its
    # first write (on the busy timeout, as a writer behind another writer does) and both go at release.
    lock = sqlite3.connect(str(database), timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    procs = [
        support.start_cli(args_a, env, tmp_path / "a.log"),
        support.start_cli(args_b, env, tmp_path / "b.log"),
    ]
    try:
        assert _wait_until_blocked(procs), "the two writers never waited on the write lock together"
        lock.execute("ROLLBACK")
        lock.close()
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        lock.close()  # no-op when already released
        for p in procs:
            if p.poll() is None:
                support.kill9(p)
        reader.stop.set()
        reader.join(timeout=60)
    logs = [(tmp_path / f"{n}.log").read_text() for n in "ab"]
    assert codes == [0, 0], logs
    return database, reader, logs


def _wait_until_blocked(procs: list, max_wait_s: float = 60.0) -> bool:
    """Wait until every process has used no CPU for a second (blocked on the lock); False after max_wait_s."""
    import psutil

    handles = [psutil.Process(p.pid) for p in procs]

    def cpu() -> list[float]:
        return [sum(h.cpu_times()[:2]) for h in handles]

    deadline = time.monotonic() + max_wait_s
    last = cpu()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu()
        if all(b - a < 0.05 for a, b in zip(last, now, strict=True)):
            return True
        last = now
    return False


def _assert_clean(database: Path, reader: AppReader, logs: list[str]) -> None:
    for log in logs:
        assert "locked" not in log.lower() and "Traceback" not in log and "error" not in log.lower(), log
    assert reader.errors == [] and reader.polls > 0
    assert reader.counts == sorted(reader.counts)  # rows only ever appear
    assert support.consistency_problems(database) == []
    # Both processes were writers at once: _run_two saw both blocked on the write lock together. Their
    # runs need not overlap in time afterwards: SQLite's lock is not fair (a waiter sleeps in its busy
    # handler while the holder may take the lock again), so one may finish before the other begins.
    # A process that finds every cell already stored computes nothing and opens no run (seen in CI: the
    # other writer finished the grid first, "0 cells computed, 72 reused"); every one that computed has one.
    computing = [log for log in logs if not re.search(r": 0 cells computed, \d+ reused", log)]
    runs = support.query(database, "SELECT status FROM runs")
    assert len(computing) >= 1 and [r[0] for r in runs] == ["completed"] * len(computing), logs


def test_two_writers_on_different_grids_lose_no_row(tinies: tuple[Path, Path], tmp_path: Path) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 60)
    a, b = tinies
    database, reader, logs = _run_two(
        tmp_path, _args(a, sts, "float32,float16"), _args(b, sts, "int8,binary")
    )
    _assert_clean(database, reader, logs)
    per_checkpoint = dict(
        support.query(
            database,
            "SELECT c.name, COUNT(*) FROM results r JOIN checkpoints c ON c.fingerprint = r.checkpoint_fp "
            "GROUP BY c.name",
        )
    )
    cells = 3 * len(DIMS) * 2
    assert per_checkpoint == {str(a): cells * 2, str(b): cells * 2}  # 2 metrics per cell
    item_rows = support.query(database, "SELECT COUNT(*) FROM item_scores")[0][0]
    assert item_rows == 2 * cells


def test_two_writers_on_the_same_grid_store_each_cell_once(tinies: tuple[Path, Path], tmp_path: Path) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 60)
    a, _ = tinies
    args = _args(a, sts, "float32,int8")
    database, reader, logs = _run_two(tmp_path, args, args)
    _assert_clean(database, reader, logs)
    stored = support.results_table(database)
    cells = 3 * len(DIMS) * 2
    assert len(stored) == cells * 2  # the natural key is unique: upserts, never duplicates

    clean = evaluate.evaluate_grid(
        str(a),
        str(sts),
        dims=DIMS,
        precisions=["float32", "int8"],
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'clean.sqlite3'}"),
        cache=EmbeddingCache(tmp_path / "clean-cache"),
    )
    expected = {(int(r.layer), int(r.dim), r.precision, r.metric): r.value for r in clean.frame.itertuples()}
    got = {(k[3], k[4], k[5], k[6]): v for k, v in stored.items()}
    keys = sorted(expected)
    assert sorted(got) == keys
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], atol=1e-6)


def test_app_pages_open_while_the_cli_writes(
    tinies: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Runs and Explore pages (AppTest) redrawn again and again while a CLI run writes."""
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[2]
    home = tmp_path / "home"
    database = home / "lab.sqlite3"
    monkeypatch.setenv("MLAB_DATABASE_URL", f"sqlite:///{database}")
    sts = support.write_sts(tmp_path / "pairs.tsv", 60)
    a, _ = tinies
    args = _args(a, sts, "float32,float16,int8,binary")
    proc = support.start_cli(args, support.lab_env(home, database), tmp_path / "cli.log")
    pages = [str(root / "pages" / "4_Runs.py"), str(root / "pages" / "1_Explore.py")]
    draws, problems = 0, []
    try:
        support.wait_for(
            lambda: bool(support.query(database, "SELECT id FROM runs")), proc, "the run to start"
        )
        while proc.poll() is None and draws < 40:
            at = AppTest.from_file(pages[draws % 2], default_timeout=120)
            at.query_params["checkpoint"] = str(a)
            at.query_params["dataset"] = str(sts)
            at.run()
            problems += [e.value for e in at.exception] + [e.value for e in at.error]
            draws += 1
        assert proc.wait(timeout=600) == 0, (tmp_path / "cli.log").read_text()
    finally:
        if proc.poll() is None:
            support.kill9(proc)
    print(f"\n{draws} page draws while the CLI wrote")
    assert draws >= 2 and problems == []
    assert support.consistency_problems(database) == []
    assert support.query(database, "SELECT status, cells_done, cells_total FROM runs") == [
        ("completed", 3 * len(DIMS) * 4, 3 * len(DIMS) * 4)
    ]
