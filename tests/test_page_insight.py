"""AppTest of the insight sections in Explore, Compare and Curves: what they show equals core.insight."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import datasets
from core.lab import evaluate, insight
from core.lab.insight import CellRef
from core.lab.store import open_store
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.pagedata import (
    STS_DATASET,
    Lab,
    build_lab,
    no_errors,
    run_page,
    write_sts,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180
PAPER_DATASET = "sick-r"  # named like a dataset of the Starbucks paper, so the reference shows


@pytest.fixture(scope="module")
def lab_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    folder = tmp_path_factory.mktemp("insightlab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(folder / "home"))
        lab = build_lab(folder)
        sick = write_sts(folder / "sick-r.tsv")
        sick.write_text(sick.read_text() + "A cat plays.\tA kitten is playing.\t4.0\n")  # its own content
        spec = datasets.DatasetSpec(PAPER_DATASET, datasets.STS, sick, "test")
        factory = db.init_db(lab.database_url)
        evaluate.evaluate_grid(str(lab.checkpoints["tiny-3x48"]), spec, dims=[16, 32, 48], session_factory=factory,
                               cache=EmbeddingCache(folder / "embedding-cache"))  # fmt: skip
        db.dispose_engines()
    return lab


@pytest.fixture
def lab(lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    copy = tmp_path / "lab.sqlite3"
    shutil.copy(lab_template.folder / "lab.sqlite3", copy)
    monkeypatch.setenv("MLAB_DATABASE_URL", f"sqlite:///{copy}")
    yield lab_template
    db.dispose_engines()


def run(page: str, **query: str) -> AppTest:
    return run_page(ROOT / "pages" / page, TIMEOUT, **query)


def fingerprint(lab: Lab, name: str) -> tuple[str, str]:
    factory = db.init_db(lab.database_url)
    with factory() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints[name]))
        dataset = repository.get_dataset(s, STS_DATASET)
    assert record is not None and dataset is not None
    return record.fingerprint, dataset.fingerprint


def test_explore_shows_the_losses_core_computes(lab: Lab) -> None:
    tiny = str(lab.checkpoints["tiny-3x48"])
    at = run("1_Explore.py", checkpoint=tiny, dataset=STS_DATASET, layer="1", dim="32")
    no_errors(at)
    options = at.selectbox(key="explore_loss_baseline").options
    assert options[0] == "the full model (3, 48)"
    assert any(o.startswith("tiny-4x64") for o in options)  # the other checkpoint's cell
    fp, dataset_fp = fingerprint(lab, "tiny-3x48")
    expected = insight.item_losses(
        lab.sts_spec, dataset_fp, CellRef(fp, 1, 32), CellRef(fp, 3, 48), session_factory=open_store()
    )
    shown = next(d.value for d in at.table if "rank error" in d.value.columns)
    assert len(shown) == 20
    assert shown["pair"].tolist() == expected["pair"].head(20).tolist()
    assert shown["loss"].tolist() == pytest.approx(expected["loss"].head(20).tolist())
    at.number_input(key="explore_loss_top").set_value(5).run()
    assert len(next(d.value for d in at.table if "rank error" in d.value.columns)) == 5


def test_compare_marks_tests_and_paper_columns(lab: Lab) -> None:
    at = run("2_Compare.py", dataset=PAPER_DATASET)
    assert at.info  # only one checkpoint has results on this dataset
    at = run("2_Compare.py", dataset=STS_DATASET)
    no_errors(at)
    assert any("significantly higher/lower" in c.value for c in at.caption)
    # a plain summary under the per-size table and under the delta heatmap, which carries the same marks
    summaries = [m.value for m in at.markdown if " vs " in m.value and "better at" in m.value]
    assert len(summaries) == 2 and " of 6 sizes" in summaries[1]
    delta_summary = summaries[0]  # the delta heatmap comes first: its diagonal cells both grids have
    delta = json.loads(at.get("plotly_chart")[2].proto.spec)["data"][0]
    shown_marks = sum(t.count("▲") + t.count("▼") for row in delta["text"] for t in row)
    better, worse = (int(re.search(rf"{word} at (\d+|none)", delta_summary).group(1).replace("none", "0"))  # type: ignore[union-attr]
                     for word in ("better", "worse"))  # fmt: skip
    assert shown_marks == better + worse
    assert not any("-0.000" in t for row in delta["text"] for t in row)
    table = next(d.value for d in at.dataframe if "p-value" in d.value.columns)
    assert table["test"].tolist() == ["bootstrap", "randomization"]
    # the default pick: A = first checkpoint's full size, B = second's, on the shared items
    a_name, b_name = (
        at.selectbox(key="compare_sig_A_ckpt").value,
        at.selectbox(key="compare_sig_B_ckpt").value,
    )
    assert a_name != b_name
    at.toggle(key="compare_paper").set_value(True).run()
    no_errors(at)
    assert any("reports no cosine Spearman on tiny-sts" in c.value for c in at.caption)


def test_compare_significance_equals_core(lab: Lab) -> None:
    at = run("2_Compare.py", dataset=STS_DATASET)
    at.selectbox(key="compare_sig_A_ckpt").select("tiny-3x48").run()
    at.selectbox(key="compare_sig_B_ckpt").select("tiny-4x64").run()
    at.selectbox(key="compare_sig_A_cell").select((1, 32)).run()
    at.select_slider(key="compare_sig_resamples").set_value(1000).run()
    no_errors(at)
    assert at.selectbox(key="compare_sig_B_cell").value == (4, 64)  # a checkpoint's full size by default
    table = next(d.value for d in at.dataframe if "p-value" in d.value.columns)
    (small, dataset_fp), (big, _) = fingerprint(lab, "tiny-3x48"), fingerprint(lab, "tiny-4x64")
    expected = insight.compare_cells(lab.sts_spec, dataset_fp, CellRef(small, 1, 32), CellRef(big, 4, 64),
                                     "cosine_spearman", 1000, session_factory=open_store())  # fmt: skip
    assert table["B - A"].tolist() == pytest.approx([expected["bootstrap"].delta] * 2)
    assert expected["bootstrap"].delta == pytest.approx(table["B"].iloc[0] - table["A"].iloc[0])
    assert table["p-value"].tolist() == pytest.approx([r.p_value for r in expected.values()])
    assert table["CI low"].iloc[0] == pytest.approx(expected["bootstrap"].ci_low)


def test_curves_paper_overlay(lab: Lab) -> None:
    tiny = str(lab.checkpoints["tiny-3x48"])
    at = run("3_Curves.py", dataset=PAPER_DATASET, checkpoints=tiny)
    no_errors(at)
    at.toggle(key="curves_paper").set_value(True).run()
    no_errors(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name") for trace in spec["data"]]
    assert "paper: SMAE-SRL (Starbucks)" in names and "paper: BERT-2DMSE" in names
    starbucks = next(t for t in spec["data"] if t.get("name") == "paper: SMAE-SRL (Starbucks)")
    y = starbucks["y"]  # plotly sends numeric arrays as base64 typed arrays
    values = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else y
    assert list(values) == pytest.approx(
        [0.7473, 0.7700, 0.7831, 0.7874, 0.7860, 0.7844]
    )  # SICK-R, as published
    at = run("3_Curves.py", dataset=STS_DATASET)
    at.toggle(key="curves_paper").set_value(True).run()
    assert any("reports no" in c.value for c in at.caption)
