"""Out-of-range knobs (a layer beyond the depth, a dim above the width or below 1, an unknown precision)
from the command line and from URL query params: refused with a message; nothing computed or stored.

The CLI is called in-process (``core.cli.main``) with stdout and stderr captured. The pages are driven
with Streamlit's AppTest on a populated lab (``tests.pagedata``), their URL given by ``at.query_params``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main as cli
from tests.faults import support
from tests.pagedata import (
    STS_DATASET,
    Lab,
    copy_lab_database,
)
from tests.tinymodel import build_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EXPLORE = str(ROOT / "pages" / "1_Explore.py")


def run_cli(*args: str) -> tuple[int, str, str]:
    """``python -m core ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("knobs") / "tiny", layers=3, hidden=48)


BAD_KNOBS = [
    (["--layers", "4"], "layer 4"),
    (["--layers", "-1"], "layer -1"),
    (["--layers", "1,2,99"], "layer 99"),
    (["--dims", "49"], "dim 49"),
    (["--dims", "0"], "dim 0"),
    (["--dims", "-3"], "dim -3"),
    (["--dims", "16,100000"], "dim 100000"),
    (["--precision", "int4"], "int4"),
    (["--precision", "float32,FP8"], "fp8"),
    (["--layers", "one"], "--layers"),
    (["--dims", "1.5"], "--dims"),
    (["--dims", ","], "--dims"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_KNOBS, ids=[" ".join(k) for k, _ in BAD_KNOBS])
def test_cli_refuses_out_of_range_knobs_and_stores_nothing(
    tiny: Path, tmp_path: Path, lab_env: Path, extra: list[str], named: str
) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 10)
    code, out, err = run_cli("evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), *extra)
    assert code == 2 and out == ""
    # One error line (in-process, a library's loading bar may precede it; a fresh CLI process has none).
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err
    assert named.lower() in errors[0].lower()
    database = lab_env / "lab.sqlite3"
    for table in ("runs", "results", "item_scores", "checkpoints", "datasets"):
        assert support.query(database, f"SELECT COUNT(*) FROM {table}") in ([], [(0,)]), table
    cache = lab_env / "embedding-cache"
    assert not cache.exists() or not any(cache.rglob("*.npy"))  # nothing encoded either


# ------------------------------------------------------------------------------------------ URL


@pytest.fixture
def lab(lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the populated lab database; yields its path."""
    url = copy_lab_database(lab_template, tmp_path)
    monkeypatch.setenv("MLAB_DATABASE_URL", url)
    yield Path(url.removeprefix("sqlite:///"))


def _snapshot(database: Path) -> tuple:
    return tuple(
        support.query(database, f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("runs", "results", "item_scores", "checkpoints", "datasets")
    )


URL_CASES = [
    {"layer": "99", "dim": "100000"},
    {"layer": "0", "dim": "0"},
    {"layer": "-4", "dim": "-1"},
    {"layer": "x", "dim": "1e9"},
    {"precision": "int4"},
    {"checkpoint": "no-such-checkpoint", "dataset": "../../etc/passwd", "metric": "drop table results"},
    {"checkpoints": ",,,nope", "layer": "3", "dim": "48", "precision": "binary"},
]


@pytest.mark.parametrize("query", URL_CASES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_url_knobs_out_of_range_are_refused_and_nothing_is_stored(lab: Path, query: dict[str, str]) -> None:
    before = _snapshot(lab)
    at = AppTest.from_file(EXPLORE, default_timeout=120)
    for key, value in {"dataset": STS_DATASET, **query}.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if query.get("dataset", STS_DATASET) == STS_DATASET:
        layer = at.slider(key="explore_layer").value
        assert 1 <= layer <= 4  # the page shows a sub-model that exists (tiny-4x64 or tiny-3x48)
    bad_numbers = [k for k in ("layer", "dim") if k in query and not _in_range(query[k])]
    for key in bad_numbers:
        assert any(key in w.value and query[key] in w.value for w in at.warning), (
            key,
            [w.value for w in at.warning],
        )
    assert _snapshot(lab) == before  # nothing computed or stored by merely opening a link


def _in_range(value: str) -> bool:
    try:
        return 1 <= int(value) <= 48
    except ValueError:
        return False


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--batch-size", "0"], "batch"),
        (["--seq-len", "100000"], "seq_len"),
        (["--seq-len", "1"], "seq_len"),
        (["--repeats", "0"], "repeats"),
        (["--warmup=-1"], "warmup"),
        (["--k", "0"], "k "),
        (["--precision", "int9"], "int9"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_refused_cost_knobs_leave_no_run_rows(
    extra: list[str], needle: str, tmp_path: Path, lab_env: Path
) -> None:
    """Issue 15: a refused cost knob used to leave a 'failed' run row; it is checked before a run opens."""
    from tests.tinymodel import build_tiny_checkpoint

    tiny = build_tiny_checkpoint(tmp_path / "tiny", layers=2, hidden=16)
    code, _, err = support.run_cli(["cost", "--checkpoint", str(tiny), "--repeats", "1", "--quiet", *extra])
    support.assert_one_error_line(code, err, needle)
    assert support.stored(lab_env)["runs"] == 0
