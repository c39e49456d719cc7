"""One dataset, many names: datasets are identified by their content; names are aliases.

Issue 15, case 6: five byte-identical copies of an STS file under different names were computed five
times (an STS file's split was its file name, part of every result's key), ``results --format csv``
showed five identical rows per cell all named after the last file, and ``results --dataset <an
earlier path>`` said no such dataset. Now the first registration's name and split stay, every copy
reuses the stored cells, results are listed once, and any name of the content finds them.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny", layers=2, hidden=16)


def test_identical_copies_are_one_dataset_computed_once_and_listed_once(
    tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    first = support.write_sts(tmp_path / "pairs.tsv", 10)
    copies = [first]
    for name in ["copy-a.tsv", "other/dev.tsv", "zz.tsv", "Pairs Final.tsv"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        copies.append(Path(shutil.copy(first, tmp_path / name)))
    cells = 2 * 2  # layers 1-2 x dims 8, 16
    for i, path in enumerate(copies):
        code, out, err = support.run_cli(
            [
                "evaluate",
                "--checkpoint",
                str(tiny),
                "--dataset",
                str(path),
                "--dims",
                "8,16",
                "--json",
                "--quiet",
            ]
        )
        assert code == 0, err
        assert len(json.loads(out)) == cells * 2  # two metrics per cell, every time
        # Computed by the first evaluation only: one run, each cell's metrics stored once.
        database = lab_env / "lab.sqlite3"
        assert support.query(database, "SELECT COUNT(*) FROM runs") == [(1,)], i
        assert support.query(database, "SELECT COUNT(*) FROM results") == [(cells * 2,)], i
    database = lab_env / "lab.sqlite3"
    assert support.query(database, "SELECT COUNT(*) FROM datasets") == [(1,)]
    assert support.query(database, "SELECT COUNT(*) FROM runs") == [(1,)]
    code, out, err = support.run_cli(["results", "--format", "csv"])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == cells * 2  # each cell's metrics once
    assert {r["dataset"] for r in rows} == {str(first.resolve())}  # the first name stays
    for path in copies:  # every name of the content finds it
        code, out, err = support.run_cli(["results", "--dataset", str(path), "--format", "json"])
        assert code == 0, err
        assert len(json.loads(out)) == cells * 2


def test_a_changed_copy_is_another_dataset(tiny: Path, tmp_path: Path, lab_env: Path) -> None:
    first = support.write_sts(tmp_path / "pairs.tsv", 10)
    changed = support.write_sts(tmp_path / "changed.tsv", 10, seed=1)
    for path in (first, changed):
        code, _, err = support.run_cli(
            ["evaluate", "--checkpoint", str(tiny), "--dataset", str(path), "--dims", "8", "--quiet"]
        )
        assert code == 0, err
    assert support.query(lab_env / "lab.sqlite3", "SELECT COUNT(*) FROM datasets") == [(2,)]
    assert support.query(lab_env / "lab.sqlite3", "SELECT COUNT(*) FROM runs") == [(2,)]
