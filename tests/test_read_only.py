"""Read-only demo mode: write controls are absent from every page, core refuses the writes itself, and
every view plus the live Demo still works.

What the mode allows: every stored result, and the live Demo. What it refuses (issue 14: a public
visitor must not start a multi-minute CPU job): evaluating any cell not stored yet, registering
checkpoints or datasets, uploads, training, deleting runs and recomputing stored results. The Train
page is not in the navigation.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from common import settings
from core import datasets, demo
from core.lab import evaluate, queries, registry, runs
from core.lab.store import open_store
from core.lab.training import train
from core.submodels import EmbeddingCache
from core.training.loop import TrainConfig
from storage import db
from storage.models import Result, Run
from tests.pagedata import Lab, write_sts
from tests.tinymodel import build_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p) for p in (ROOT / "pages").glob("*.py"))
WRITE_WORDS = ("delete", "register", "upload", "train", "path", "checkpoint_text", "evaluate", "compute",
               "more_go", "resume")  # fmt: skip
TIMEOUT = 120


@pytest.fixture
def lab(lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """A private copy of the populated database, opened in read-only demo mode."""
    copy = tmp_path / "lab.sqlite3"
    shutil.copy(lab_template.folder / "lab.sqlite3", copy)
    url = f"sqlite:///{copy}"
    monkeypatch.setenv("MLAB_DATABASE_URL", url)
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    demo.clear_caches()
    yield Lab(
        lab_template.folder, url, lab_template.checkpoints, lab_template.sts_path, lab_template.sts_spec
    )
    db.dispose_engines()


def counts(lab: Lab) -> tuple[int, int]:
    factory = db.init_db(lab.database_url)
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(Result)) or 0), int(
            s.scalar(select(func.count()).select_from(Run)) or 0
        )


def run_page(path: str, **query: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def write_controls(at: AppTest) -> list[str]:
    keys = [
        w.key or "" for kind in ("button", "text_input", "text_area", "file_uploader") for w in at.get(kind)
    ]
    return [k for k in keys if any(word in k for word in WRITE_WORDS)] + [
        f"uploader {u.key}" for u in at.get("file_uploader")
    ]


@pytest.mark.parametrize("page", [str(ROOT / "app.py"), *PAGES], ids=lambda p: Path(p).stem)
def test_every_page_opens_without_write_controls(lab: Lab, page: str) -> None:
    at = run_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert write_controls(at) == []


def test_home_says_so_and_runs_page_has_no_delete(lab: Lab) -> None:
    at = run_page(str(ROOT / "app.py"))
    assert any("Read-only" in i.value for i in at.sidebar.info)
    runs = run_page(str(ROOT / "pages" / "4_Runs.py"))
    assert not [b for b in runs.button if "delete" in (b.key or "")]


def test_the_command_line_flag_turns_the_mode_on(
    lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(lab_template.folder / "lab.sqlite3", tmp_path / "lab.sqlite3")
    monkeypatch.setenv("MLAB_DATABASE_URL", f"sqlite:///{tmp_path / 'lab.sqlite3'}")
    monkeypatch.setenv("MLAB_READ_ONLY", "0")  # off; the teardown restores whatever was there before
    assert not settings.read_only()
    monkeypatch.setattr(sys, "argv", ["app.py", "--read-only"])  # streamlit run app.py -- --read-only
    at = run_page(str(ROOT / "app.py"))
    assert not at.exception
    assert settings.read_only()
    assert any("Read-only" in i.value for i in at.sidebar.info)
    assert not at.text_input and not at.file_uploader


def test_the_demo_still_works_and_links_hide_paths(lab: Lab) -> None:
    at = run_page(str(ROOT / "pages" / "5_Demo.py"))
    tiny_ref = next(r for r in at.selectbox(key="demo_a_ckpt").options if r != "default")
    assert "/" not in tiny_ref  # a fingerprint prefix, never a folder path
    at.selectbox(key="demo_a_ckpt").select(tiny_ref).run()
    at.selectbox(key="demo_b_ckpt").select(tiny_ref).run()
    at.selectbox(key="demo_corpus").select("Paste documents").run()
    at.text_area(key="demo_docs").input("wings give lift\nshock waves\nonions in butter").run()
    at.text_input(key="demo_query").input("supersonic shock").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.table) == 2 and len(at.table[0].value) == 3
    assert "/" not in at.query_params["a"] and "/" not in at.query_params["b"]


def test_core_refuses_every_write_and_nothing_is_stored(lab: Lab, tmp_path: Path) -> None:
    before = counts(lab)
    factory = db.init_db(lab.database_url)
    other = build_tiny_checkpoint(tmp_path / "unregistered", layers=2, hidden=32)
    new_path = write_sts(tmp_path / "new.tsv")
    new_path.write_text(new_path.read_text() + "One more pair.\tAnother pair.\t2.5\n")  # new content
    new_sts = datasets.DatasetSpec("new-sts", datasets.STS, new_path, "test")
    refusals = {
        "register checkpoint": lambda: registry.register_checkpoint(str(other), session_factory=factory),
        "register dataset": lambda: registry.register_dataset(new_sts, session_factory=factory),
        "upload": lambda: datasets.save_upload(
            b"sentence1\tsentence2\tscore\na\tb\t1\n", "x.tsv", tmp_path / "up"
        ),
        "train": lambda: train(
            TrainConfig(output_dir=str(tmp_path / "trained")), session_factory=open_store()
        ),
        "evaluate unregistered checkpoint": lambda: evaluate.evaluate_grid(
            str(other), lab.sts_spec, dims=[32], session_factory=factory, cache=EmbeddingCache(tmp_path / "c")
        ),
        "evaluate unregistered dataset": lambda: evaluate.evaluate_grid(
            str(lab.checkpoints["tiny-3x48"]), new_sts, dims=[32], session_factory=factory
        ),
        "rename": lambda: registry.rename_checkpoint(
            str(lab.checkpoints["tiny-3x48"]), "renamed", session_factory=factory
        ),
        "recompute": lambda: evaluate.evaluate_grid(
            str(lab.checkpoints["tiny-3x48"]),
            lab.sts_spec,
            dims=[48],
            session_factory=factory,
            recompute=True,
        ),
    }
    for action, call in refusals.items():
        with pytest.raises(settings.ReadOnlyError, match="read-only demo mode"):
            call()
            pytest.fail(f"{action} was not refused")
        assert counts(lab) == before, action
    run_id = queries.runs(factory)[0].id
    with pytest.raises(settings.ReadOnlyError, match="deleting a run"):
        runs.delete_run(factory, run_id)
    assert counts(lab) == before
    assert not (tmp_path / "up").exists() and not (tmp_path / "trained").exists()


def test_no_new_evaluation_but_stored_cells_read_back(lab: Lab, tmp_path: Path) -> None:
    before = counts(lab)
    factory = db.init_db(lab.database_url)
    with pytest.raises(settings.ReadOnlyError, match="evaluating 1 cells that are not stored yet"):
        evaluate.evaluate_grid(
            str(lab.checkpoints["tiny-3x48"]), lab.sts_spec, layers=[1], dims=[8], session_factory=factory,
            cache=EmbeddingCache(tmp_path / "cache"),
        )  # fmt: skip
    assert counts(lab) == before
    report = evaluate.evaluate_grid(  # every cell stored: read back, nothing computed or written
        str(lab.checkpoints["tiny-3x48"]), lab.sts_spec, layers=[1, 3], dims=[48], session_factory=factory,
        cache=EmbeddingCache(tmp_path / "cache"),
    )  # fmt: skip
    assert (report.computed, report.reused) == (0, 2) and counts(lab) == before


def test_navigation_has_no_train_page(lab: Lab) -> None:
    at = run_page(str(ROOT / "app.py"))
    assert not at.exception
    at.switch_page("pages/5_Demo.py")  # a page of the navigation
    with pytest.raises(ValueError, match=r"Could not find a navigation page .*6_Train\.py"):
        at.switch_page("pages/6_Train.py")
