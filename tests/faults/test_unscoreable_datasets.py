"""Datasets that parse but cannot be scored are refused when they load, before anything is stored.

Issue 15, cases 1-2 and rough edges: a one-pair STS file (a correlation needs two pairs), constant gold
scores, a relevance grade beyond what trec_eval holds (pytrec_eval raised OverflowError/SystemError after
a run, a dataset row and cache files were stored), blank sentence or query texts, and a 1 MB header line
echoed whole in the error. The command line answers with one ``error:`` line and exit 2, the Home page
with one message and no traceback, and the database and the embedding cache stay empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
HEADER = "sentence1\tsentence2\tscore"


def _sts(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"{HEADER}\n{body}", encoding="utf-8")
    return path


def _beir(folder: Path, grade: str = "1", query_text: str = "a query") -> Path:
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "text": "a doc"}\n{"_id": "d2", "text": "another doc"}\n', encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": query_text}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq1\td1\t{grade}\n")
    return folder


CASES = {
    "one pair": (lambda d: _sts(d, "one_row.tsv", "a man plays\ta woman sings\t1\n"), "at least 2"),
    "constant gold": (
        lambda d: _sts(d, "flat.tsv", "a b\tc d\t3\ne f\tg h\t3\ni j\tk l\t3\n"),
        "scores that vary",
    ),
    "blank sentence": (lambda d: _sts(d, "blank.tsv", "a b\tc d\t1\n  \tg h\t2\n"), "sentence1 is blank"),
    "grade beyond a C int": (lambda d: _beir(d / "beir", "99999999999999999999999"), "outside"),
    "blank query": (lambda d: _beir(d / "beir", query_text="   "), "is blank"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny", layers=2, hidden=16)


@pytest.mark.parametrize("case", list(CASES))
def test_cli_refuses_unscoreable_dataset_and_stores_nothing(
    case: str, tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    make, reason = CASES[case]
    dataset = make(tmp_path)
    code, out, err = support.run_cli(
        ["evaluate", "--checkpoint", str(tiny), "--dataset", str(dataset), "--layers", "1", "--dims", "8"]
    )
    support.assert_one_error_line(code, err, reason)
    assert out == ""
    assert support.stored(lab_env) == support.NOTHING_STORED


@pytest.mark.parametrize("case", list(CASES))
def test_home_page_refuses_unscoreable_dataset_with_one_message(
    case: str, tmp_path: Path, lab_env: Path
) -> None:
    make, reason = CASES[case]
    dataset = make(tmp_path)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.text_input(key="home_dataset_path").input(str(dataset))
    at.button(key="home_dataset_go").click().run()
    assert not at.exception
    assert len(at.error) == 1 and reason in at.error[0].value
    assert not at.expander  # a user error: no traceback shown
    assert support.stored(lab_env)["datasets"] == 0


def test_upload_of_a_one_pair_file_is_refused_and_leaves_nothing(lab_env: Path) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.file_uploader(key="home_upload").upload("one.tsv", f"{HEADER}\na b\tc d\t1\n".encode())
    at.run()
    at.button(key="home_upload_go").click().run()
    assert not at.exception and len(at.error) == 1 and "one.tsv" in at.error[0].value
    assert "at least 2" in at.error[0].value
    assert support.stored(lab_env)["datasets"] == 0
    uploads = lab_env / "datasets"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_a_one_megabyte_header_is_cut_in_the_message(tmp_path: Path, lab_env: Path, tiny: Path) -> None:
    path = tmp_path / "wide.tsv"
    path.write_text("x" * 1_000_000 + "\n", encoding="utf-8")
    code, _, err = support.run_cli(
        ["evaluate", "--checkpoint", str(tiny), "--dataset", str(path), "--layers", "1", "--dims", "8"]
    )
    line = support.assert_one_error_line(code, err, "header has no column", "1000000 characters")
    assert len(line) < 600
    assert support.stored(lab_env) == support.NOTHING_STORED
