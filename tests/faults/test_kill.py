"""``kill -9`` half-way through a grid evaluation and a training run: nothing torn, nothing half-registered.

Each test starts the real CLI (``python -m core ...``) in a subprocess on a tiny real checkpoint, polls
the runs table like the app does, sends SIGKILL mid-run, then checks the database with the standard
``sqlite3`` module: integrity and foreign keys, no orphan or half-stored cell, exactly the cells the run
had committed. The run is then marked interrupted (``mark_interrupted_runs``, which ``evaluate`` and the
Runs page call), and running the same command again resumes it to results equal to an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.lab import evaluate
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

pytestmark = pytest.mark.slow

DIMS = list(range(2, 49, 2))  # 24 dims x 3 layers x 2 precisions = 144 cells: seconds of scoring
PRECISIONS = ["float32", "int8"]
N_CELLS = 3 * len(DIMS) * len(PRECISIONS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("kill") / "tiny", layers=3, hidden=48)


def _evaluate_args(tiny: Path, sts: Path) -> list[str]:
    return [
        "evaluate",
        "--checkpoint",
        str(tiny),
        "--dataset",
        str(sts),
        "--dims",
        ",".join(map(str, DIMS)),
        "--precision",
        ",".join(PRECISIONS),
        "--quiet",
        "--json",
    ]


def _run_state(database: Path, kind: str) -> tuple[int, str, int, int] | None:
    rows = support.query(
        database,
        "SELECT id, status, cells_done, cells_total FROM runs WHERE kind = ? ORDER BY id DESC LIMIT 1",
        (kind,),
    )
    return rows[0] if rows else None  # type: ignore[return-value]


def test_kill9_mid_grid_keeps_db_consistent_and_resume_equals_clean_run(tiny: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    database = home / "lab.sqlite3"
    sts = support.write_sts(tmp_path / "pairs.tsv", 120)
    env = support.lab_env(home, database)

    proc = support.start_cli(_evaluate_args(tiny, sts), env, tmp_path / "first.log")

    def half_way() -> bool:
        state = _run_state(database, "evaluate")
        return state is not None and state[1] == "running" and 3 <= state[2] <= N_CELLS - 20

    try:
        support.wait_for(half_way, proc, "the grid to be half-way")
    finally:
        support.kill9(proc)
    assert proc.returncode == -9

    # The database is consistent and holds exactly the cells the run had committed.
    assert support.consistency_problems(database) == []
    run_id, status, cells_done, cells_total = _run_state(database, "evaluate") or (0, "", 0, 0)
    assert (status, cells_total) == ("running", N_CELLS)  # nobody has looked yet
    assert 3 <= cells_done < N_CELLS
    assert support.cells_of_run(database, run_id) == cells_done  # progress and cells share a transaction

    # The run shows as interrupted once anyone looks (evaluate, results listing, the Runs page).
    factory = db.init_db(f"sqlite:///{database}")
    with factory() as s, s.begin():
        assert repository.mark_interrupted_runs(s) == 1
    with factory() as s:
        run = repository.get_run(s, run_id)
    assert run is not None and run.status == "interrupted" and str(run.pid) in (run.error_text or "")
    db.dispose_engines()

    # Running the same command again resumes the same run: no duplicate rows, every cell stored once.
    again = support.start_cli(_evaluate_args(tiny, sts), env, tmp_path / "second.log")
    assert again.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    assert support.consistency_problems(database) == []
    runs = support.query(database, "SELECT id, status, cells_done, cells_total FROM runs")
    assert runs == [(run_id, "completed", N_CELLS, N_CELLS)]
    resumed = support.results_table(database)
    assert len(resumed) == N_CELLS * 2  # cosine_spearman + cosine_pearson per cell
    log = (tmp_path / "second.log").read_text()
    printed = json.loads(log[log.index("[") :])
    assert len(printed) == N_CELLS * 2

    # Results equal an uninterrupted run's (fresh database and cache, same code in this process).
    clean_factory = db.init_db(f"sqlite:///{tmp_path / 'clean.sqlite3'}")
    clean = evaluate.evaluate_grid(
        str(tiny),
        str(sts),
        dims=DIMS,
        precisions=PRECISIONS,
        session_factory=clean_factory,
        cache=EmbeddingCache(tmp_path / "clean-cache"),
    )
    expected = {(int(r.layer), int(r.dim), r.precision, r.metric): r.value for r in clean.frame.itertuples()}
    got = {(k[3], k[4], k[5], k[6]): v for k, v in resumed.items()}
    assert got.keys() == expected.keys()
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], atol=1e-6)


def _train_module() -> str:
    """``core`` when ``python -m core train`` is wired, else the training CLI's own entry point."""
    from core.cli import main as cli

    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    return "core" if "train" in (subcommands or {}) else "core.training.cli"


def test_kill9_mid_training_registers_nothing_and_marks_run_interrupted(tiny: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    database = home / "lab.sqlite3"
    sts = support.write_sts(tmp_path / "train.tsv", 200, seed=1)
    output = tmp_path / "trained"
    env = support.lab_env(home, database)
    args = [
        "train",
        "--base",
        str(tiny),
        "--method",
        "starbucks",
        "--pairs",
        "1:16,3:48",
        "--dataset",
        str(sts),
        "--output",
        str(output),
        "--max-steps",
        "100000",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--quiet",
    ]
    module = _train_module()
    log = (tmp_path / "train.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=support.REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def training() -> bool:
        state = _run_state(database, "train")
        return state is not None and state[1] == "running" and state[2] >= 1

    try:
        support.wait_for(training, proc, "training to be under way")
    finally:
        support.kill9(proc)

    assert support.consistency_problems(database) == []
    assert not output.exists()  # the work folder is hidden; nothing a user could load as a checkpoint
    assert len(list(tmp_path.glob(".trained.partial-*"))) == 1  # the killed run's work folder
    cards = support.query(database, "SELECT name FROM checkpoints WHERE training_card IS NOT NULL")
    assert cards == []  # no half checkpoint registered
    names = [r[0] for r in support.query(database, "SELECT name FROM checkpoints")]
    assert names == [str(tiny)]  # only the base

    factory = db.init_db(f"sqlite:///{database}")
    with factory() as s, s.begin():
        assert repository.mark_interrupted_runs(s) == 1
    with factory() as s:
        (run,) = repository.list_runs(s, kind="train")
    assert run.status == "interrupted"
    db.dispose_engines()

    # Training again into the same output folder works and registers exactly the finished checkpoint.
    short = [*args]
    short[short.index("--max-steps") + 1] = "2"
    done = support.run([sys.executable, "-m", module, *short], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(output.resolve())
    assert list(tmp_path.glob(".trained.partial-*")) == []  # the dead run's leftovers were cleaned
    assert support.consistency_problems(database) == []
    trained = support.query(database, "SELECT path FROM checkpoints WHERE training_card IS NOT NULL")
    assert trained == [(str(output.resolve()),)]
    statuses = sorted(r[0] for r in support.query(database, "SELECT status FROM runs WHERE kind = 'train'"))
    assert statuses == ["completed", "interrupted"]
