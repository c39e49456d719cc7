"""Reference models on the pages (issue 13): Curves stars beside a real grid, Compare's nearest models, Home's list.

The Curves test evaluates the real ``default`` (all-MiniLM-L6-v2) on the built-in ``stsb-test`` and finds
the published points of the shipped MTEB files (bge-small-en-v1.5 0.85863, snowflake-arctic-embed-xs
0.79184, hand-read off the files) in the same chart as the grid, whose (6, 384) cell is 0.8203.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from core import datasets, figures, mteb
from core.lab import evaluate
from core.lab import mteb as lab_mteb
from core.lab.store import open_store
from storage import db
from tests.pagedata import STS_DATASET, Lab, build_lab

ROOT = Path(__file__).resolve().parent.parent
HOME, COMPARE, CURVES = (str(ROOT / "pages" / p) for p in ("0_Home.py", "2_Compare.py", "3_Curves.py"))
TIMEOUT = 120


def _traces(at: AppTest) -> list[dict[str, Any]]:
    """The chart's traces as plain dicts, typed arrays (``{"dtype", "bdata"}``) decoded to lists."""
    (chart,) = list(at.get("plotly_chart"))
    traces = json.loads(chart.proto.spec)["data"]
    for trace in traces:
        for axis in ("x", "y"):
            v = trace.get(axis)
            if isinstance(v, dict):
                trace[axis] = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return traces


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_reference_figure_labels_every_point() -> None:
    points = pd.DataFrame({"model": ["BAAI/bge-small-en-v1.5", "x/y"], "revision": ["5c38ec7c40", "external"],
                           "x": [384, 768], "value": [0.8586, 0.8]})  # fmt: skip
    fig = figures.add_reference_models(go.Figure(), points)
    (trace,) = fig.data
    assert list(trace.x) == [384, 768] and list(trace.y) == [0.8586, 0.8]
    assert list(trace.text) == ["bge-small-en-v1.5", "y"] and trace.mode == "markers+text"
    assert list(trace.textposition) == ["top center", "top center"]  # different x: no need to alternate
    same_x = figures.add_reference_models(go.Figure(), points.assign(x=[384, 384])).data[0]
    assert list(same_x.textposition) == ["top center", "bottom center"]
    assert [list(c) for c in trace.customdata] == [["BAAI/bge-small-en-v1.5", "5c38ec7"], ["x/y", "external"]]
    assert figures.add_reference_models(go.Figure(), points.iloc[:0]).data == ()


def test_models_table_of_the_shipped_files() -> None:
    factory = open_store()
    lab_mteb.ensure_shipped(factory)
    summaries = lab_mteb.model_summaries(factory)
    table = mteb.models_table(summaries, lab_mteb.references(factory, split="test", subset="default"))
    table = table.set_index("model")
    assert len(table) == 12
    bge = table.loc["BAAI/bge-small-en-v1.5"]
    assert (bge["embed_dim"], bge["n_parameters"], bge["revisions"], bge["tasks"]) == (384, 33360512, 2, 10)
    assert round(bge["STSBenchmark"], 5) == 0.85863
    assert pd.isna(table.loc["mixedbread-ai/mxbai-embed-xsmall-v1", "STSBenchmark"])  # no STSBenchmark file


@pytest.fixture(scope="module")
def default_on_stsb(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real default evaluated on stsb-test (its full default grid), in a database of its own."""
    folder = tmp_path_factory.mktemp("default-stsb")
    url = f"sqlite:///{folder / 'lab.sqlite3'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_CACHE_DIR", str(folder / "cache"))
        evaluate.evaluate_grid(
            "default", datasets.builtin_datasets()["stsb-test"], session_factory=db.init_db(url)
        )
    db.dispose_engines()
    return url


@pytest.mark.slow
def test_curves_shows_published_models_beside_the_default_grid(
    default_on_stsb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAB_DATABASE_URL", default_on_stsb)
    at = AppTest.from_file(CURVES, default_timeout=TIMEOUT)
    at.query_params["dataset"] = "stsb-test"
    at.run()
    no_errors(at)
    assert at.toggle(key="curves_mteb").value is True
    traces = _traces(at)
    stars = [t for t in traces if t["name"] == "MTEB published"]
    assert len(stars) == 1
    published = dict(zip(stars[0]["text"], stars[0]["y"], strict=True))
    assert round(published["bge-small-en-v1.5"], 5) == 0.85863
    assert round(published["snowflake-arctic-embed-xs"], 5) == 0.79184  # from an `external` file
    assert len(published) == 11  # every shipped model with an STSBenchmark file
    xs = dict(zip(stars[0]["text"], stars[0]["x"], strict=True))
    assert xs["bge-small-en-v1.5"] == 4 * 384  # default x axis: bytes per vector (float32)
    grid = [v for t in traces if t["name"] == "default: grid" for v in t["y"]]
    assert len(grid) == 36 and round(max(grid), 4) == 0.8203  # (6, 384), MTEB's 0.82032 for MiniLM-L6
    captions = " ".join(c.value for c in at.caption)
    assert "Stars: 11 published models on MTEB's STSBenchmark" in captions
    assert "bge-small-en-v1.5 embed_dim: 384 (external) vs 512 (5c38ec7); using 384" in captions

    at.selectbox(key="curves_x").set_value("dim").run()
    no_errors(at)
    stars = next(t for t in _traces(at) if t["name"] == "MTEB published")
    assert dict(zip(stars["text"], stars["x"], strict=True))["mxbai-embed-2d-large-v1"] == 1024
    at.selectbox(key="curves_x").set_value("layers_used").run()
    assert not [t for t in _traces(at) if t["name"] == "MTEB published"]
    assert any("can be placed by embedding dims" in c.value for c in at.caption)


@pytest.fixture(scope="module")
def lab_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """The page tests' tiny lab, its two tiny checkpoints also evaluated (for real) on stsb-test."""
    folder = tmp_path_factory.mktemp("mteb-pagelab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_CACHE_DIR", str(folder / "cache"))
        built = build_lab(folder)
        factory = db.init_db(built.database_url)
        for path in built.checkpoints.values():
            evaluate.evaluate_grid(
                str(path), datasets.builtin_datasets()["stsb-test"], session_factory=factory
            )
    db.dispose_engines()
    return built


@pytest.fixture
def lab(lab_template: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("MLAB_DATABASE_URL", lab_template.database_url)
    yield lab_template


def test_compare_adds_the_nearest_published_models_per_size(lab: Lab) -> None:
    at = AppTest.from_file(COMPARE, default_timeout=TIMEOUT)
    at.query_params["dataset"] = "stsb-test"
    at.run()
    no_errors(at)
    assert not [e for e in at.dataframe if "model" in e.value.columns]  # off until asked
    at.toggle(key="compare_mteb").set_value(True).run()
    no_errors(at)
    near = next(e.value for e in at.dataframe if "published cosine_spearman" in e.value.columns)
    sizes = list(dict.fromkeys(near["size"]))
    assert len(sizes) >= 3 and len(near) == 2 * len(sizes)
    # tiny sub-models have <= 64 dims: the nearest published models are the 384-dim ones, ties by name
    for size in sizes:
        rows = near[near["size"] == size]
        assert rows["model"].tolist() == ["BAAI/bge-small-en-v1.5", "Mihaiii/gte-micro-v4"]
        assert rows["dims"].tolist() == [384, 384]
    assert round(near["published cosine_spearman"].iloc[0], 5) == 0.85863
    assert {"tiny-4x64", "tiny-3x48"} & set(near.columns)  # the lab's own values beside them


def test_home_lists_reference_models_and_the_conflict(lab: Lab) -> None:
    at = AppTest.from_file(HOME, default_timeout=TIMEOUT).run()
    no_errors(at)
    table = next(e.value for e in at.dataframe if "STSBenchmark" in e.value.columns)
    assert len(table) == 12 and "BAAI/bge-small-en-v1.5" in set(table["model"])
    assert any("embed_dim: 384 (external) vs 512" in c.value for c in at.caption)


def test_curves_on_a_dataset_without_an_mteb_task_shows_no_reference_toggle(lab: Lab) -> None:
    at = AppTest.from_file(CURVES, default_timeout=TIMEOUT)
    at.query_params["dataset"] = STS_DATASET
    at.run()
    no_errors(at)
    assert not [t for t in at.toggle if t.key == "curves_mteb"]
