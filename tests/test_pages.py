"""AppTest of app.py and every page: fresh database, data, widgets, and numbers equal to the database's.

The populated lab (``tests/pagedata.py``) holds two tiny random-weight checkpoints of different shapes
(4 x 64 and 3 x 48) evaluated on a 24-pair STS file; each test works on its own copy of that database.
Timings of redraws on cached results are printed (run with ``-s`` to see them), never asserted.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from common import settings
from core import datasets, submodels, views
from core.lab import registry
from core.lab.evaluate import evaluate_grid
from core.lab.store import open_store
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.pagedata import (
    STS_DATASET,
    Lab,
    copy_lab_database,
    no_errors,
    run_page,
    write_sts,
)

ROOT = Path(__file__).resolve().parent.parent
HOME = str(ROOT / "app.py")
EXPLORE = str(ROOT / "pages" / "1_Explore.py")
COMPARE = str(ROOT / "pages" / "2_Compare.py")
CURVES = str(ROOT / "pages" / "3_Curves.py")
RUNS = str(ROOT / "pages" / "4_Runs.py")
PAGES = [EXPLORE, COMPARE, CURVES, RUNS]
TIMEOUT = 120


@pytest.fixture
def lab(lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """The populated lab on a private copy of its database (the checkpoint folders are shared, read-only)."""
    url = copy_lab_database(lab_template, tmp_path)
    monkeypatch.setenv("MLAB_DATABASE_URL", url)
    yield Lab(
        lab_template.folder, url, lab_template.checkpoints, lab_template.sts_path, lab_template.sts_spec
    )


def app(path: str, **query: str) -> AppTest:
    return run_page(path, TIMEOUT, **query)


def stored(lab: Lab, checkpoint: str) -> pd.DataFrame:
    factory = db.init_db(lab.database_url)
    with factory() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints[checkpoint]))
        assert record is not None
        frame = repository.results_frame(s, checkpoint_fp=record.fingerprint)
    return frame[frame["dataset"] == STS_DATASET]


def value_of(frame: pd.DataFrame, layer: int, dim: int, metric: str = "cosine_spearman") -> float:
    return views.cell_value(frame, metric, (layer, dim))


def shown_table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first ``st.dataframe`` holding these columns (dataframes are found by content, not key)."""
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no dataframe with columns {columns}")


def metric_value(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# ------------------------------------------------------------------------------ fresh database


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_fresh_database_pages_say_what_to_do_first(page: str) -> None:
    at = app(page)
    no_errors(at)
    assert len(at.info) == 1 and "Home" in at.info[0].value
    assert not at.get("plotly_chart")


def test_fresh_database_home_shows_default_not_evaluated() -> None:
    at = app(HOME)
    no_errors(at)
    status = shown_table(at, "dataset", "status")
    assert set(status["status"]) == {"not evaluated"}
    assert {"stsb-test", "cranfield"} <= set(status["dataset"])
    assert at.button(key="home_evaluate").label == "Evaluate the default grid"
    assert at.selectbox(key="home_dataset").value == "stsb-test"
    assert at.sidebar.text_input(key="home_checkpoint_text").label == "Local folder or hub id"
    assert at.sidebar.text_input(key="home_checkpoint_text").value == ""


# ------------------------------------------------------------------------------ Home


def test_home_registers_a_checkpoint_and_explains_bad_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = app(HOME)
    at.text_input(key="home_checkpoint_text").input(str(tmp_path / "no-such-model"))
    at.button(key="home_checkpoint_go").click().run()
    assert not at.exception and "does not exist" in at.error[0].value and "no-such-model" in at.error[0].value

    at.text_input(key="home_checkpoint_text").input("some-org/some-model@v1")
    started = time.perf_counter()
    at.button(key="home_checkpoint_go").click().run()
    print(f"\nunreachable hub reported in {time.perf_counter() - started:.2f} s")
    assert (
        not at.exception
        and "unreachable" in at.error[0].value
        and "some-org/some-model@v1" in at.error[0].value
    )

    from tests.tinymodel import build_tiny_checkpoint

    folder = build_tiny_checkpoint(tmp_path / "tiny-registered", layers=2, hidden=32)
    at.text_input(key="home_checkpoint_text").input(str(folder))
    at.button(key="home_checkpoint_go").click().run()
    no_errors(at)
    assert "2 layers x 32 dims" in at.success[0].value
    names = shown_table(at, "name", "fingerprint")["name"].tolist()
    assert str(folder) in names


def test_home_registers_datasets_by_path_and_upload(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\na\tb\tnot-a-number\n", encoding="utf-8")
    at = app(HOME)
    at.text_input(key="home_dataset_path").input(str(bad))
    at.button(key="home_dataset_go").click().run()
    assert not at.exception and "bad.tsv" in at.error[0].value and "line 2" in at.error[0].value

    (tmp_path / "mine").mkdir()
    good = write_sts(tmp_path / "mine" / "pairs.tsv")
    at.text_input(key="home_dataset_path").input(str(good))
    at.button(key="home_dataset_go").click().run()
    no_errors(at)
    assert "mine/pairs" in at.success[0].value and "24 items" in at.success[0].value

    lines = write_sts(tmp_path / "u.tsv").read_text(encoding="utf-8").splitlines()[:11]  # other content
    at.file_uploader(key="home_upload").upload("uploaded.tsv", "\n".join(lines).encode())
    at.run()
    at.button(key="home_upload_go").click().run()
    no_errors(at)
    assert "uploaded" in at.success[0].value
    with open_store()() as s:
        names = {d.name for d in repository.list_datasets(s)}
    assert {"mine/pairs", "uploaded"} <= names


JUNK_UPLOADS = {
    "binary.tsv": (bytes(range(256)) * 4, "binary.tsv, line 2: not valid UTF-8"),
    "columns.tsv": (b"a\tb\n1\t2\n", "columns.tsv, line 1: header has no column 'sentence1'"),
    "one.tsv": (b"sentence1\tsentence2\tscore\na\tb\t3\n", "one.tsv: 1 pair after the header"),
    "flat.tsv": (
        b"sentence1\tsentence2\tscore\na\tb\t2\nc\td\t2\ne\tf\t2\n",
        "flat.tsv: all 3 gold scores are 2; a correlation needs scores that vary",
    ),
    "notes.pdf": (b"%PDF-1.4", "notes.pdf: upload an STS .tsv file or a .zip of a BEIR folder"),
    "junk.zip": (b"PK\x03\x04 not really", "junk.zip: upload is not a valid zip file"),
}


@pytest.mark.parametrize("filename", list(JUNK_UPLOADS))
def test_home_refuses_a_junk_upload_naming_the_file_and_the_reason(filename: str) -> None:
    """A junk file gets one error line with its name and why (the CLI's checks), and nothing is stored."""
    data, message = JUNK_UPLOADS[filename]
    at = app(HOME)
    at.file_uploader(key="home_upload").upload(filename, data)
    at.run()
    if filename.endswith((".tsv", ".zip")):  # the right kind of file: checked when registered
        assert not at.error
        at.button(key="home_upload_go").click().run()
    else:  # a wrong kind of file is named at once, with no button to press
        assert not [b for b in at.button if b.key == "home_upload_go"]
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and errors[0].startswith(message), errors  # beside the uploader
    with open_store()() as s:
        assert repository.list_datasets(s) == []
    assert not list((settings.lab_home() / "datasets").glob("*/*"))


def test_home_renames_a_checkpoint_and_every_page_shows_the_new_name(lab: Lab) -> None:
    """Issue 14: one display name per checkpoint, editable on Home, checked, used by every page; links
    keep the stable name, so a link made before the rename still opens the same checkpoint."""
    deep = str(lab.checkpoints["tiny-4x64"])
    at = app(HOME)
    table = shown_table(at, "display name", "name")
    assert dict(zip(table["name"], table["display name"], strict=True))[deep] == "tiny-4x64"  # the folder

    # (the field takes at most 40 characters: the length bound is tested on core.lab.registry)
    for bad, why in (
        ("   ", "cannot be empty"),
        ("TINY-3X48", "is taken"),
        ("bell\u0007", "control characters"),
    ):
        at.selectbox(key="home_rename_checkpoint").set_value(registry_fp(lab, "tiny-4x64"))
        at.text_input(key="home_rename_alias").input(bad)
        at.button(key="home_rename_go").click().run()
        assert not at.exception and len(at.error) == 1 and why in at.error[0].value, (bad, at.error)
    at.text_input(key="home_rename_alias").input("  deep model ")
    at.button(key="home_rename_go").click().run()
    no_errors(at)
    assert "Renamed tiny-4x64 to deep model." in [m.value for m in at.success]
    table = shown_table(at, "display name", "name")
    assert dict(zip(table["name"], table["display name"], strict=True))[deep] == "deep model"

    explore = app(EXPLORE, checkpoint=deep, dataset=STS_DATASET)  # the old link still works
    no_errors(explore)
    picker = explore.selectbox(key="explore_checkpoint")
    assert picker.value == deep and "deep model (4 x 64)" in picker.options
    assert deep in (picker.help or "")  # the full name on hover
    assert "deep model: " in explore.get("plotly_chart")[0].proto.spec  # the chart title, for slides
    compare = app(COMPARE, dataset=STS_DATASET)
    no_errors(compare)
    assert "deep model (4 x 64)" in compare.multiselect(key="compare_checkpoints").options
    runs = app(RUNS)
    assert "deep model" in set(shown_table(runs, "id", "checkpoint")["checkpoint"])
    with open_store()() as s:
        assert repository.get_checkpoint(s, deep).alias == "deep model"  # type: ignore[union-attr]


def registry_fp(lab: Lab, name: str) -> str:
    with open_store()() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints[name]))
    assert record is not None
    return record.fingerprint


@pytest.mark.slow
def test_home_evaluates_the_default_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one button on a small built-in (an extra data dir holding a 24-pair 'biosses' file)."""
    extra = tmp_path / "extra"
    (extra / "sts" / "biosses").mkdir(parents=True)
    write_sts(extra / "sts" / "biosses" / "test.tsv")
    monkeypatch.setenv("MLAB_EXTRA_DATA", str(extra))
    at = app(HOME)
    at.selectbox(key="home_dataset").set_value("biosses").run()
    at.button(key="home_evaluate").click().run()
    no_errors(at)
    assert "36 cells computed, 0 already stored" in at.success[0].value  # 6 layers x 6 dims
    status = shown_table(at, "dataset", "status").set_index("dataset")
    assert status.loc["biosses", "status"] == "evaluated" and status.loc["biosses", "cells"] == "36/36"
    at.button(key="home_evaluate").click().run()  # a second press is instant: nothing to compute
    assert "0 cells computed, 36 already stored" in at.success[0].value


# ------------------------------------------------------------------------------ Explore


def test_explore_shows_the_database_numbers_and_follows_the_sliders(lab: Lab) -> None:
    deep = str(lab.checkpoints["tiny-4x64"])
    at = app(EXPLORE, checkpoint=deep, dataset=STS_DATASET)
    no_errors(at)
    frame = stored(lab, "tiny-4x64")
    layer, dim = at.slider(key="explore_layer").value, at.select_slider(key="explore_dim_snap").value
    assert (layer, dim) == submodels.default_diagonal(4, 64)[3]  # the middle diagonal pair
    assert metric_value(at, "cosine Spearman") == f"{value_of(frame, layer, dim):.4f}"
    share = value_of(frame, layer, dim) / value_of(frame, 4, 64)
    assert metric_value(at, "Share of full model") == f"{share:.1%}"
    assert metric_value(at, "Layers used") == f"{layer} / 4"
    assert metric_value(at, "Bytes per vector") == f"{4 * dim:,}"
    table = shown_table(at, "metric", "share of full").set_index("metric")
    assert table.loc["cosine Pearson", "value"] == pytest.approx(
        value_of(frame, layer, dim, "cosine_pearson")
    )

    at.slider(key="explore_layer").set_value(1).run()
    at.select_slider(key="explore_dim_snap").set_value(64).run()
    no_errors(at)
    assert metric_value(at, "cosine Spearman") == f"{value_of(frame, 1, 64):.4f}"
    assert at.query_params["layer"] == "1" and at.query_params["dim"] == "64"
    heat = json.loads(at.get("plotly_chart")[0].proto.spec)  # the heatmap: the database's values
    trace = heat["data"][0]
    z = trace["z"]  # plotly ships arrays as base64 typed buffers
    z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(
        [int(n) for n in str(z["shape"]).split(",")]
    )
    row, col = list(trace["y"]).index("1"), list(trace["x"]).index("64")
    assert z[row, col] == pytest.approx(value_of(frame, 1, 64), abs=1e-9)
    selected = [s for s in heat["layout"]["shapes"] if s["line"]["dash"] == "solid"]  # red box: the selection
    assert len(selected) == 1
    assert selected[0]["x0"] < col < selected[0]["x1"] and selected[0]["y0"] < row < selected[0]["y1"]

    at.selectbox(key="explore_metric").set_value("cosine_pearson").run()
    assert metric_value(at, "cosine Pearson") == f"{value_of(frame, 1, 64, 'cosine_pearson'):.4f}"


def test_explore_url_restores_the_view_and_free_dim_computes_on_request(lab: Lab) -> None:
    shallow = str(lab.checkpoints["tiny-3x48"])
    at = app(EXPLORE, checkpoint=shallow, dataset=STS_DATASET, layer="2", dim="40")
    no_errors(at)
    assert at.selectbox(key="explore_checkpoint").value == shallow
    assert at.slider(key="explore_layer").value == 2 and at.select_slider(key="explore_dim_snap").value == 40
    at.toggle(key="explore_free_dim").set_value(True).run()
    at.slider(key="explore_dim_free").set_value(21).run()
    assert "(2, 21)" in at.warning[0].value and "not evaluated" in at.warning[0].value
    at.button(key="explore_compute_cell").click().run()
    no_errors(at)
    computed = value_of(stored(lab, "tiny-3x48"), 2, 21)
    assert not math.isnan(computed)
    assert metric_value(at, "cosine Spearman") == f"{computed:.4f}"


def test_explore_offers_to_evaluate_a_checkpoint_without_results(lab: Lab, tmp_path: Path) -> None:
    other = write_sts(tmp_path / "other.tsv", 20)  # other content: another dataset fingerprint
    registry.register_dataset(
        datasets.DatasetSpec("other-sts", "sts", str(other), "test"), session_factory=open_store()
    )
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset="other-sts")
    no_errors(at)
    assert "no float32 results on **other-sts**" in at.info[0].value
    at.button(key="explore_evaluate").click().run()
    no_errors(at)
    diagonal = submodels.default_diagonal(3, 48)
    layer, dim = diagonal[len(diagonal) // 2]  # the grid is now stored: the middle pair is selected
    assert (at.slider(key="explore_layer").value, at.select_slider(key="explore_dim_snap").value) == (
        layer,
        dim,
    )
    with open_store()() as s:
        fp = repository.get_checkpoint(s, str(lab.checkpoints["tiny-3x48"])).fingerprint  # type: ignore[union-attr]
        frame = repository.results_frame(s, checkpoint_fp=fp)
    frame = frame[frame["dataset"] == "other-sts"]
    assert len(views.cells_of(frame, "cosine_spearman")) == 3 * len(views.default_grid_dims(3, 48))
    assert metric_value(at, "cosine Spearman") == f"{value_of(frame, layer, dim):.4f}"


def test_switching_checkpoint_and_slider_on_cached_results_is_fast(lab: Lab) -> None:
    """Timings printed for the README/report; not asserted (a loaded CI machine would make them flaky)."""
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-4x64"]), dataset=STS_DATASET)
    timings: dict[str, list[float]] = {"slider": [], "checkpoint": [], "metric": []}
    refs = [str(lab.checkpoints["tiny-3x48"]), str(lab.checkpoints["tiny-4x64"])]
    for i in range(6):
        started = time.perf_counter()
        at.slider(key="explore_layer").set_value(1 + i % 3).run()
        timings["slider"].append(time.perf_counter() - started)
        started = time.perf_counter()
        at.selectbox(key="explore_checkpoint").set_value(refs[i % 2]).run()
        timings["checkpoint"].append(time.perf_counter() - started)
        started = time.perf_counter()
        at.selectbox(key="explore_metric").set_value(["cosine_pearson", "cosine_spearman"][i % 2]).run()
        timings["metric"].append(time.perf_counter() - started)
        no_errors(at)
    print()
    for what, values in timings.items():
        print(
            f"Explore redraw after {what} change: median {sorted(values)[len(values) // 2] * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"
        )


# ------------------------------------------------------------------------------ Compare


def test_compare_two_shapes_on_shared_cells(lab: Lab) -> None:
    at = app(COMPARE, dataset=STS_DATASET)
    no_errors(at)
    assert len(at.multiselect(key="compare_checkpoints").value) == 2
    deep, shallow = stored(lab, "tiny-4x64"), stored(lab, "tiny-3x48")
    table = at.table[0].value
    assert list(table.index) == [f"size {i}" for i in range(1, 7)] + ["mean"]
    for i, (k, d) in enumerate(submodels.default_diagonal(4, 64)):
        assert float(table.loc[f"size {i + 1}", "tiny-4x64"]) == pytest.approx(value_of(deep, k, d), abs=5e-5)
    for i, (k, d) in enumerate(submodels.default_diagonal(3, 48)):
        assert float(table.loc[f"size {i + 1}", "tiny-3x48"]) == pytest.approx(
            value_of(shallow, k, d), abs=5e-5
        )
    captions = " ".join(c.value for c in at.caption)
    assert "**tiny-4x64** lacks" in captions and "(4, " not in captions.split("tiny-3x48** lacks")[-1][:8]
    shared = views.cells_of(deep, "cosine_spearman") & views.cells_of(shallow, "cosine_spearman")
    assert f"{len(shared)} cells are shared by all" in captions
    assert len(at.get("plotly_chart")) == 3  # two grids and the delta

    at.selectbox(key="compare_b").set_value("tiny-3x48").run()
    assert any("Pick two different" in i.value for i in at.info)


def test_compare_needs_two_checkpoints(lab: Lab) -> None:
    at = app(COMPARE, dataset=STS_DATASET)
    at.multiselect(key="compare_checkpoints").set_value([str(lab.checkpoints["tiny-4x64"])]).run()
    no_errors(at)
    assert "at least two" in at.info[0].value


# ------------------------------------------------------------------------------ Curves


def test_curves_front_equals_the_database_pareto(lab: Lab) -> None:
    at = app(CURVES, dataset=STS_DATASET)
    no_errors(at)
    front = shown_table(at, "layer", "dim", "precision")
    frame = pd.concat([stored(lab, "tiny-4x64"), stored(lab, "tiny-3x48")])
    points = views.curve_points(frame, "cosine_spearman", {})
    expected = points[views.pareto_front(points, "bytes_per_vector")]
    assert sorted(
        zip(front["layer"], front["dim"], front["cosine_spearman"].round(6), strict=True)
    ) == sorted(zip(expected["layer"], expected["dim"], expected["value"].round(6), strict=True))
    assert at.download_button(key="curves_download").label == "Download the points as CSV"

    at.selectbox(key="curves_x").set_value("layers_used").run()
    at.toggle(key="curves_log_x").set_value(True).run()
    at.toggle(key="curves_show_grid").set_value(False).run()
    no_errors(at)
    front = shown_table(at, "layer", "dim", "precision")
    assert "layers_used" in front.columns


# ------------------------------------------------------------------------------ Runs


def test_runs_table_matches_the_database_and_delete_asks_first(lab: Lab) -> None:
    at = app(RUNS)
    no_errors(at)
    with open_store()() as s:
        runs = repository.list_runs(s)
    table = shown_table(at, "id", "done")
    assert table["id"].tolist() == [r.id for r in runs]
    assert table["done"].tolist() == [f"{r.cells_done}/{r.cells_total} cells" for r in runs]
    assert set(table["status"]) == {"completed"}
    assert at.download_button(key="runs_export_csv").label == "Download CSV"
    with open_store()() as s:
        n_values = sum(len(repository.results_frame(s, run_id=r.id)) for r in runs)
    assert f"{n_values} stored values from {len(runs)} runs" in " ".join(c.value for c in at.caption)

    victim = runs[0].id
    at.selectbox(key="runs_detail").set_value(victim).run()
    at.button(key="runs_delete").click().run()
    assert f"Delete run #{victim}" in at.warning[0].value
    at.button(key="runs_delete_no").click().run()
    assert not at.warning
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_yes").click().run()
    no_errors(at)
    with open_store()() as s:
        assert repository.get_run(s, victim) is None
    assert victim not in shown_table(at, "id", "done")["id"].tolist()


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_runs_resume_an_interrupted_run(lab: Lab, tmp_path: Path, backend: str) -> None:
    spec = datasets.DatasetSpec("resume-sts", "sts", str(write_sts(tmp_path / "resume.tsv", 16)), "test")

    def stop_after_two(phase: str, done: int, total: int) -> None:
        if phase == "score" and done == 2:
            raise KeyboardInterrupt  # what Ctrl-C does in the CLI

    with pytest.raises(KeyboardInterrupt):
        evaluate_grid(
            str(lab.checkpoints["tiny-3x48"]),
            spec,
            session_factory=open_store(),
            cache=EmbeddingCache(settings.cache_dir()),
            progress=stop_after_two,
            backend=backend,
        )
    with open_store()() as s:
        run = repository.list_runs(s, status="interrupted")[0]
    at = app(RUNS)
    at.multiselect(key="runs_status").set_value(["interrupted"]).run()
    assert shown_table(at, "id", "done")["done"].tolist() == [f"2/{run.cells_total} cells"]
    at.button(key="runs_resume").click().run()
    no_errors(at)
    assert f"Run #{run.id}: {run.cells_total - 2} cells computed, 2 reused" in at.success[0].value
    with open_store()() as s:
        resumed = repository.get_run(s, run.id)
    assert resumed is not None and resumed.status == "completed" and resumed.cells_done == run.cells_total
    with open_store()() as s:  # resumed on the run's own backend
        assert len(repository.results_frame(s, run_id=run.id, backend=backend)) == len(
            repository.results_frame(s, run_id=run.id, backend=None)
        )


# ------------------------------------------------------------------------------ across pages


def test_shared_state_follows_the_user_across_pages(lab: Lab) -> None:
    at = app(HOME)
    at.switch_page("pages/1_Explore.py").run()
    no_errors(at)
    at.selectbox(key="explore_dataset").set_value(STS_DATASET).run()
    at.selectbox(key="explore_checkpoint").set_value(str(lab.checkpoints["tiny-3x48"])).run()
    at.slider(key="explore_layer").set_value(2).run()
    at.switch_page("pages/2_Compare.py").run()
    no_errors(at)
    assert at.selectbox(key="compare_dataset").value == STS_DATASET
    assert at.multiselect(key="compare_checkpoints").value[0] == str(lab.checkpoints["tiny-3x48"])
    at.switch_page("pages/1_Explore.py").run()
    assert at.slider(key="explore_layer").value == 2  # the selection survives a visit elsewhere
    assert at.selectbox(key="explore_checkpoint").value == str(lab.checkpoints["tiny-3x48"])


def test_read_only_mode_hides_writes_and_core_refuses(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    at = app(HOME)
    no_errors(at)
    assert not at.text_input and not at.file_uploader
    assert "Read-only" in at.sidebar.info[0].value
    table = shown_table(at, "display name", "fingerprint")
    assert "name" not in table.columns and all("/" not in n for n in table["display name"])  # paths hidden
    assert not [t for t in at.text_input if t.key == "home_rename_alias"]  # no renaming either
    at = app(RUNS)
    assert not [b for b in at.button if b.key == "runs_delete"]
    with pytest.raises(settings.ReadOnlyError):
        registry.register_checkpoint(str(lab.checkpoints["tiny-3x48"]), session_factory=open_store())
    with pytest.raises(settings.ReadOnlyError):
        registry.register_dataset(lab.sts_spec, session_factory=open_store())


def test_explore_evaluates_more_cells_and_names_a_bad_knob(lab: Lab) -> None:
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset=STS_DATASET)
    at.text_input(key="explore_more_dims").input("12,999")
    at.button(key="explore_more_go").click().run()
    assert not at.exception and "999" in at.error[0].value and "tiny-3x48" in at.error[0].value
    at.text_input(key="explore_more_dims").input("12")
    at.text_input(key="explore_more_layers").input("1,3")
    at.multiselect(key="explore_more_precisions").set_value(["float32", "int8"])
    at.button(key="explore_more_go").click().run()
    no_errors(at)
    frame = stored(lab, "tiny-3x48")
    int8 = frame[(frame["precision"] == "int8") & (frame["metric"] == "cosine_spearman")]
    assert sorted(zip(int8["layer"], int8["dim"], strict=True)) == [(1, 12), (3, 12)]
    assert not math.isnan(value_of(frame, 3, 12))
    at.selectbox(key="explore_precision").set_value("int8").run()  # the knob now offers int8
    at.slider(key="explore_layer").set_value(3).run()
    no_errors(at)
    expected = views.cell_value(frame, "cosine_spearman", (3, 12), "int8")
    assert metric_value(at, "cosine Spearman") == f"{expected:.4f}"
    assert metric_value(at, "Bytes per vector") == "12"  # int8: one byte per dim


def test_streamlit_stop_during_an_evaluation_keeps_an_interrupted_run_that_resumes(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: Stop mid-evaluation records the run as interrupted (not failed), the bar says it stopped
    instead of freezing mid-way, and the same button resumes the run (same id) to the end.

    The Stop is Streamlit's own: the ScriptRunner's stop request is set after the 2nd scored cell (what
    the Stop button does), so the next ``st`` call raises StopException inside the evaluation.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from ui import progress

    update = progress.Bar.update

    def update_then_stop(self: progress.Bar, label: str, done: int, total: int, unit: str = "") -> None:
        update(self, label, done, total, unit)
        if label == "Scoring cells" and done == 2:
            ctx = get_script_run_ctx()
            assert ctx is not None and ctx.script_requests is not None
            ctx.script_requests.request_stop()

    monkeypatch.setattr(progress.Bar, "update", update_then_stop)
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset=STS_DATASET)
    at.text_input(key="explore_more_dims").input("8,20")
    at.button(key="explore_more_go").click().run()
    assert not at.exception and not at.error
    with open_store()() as s:
        (run,) = [r for r in repository.list_runs(s) if r.params.get("dims") == [8, 20]]
        stored_cells = len(repository.results_frame(s, run_id=run.id).groupby(["layer", "dim"]))
    assert (run.status, run.error_text) == ("interrupted", "stopped by the user")
    assert 2 <= run.cells_done == stored_cells < run.cells_total == 6  # what was stored is kept
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].proto.text.startswith(f"Stopped at scoring cells {run.cells_done}/6.")

    monkeypatch.setattr(progress.Bar, "update", update)  # no more stops: the same button resumes
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset=STS_DATASET)
    at.text_input(key="explore_more_dims").input("8,20")
    at.button(key="explore_more_go").click().run()
    no_errors(at)
    assert not at.get("progress")  # a finished evaluation removes its bar
    with open_store()() as s:
        resumed = repository.get_run(s, run.id)
        assert len(repository.results_frame(s, run_id=run.id).groupby(["layer", "dim"])) == 6
    assert (resumed.status, resumed.cells_done) == ("completed", 6)


# ------------------------------------------------------------------------------ honest links


def test_link_values_that_cannot_be_honoured_are_named(lab: Lab) -> None:
    at = app(EXPLORE, checkpoint="nope", dataset="no-such-set", metric="bogus", precision="int3")
    assert not at.exception and not at.error
    warnings = [w.value for w in at.warning]
    for expected in (
        "checkpoint='nope' was not used: no registered checkpoint has this name",
        "dataset='no-such-set' was not used: no built-in or registered dataset has this name",
        "metric='bogus' was not used: not a metric of sts datasets",
        "precision='int3' was not used: it is not a precision (stored: float32)",
    ):
        assert any(expected in w for w in warnings), (expected, warnings)
    at.run()  # the warnings are said once, not on every redraw
    assert not [w for w in at.warning if "was not used" in w.value]
    deep = str(lab.checkpoints["tiny-4x64"])
    at = app(EXPLORE, checkpoint=deep, dataset=STS_DATASET, layer="9", dim="64")
    assert [w.value for w in at.warning] == [
        "Link value layer='9' was not used: it is outside 1..4 for this checkpoint."
    ]


def test_compare_link_with_an_unknown_checkpoint_says_so_truthfully(lab: Lab) -> None:
    deep = str(lab.checkpoints["tiny-4x64"])
    at = app(COMPARE, dataset=STS_DATASET, checkpoints=f"{deep},nope")
    assert not at.exception and not at.error
    assert any("'nope' was left out: no registered checkpoint has this name" in w.value for w in at.warning)
    assert at.multiselect(key="compare_checkpoints").value == [deep]
    assert "Pick at least two checkpoints" in at.info[0].value
    assert "2 of 2 registered checkpoints have results" in at.info[0].value


def test_curves_measures_latency_from_the_page(lab: Lab) -> None:
    at = app(CURVES, dataset=STS_DATASET)
    no_errors(at)
    assert "latency_ms_p50" not in at.selectbox(key="curves_x").options
    note = next(c.value for c in at.caption if c.value.startswith("Latency not measured for:"))
    assert "tiny-4x64" in note and "tiny-3x48" in note
    at.button(key="curves_measure").click().run()
    no_errors(at)
    assert not [b for b in at.button if b.key == "curves_measure"]  # both are measured now
    at.selectbox(key="curves_x").set_value("latency_ms_p50").run()
    no_errors(at)
    front = shown_table(at, "layer", "dim", "latency_ms_p50")
    assert front["latency_ms_p50"].notna().all() and (front["latency_ms_p50"] > 0).all()
    with open_store()() as s:
        measured = {r.fingerprint for r in repository.list_checkpoints(s)}
    from core.lab import queries

    costs = queries.measured_costs(open_store(), measured, None)
    assert set(costs["checkpoint_fp"]) == measured  # both checkpoints, every layer, stored
    assert not any("Not measured" in c.value for c in at.caption)


def test_explore_cost_panel_measures_the_selected_layer(lab: Lab) -> None:
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset=STS_DATASET, layer="2", dim="40")
    assert any(c.value.startswith("Latency not measured for: tiny-3x48") for c in at.caption)
    at.button(key="explore_measure").click().run()
    no_errors(at)
    shown = metric_value(at, "Encoding latency, 2 layers")
    with open_store()() as s:
        fp = repository.get_checkpoint(s, str(lab.checkpoints["tiny-3x48"])).fingerprint  # type: ignore[union-attr]
    from core.lab import queries

    costs = queries.measured_costs(open_store(), [fp], None)
    stored = float(costs[costs["layer"] == 2]["latency_ms_p50"].iloc[0])
    assert shown == f"{stored:.1f} ms"
