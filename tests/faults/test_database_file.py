"""The SQLite file under outside pressure: a lock held too long, damaged pages, a read-only copy, a dead run.

Issue 15, rough edges: an outside writer holding the lock past the busy timeout gave a ``database is
locked`` traceback (now: one line saying what holds it and that nothing was lost); corruption inside
SQLite's data pages went unnoticed (now ``PRAGMA quick_check`` on open refuses the file, untouched);
``results`` and ``checkpoints`` refused a read-only database (reading must work); a killed run stayed
``running`` after ``results`` although docs/FAULTS.md said it is marked interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import db
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny", layers=2, hidden=16)


def _evaluate(tiny: Path, sts: Path, layers: str) -> tuple[int, str, str]:
    return support.run_cli(
        [
            "evaluate",
            "--checkpoint",
            str(tiny),
            "--dataset",
            str(sts),
            "--layers",
            layers,
            "--dims",
            "8",
            "--quiet",
        ]
    )


def test_a_lock_held_past_the_busy_timeout_names_its_holder_and_loses_nothing(
    tiny: Path, tmp_path: Path, lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 1500)  # the lab waits 30 s; the test 1.5 s
    db.dispose_engines()
    sts = support.write_sts(tmp_path / "pairs.tsv", 8)
    code, _, err = _evaluate(tiny, sts, "1")
    assert code == 0, err
    database = lab_env / "lab.sqlite3"
    before = support.results_table(database)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('holding', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        code, _, err = _evaluate(tiny, sts, "2")
        support.assert_one_error_line(code, err, "locked", f"pid {holder.pid}", "nothing was lost")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert support.results_table(database) == before  # every stored cell is still there
    assert support.consistency_problems(database) == []
    code, _, err = _evaluate(tiny, sts, "2")  # once the outside writer is gone, the same command works
    assert code == 0, err


def _damage_a_data_page(database: Path) -> None:
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()
    data = bytearray(database.read_bytes())
    start = (root - 1) * page_size
    data[start : start + page_size] = bytes([0xA5]) * page_size  # the results table's b-tree page
    database.write_bytes(bytes(data))


@pytest.mark.parametrize("command", [["results"], ["checkpoints"], ["evaluate"]])
def test_damaged_data_pages_are_refused_on_open_and_the_file_left_untouched(
    command: list[str], tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 8)
    assert _evaluate(tiny, sts, "1,2")[0] == 0
    db.dispose_engines()
    database = lab_env / "lab.sqlite3"
    _damage_a_data_page(database)
    damaged = database.read_bytes()
    argv = (
        command if command != ["evaluate"] else ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts)]
    )
    code, _, err = support.run_cli(argv)
    support.assert_one_error_line(code, err, str(database), "damaged", "nothing was changed")
    assert database.read_bytes() == damaged


def _as_non_root(argv: list[str]) -> list[str]:
    """Root ignores file permissions; a user namespace without a mapping drops that power."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare: a read-only file cannot be made here")
    return [unshare, "--user", *argv]


def test_results_and_checkpoints_read_a_read_only_database(tiny: Path, tmp_path: Path, lab_env: Path) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 8)
    code, _, err = _evaluate(tiny, sts, "1,2")
    assert code == 0, err
    db.dispose_engines()
    database = lab_env / "lab.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    expected = support.results_table(database)
    folder = tmp_path / "shared"
    folder.mkdir()
    copy = folder / "lab.sqlite3"
    shutil.copy(database, copy)
    copy.chmod(0o444)
    folder.chmod(0o555)
    env = {**support.lab_env(lab_env, copy), "MLAB_CACHE_DIR": str(tmp_path / "cache")}
    try:
        for command in (["results", "--format", "json"], ["checkpoints", "--json"]):
            done = support.run(_as_non_root([sys.executable, "-m", "core", *command]), env)
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
            if command[0] == "results":
                import json

                rows = json.loads(done.stdout)
                assert len(rows) == len(expected) == 2 * 2
            else:
                assert str(tiny) in done.stdout
    finally:
        folder.chmod(0o755)
        copy.chmod(0o644)
    assert support.results_table(copy) == expected


def test_results_marks_a_killed_run_interrupted(tiny: Path, tmp_path: Path, lab_env: Path) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 8)
    assert _evaluate(tiny, sts, "1")[0] == 0
    database = lab_env / "lab.sqlite3"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(gone.stdout)
    with sqlite3.connect(database) as conn:  # a run whose process was killed (kill -9 cannot clean up)
        conn.execute(
            "UPDATE runs SET status = 'running', ended_at = NULL, pid = ?, started_at = ?",
            (dead_pid, time.strftime("%Y-%m-%d %H:%M:%S")),
        )
    code, _, err = support.run_cli(["results"])
    assert code == 0, err
    assert support.query(database, "SELECT status FROM runs") == [("interrupted",)]
