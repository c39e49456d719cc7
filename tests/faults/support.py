"""Helpers of the fault tests: datasets to write, CLI subprocesses, database polls and consistency checks.

The checks read the SQLite file with the standard ``sqlite3`` module (read-only, busy timeout), never
through the code under test, so a broken repository cannot hide its own damage.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORDS = tuple(
    [
        "man",
        "woman",
        "child",
        "dog",
        "cat",
        "bird",
        "plays",
        "runs",
        "sleeps",
        "guitar",
        "piano",
        "onion",
        "market",
        "stock",
        "plane",
        "train",
        "bike",
        "park",
        "snow",
        "sofa",
        "river",
        "city",
        "house",
        "garden",
        "book",
        "letter",
        "music",
        "dinner",
        "morning",
        "evening",
        "quickly",
        "slowly",
        "red",
        "blue",
    ]
)


def write_sts(path: Path, n_pairs: int, seed: int = 0) -> Path:
    """A synthetic STS tsv of ``n_pairs`` distinct pairs with random gold scores (header + rows)."""
    rng = random.Random(seed)
    lines = ["sentence1\tsentence2\tscore"]
    for i in range(n_pairs):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        lines.append(f"{a} {i}\t{b}\t{rng.uniform(0, 5):.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def lab_env(home: Path, database: Path | None = None) -> dict[str, str]:
    """Environment of a CLI subprocess working in ``home`` (database, cache) with one torch thread."""
    database = database or home / "lab.sqlite3"
    return {
        **os.environ,
        "MLAB_HOME": str(home),
        "MLAB_DATABASE_URL": f"sqlite:///{database}",
        "MLAB_CACHE_DIR": str(home / "embedding-cache"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def start_cli(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m core ARGS`` in its own process group, stdout and stderr into ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "core", *args],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run(cmd: Sequence[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` from the repository root with ``env`` and wait; text output captured."""
    return subprocess.run(list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process (and its group) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def read_only(database: Path) -> Iterator[sqlite3.Connection]:
    """A read-only stdlib connection to a SQLite file, waiting on locks like the lab does."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def query(database: Path, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """Rows of one read-only query (empty when the database or its tables do not exist yet)."""
    if not database.exists():
        return []
    try:
        with read_only(database) as conn:
            return list(conn.execute(sql, params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc) or "unable to open" in str(exc):
            return []
        raise


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes] | None, what: str, timeout_s: float = 300
) -> None:
    """Poll ``condition`` every 20 ms until true; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def consistency_problems(database: Path) -> list[str]:
    """Everything wrong with a lab database: integrity, foreign keys, orphans, half-stored cells."""
    problems: list[str] = []
    with read_only(database) as conn:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        if integrity != "ok":
            problems.append(f"integrity_check: {integrity}")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            problems.append(f"foreign_key_check: {broken[:5]}")
        orphan_sql = {
            "results without run": "SELECT COUNT(*) FROM results WHERE run_id NOT IN (SELECT id FROM runs)",
            "item_scores without run": (
                "SELECT COUNT(*) FROM item_scores WHERE run_id NOT IN (SELECT id FROM runs)"
            ),
            "runs without checkpoint": (
                "SELECT COUNT(*) FROM runs WHERE checkpoint_fp NOT IN (SELECT fingerprint FROM checkpoints)"
            ),
            "results without dataset": (
                "SELECT COUNT(*) FROM results WHERE dataset_fp NOT IN (SELECT fingerprint FROM datasets)"
            ),
            # A cell is stored in one transaction: its metrics and its item scores, or nothing.
            "cells with metrics but no item scores": """
                SELECT COUNT(*) FROM (SELECT DISTINCT checkpoint_fp, dataset_fp, split, layer, dim, precision
                FROM results) r WHERE NOT EXISTS (SELECT 1 FROM item_scores i WHERE
                i.checkpoint_fp = r.checkpoint_fp AND i.dataset_fp = r.dataset_fp AND i.split = r.split
                AND i.layer = r.layer AND i.dim = r.dim AND i.precision = r.precision)""",
            "cells with item scores but no metrics": """
                SELECT COUNT(*) FROM (SELECT DISTINCT checkpoint_fp, dataset_fp, split, layer, dim, precision
                FROM item_scores) i WHERE NOT EXISTS (SELECT 1 FROM results r WHERE
                i.checkpoint_fp = r.checkpoint_fp AND i.dataset_fp = r.dataset_fp AND i.split = r.split
                AND i.layer = r.layer AND i.dim = r.dim AND i.precision = r.precision)""",
            "duplicate result keys": """
                SELECT COUNT(*) FROM (SELECT 1 FROM results GROUP BY checkpoint_fp, dataset_fp, split,
                layer, dim, precision, metric HAVING COUNT(*) > 1)""",
            "runs with more cells done than planned": "SELECT COUNT(*) FROM runs WHERE cells_done > cells_total",
        }
        for name, sql in orphan_sql.items():
            (count,) = conn.execute(sql).fetchone()
            if count:
                problems.append(f"{count} {name}")
    return problems


def cells_of_run(database: Path, run_id: int) -> int:
    """Distinct cells a run has stored results for."""
    rows = query(
        database,
        "SELECT COUNT(*) FROM (SELECT DISTINCT layer, dim, precision FROM results WHERE run_id = ?)",
        (run_id,),
    )
    return int(rows[0][0]) if rows else 0


def results_table(database: Path) -> dict[tuple[str, str, str, int, int, str, str], float | None]:
    """Every stored metric value by its natural key."""
    rows = query(
        database,
        "SELECT checkpoint_fp, dataset_fp, split, layer, dim, precision, metric, value FROM results",
    )
    return {tuple(r[:7]): r[7] for r in rows}  # type: ignore[misc]


def run_cli(argv: Sequence[str]) -> tuple[int, str, str]:
    """``python -m core ARGV`` in this process: (exit code, stdout, stderr); argparse exits included."""
    import io

    from core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code: int, stderr: str, *needles: str) -> str:
    """Exit 2 with exactly one ``error: ...`` line on stderr, no traceback; the line holds ``needles``."""
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def stored(home: Path) -> dict[str, int]:
    """Rows per lab table and files in the embedding cache (what a refused input must leave at zero)."""
    database = home / "lab.sqlite3"
    counts = {
        table: int((query(database, f"SELECT COUNT(*) FROM {table}") or [(0,)])[0][0])
        for table in ("runs", "results", "item_scores", "checkpoints", "datasets")
    }
    cache = home / "embedding-cache"
    counts["cache_files"] = sum(1 for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
    return counts


NOTHING_STORED = {
    "runs": 0,
    "results": 0,
    "item_scores": 0,
    "checkpoints": 0,
    "datasets": 0,
    "cache_files": 0,
}
