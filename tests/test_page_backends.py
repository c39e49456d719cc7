"""AppTest of the backend knob on Explore, Compare and Curves: picking a backend, the delta vs torch shown
from the database, exporting the selected sub-model (hidden in read-only mode), one chart for two backends,
Compare's tables and paired tests read from the picked backend's stored cells and per-item scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import significance, submodels, views
from core.lab import insight, queries
from core.lab.evaluate import evaluate_grid
from core.lab.insight import CellRef
from storage import db, repository
from tests.pagedata import PAIRS, STS_DATASET, Lab, build_lab, copy_lab_database, no_errors, run_page

ROOT = Path(__file__).resolve().parent.parent
EXPLORE = str(ROOT / "pages" / "1_Explore.py")
COMPARE = str(ROOT / "pages" / "2_Compare.py")
CURVES = str(ROOT / "pages" / "3_Curves.py")
TIMEOUT = 180


@pytest.fixture(scope="module")
def backend_lab_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """The page-test lab plus tiny-3x48's grid on onnx-int8 (layers 2-3, dims 16 and 48)."""
    folder = tmp_path_factory.mktemp("backendlab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(folder / "home"))
        mp.setenv("MLAB_CACHE_DIR", str(folder / "embedding-cache"))
        lab = build_lab(folder)
        factory = db.init_db(lab.database_url)
        evaluate_grid(
            str(lab.checkpoints["tiny-3x48"]), lab.sts_spec, [2, 3], [16, 48],
            session_factory=factory, backend="onnx-int8",
        )  # fmt: skip
        db.dispose_engines()
    return lab


@pytest.fixture
def lab(backend_lab_template: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    url = copy_lab_database(backend_lab_template, tmp_path)
    monkeypatch.setenv("MLAB_DATABASE_URL", url)
    yield Lab(
        backend_lab_template.folder,
        url,
        backend_lab_template.checkpoints,
        backend_lab_template.sts_path,
        backend_lab_template.sts_spec,
    )


def app(path: str, **query: str) -> AppTest:
    return run_page(path, TIMEOUT, **query)


def stored(lab: Lab, backend: str, name: str = "tiny-3x48") -> pd.DataFrame:
    factory = db.init_db(lab.database_url)
    with factory() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints[name]))
        assert record is not None
        return repository.results_frame(s, checkpoint_fp=record.fingerprint, backend=backend)


def stored_items(lab: Lab, name: str, cell: tuple[int, int], backend: str) -> np.ndarray:
    """A cell's stored per-pair similarities on ``backend``, in pair order."""
    with db.init_db(lab.database_url)() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints[name]))
        dataset = repository.get_dataset(s, STS_DATASET)
        assert record is not None and dataset is not None
        found = repository.get_item_scores(s, checkpoint_fp=record.fingerprint, dataset_fp=dataset.fingerprint,
                                           split="test", layer=cell[0], dim=cell[1], precision="float32",
                                           kind="pair_similarity", backend=backend)  # fmt: skip
    assert found is not None
    return np.asarray(found.values, dtype=np.float64)[np.argsort([int(i) for i in found.ids])]


def test_explore_shows_the_backend_cell_and_its_delta_vs_torch(lab: Lab) -> None:
    ckpt = str(lab.checkpoints["tiny-3x48"])
    at = app(EXPLORE, checkpoint=ckpt, dataset=STS_DATASET, backend="onnx-int8", layer="3", dim="48")
    no_errors(at)
    assert at.selectbox(key="explore_backend").value == "onnx-int8"
    int8 = views.cell_value(stored(lab, "onnx-int8"), "cosine_spearman", (3, 48))
    reference = views.cell_value(stored(lab, "torch"), "cosine_spearman", (3, 48))
    shown = next(m for m in at.metric if m.label == "cosine Spearman on onnx-int8 vs torch")
    assert shown.value == f"{int8:.4f}" and shown.delta == f"{int8 - reference:+.4f}"
    assert next(m.value for m in at.metric if m.label == "cosine Spearman") == f"{int8:.4f}"

    at.button(key="explore_export").click().run()
    no_errors(at)
    download = at.get("download_button")[0]
    assert "tiny-3x48-L3-D48-onnx-int8.zip" in download.proto.label
    factory = db.init_db(lab.database_url)
    with factory() as s:
        names = [r.name for r in repository.list_checkpoints(s)]
    assert any(name.endswith("tiny-3x48-L3-D48-onnx-int8") for name in names)  # registered


def test_explore_offers_to_evaluate_a_backend_without_results(lab: Lab) -> None:
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-4x64"]), dataset=STS_DATASET, backend="onnx")
    no_errors(at)
    assert "(onnx) yet" in at.info[0].value
    assert at.button(key="explore_evaluate").label == "Evaluate the grid now"


def test_read_only_hides_the_export(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    at = app(EXPLORE, checkpoint=str(lab.checkpoints["tiny-3x48"]), dataset=STS_DATASET, layer="3", dim="48")
    no_errors(at)
    assert not [b for b in at.button if b.key == "explore_export"]


def test_curves_puts_two_backends_on_one_front(lab: Lab) -> None:
    at = app(CURVES, dataset=STS_DATASET, checkpoints=str(lab.checkpoints["tiny-3x48"]))
    no_errors(at)
    at.multiselect(key="curves_backends").set_value(["torch", "onnx-int8"]).run()
    no_errors(at)
    front = next(d.value for d in at.dataframe if {"layer", "dim", "precision"} <= set(d.value.columns))
    points = pd.concat(
        [
            views.curve_points(stored(lab, b).assign(checkpoint=b), "cosine_spearman", {})
            for b in ("torch", "onnx-int8")
        ],
        ignore_index=True,
    )
    expected = points[views.pareto_front(points, "bytes_per_vector")]
    assert sorted(
        zip(front["layer"], front["dim"], front["cosine_spearman"].round(6), strict=True)
    ) == sorted(zip(expected["layer"], expected["dim"], expected["value"].round(6), strict=True))
    assert {str(c).rsplit(" ", 1)[-1] for c in front["checkpoint"]} <= {"[torch]", "[onnx-int8]"}
    assert len(at.selectbox(key="curves_export_pick").options) == len(front)  # any front point exports


def test_compare_reads_the_picked_backends_cells_and_item_scores(lab: Lab) -> None:
    factory = db.init_db(lab.database_url)
    for name, (k, d) in (("tiny-4x64", (4, 64)), ("tiny-3x48", (3, 48))):  # dim 20: a cell torch lacks
        evaluate_grid(str(lab.checkpoints[name]), lab.sts_spec, None, [*views.default_grid_dims(k, d), 20],
                      session_factory=factory, backend="onnx")  # fmt: skip
    at = app(COMPARE, dataset=STS_DATASET, backend="onnx")
    no_errors(at)
    assert at.selectbox(key="compare_backend").value == "onnx"
    table = at.table[0].value
    for name, (k, d) in (("tiny-4x64", (4, 64)), ("tiny-3x48", (3, 48))):
        onnx = stored(lab, "onnx", name)
        for i, cell in enumerate(submodels.default_diagonal(k, d)):
            shown = float(table.loc[f"size {i + 1}", name])
            assert shown == pytest.approx(views.cell_value(onnx, "cosine_spearman", cell), abs=5e-5)

    at.selectbox(key="compare_sig_A_ckpt").select("tiny-3x48").run()
    at.selectbox(key="compare_sig_B_ckpt").select("tiny-4x64").run()
    at.selectbox(key="compare_sig_A_cell").select((1, 20)).run()  # offered: it is an onnx cell
    at.select_slider(key="compare_sig_resamples").set_value(1000).run()
    no_errors(at)
    tests = next(d.value for d in at.dataframe if "p-value" in d.value.columns)
    gold = np.array([score for _, _, score in PAIRS])
    a, b = stored_items(lab, "tiny-3x48", (1, 20), "onnx"), stored_items(lab, "tiny-4x64", (4, 64), "onnx")
    expected = significance.paired_tests(a, b, gold, statistic="spearman", n_resamples=1000)
    assert tests["A"].tolist() == pytest.approx([expected["bootstrap"].score_a] * 2)
    assert tests["B"].tolist() == pytest.approx([expected["bootstrap"].score_b] * 2)
    assert tests["p-value"].tolist() == pytest.approx([r.p_value for r in expected.values()])
    assert tests["CI low"].iloc[0] == pytest.approx(expected["bootstrap"].ci_low)
    assert any("Per-item scores of the onnx backend" in c.value for c in at.caption)


def test_compare_offers_to_evaluate_a_checkpoint_lacking_the_backend(lab: Lab) -> None:
    both = ",".join(str(lab.checkpoints[n]) for n in ("tiny-4x64", "tiny-3x48"))
    at = app(COMPARE, dataset=STS_DATASET, backend="onnx-int8", checkpoints=both)
    no_errors(at)
    assert any("**tiny-4x64** has no float32 results on tiny-sts (onnx-int8)" in w.value for w in at.warning)
    button = next(b for b in at.button if b.label == "Evaluate tiny-4x64 now")
    button.click().run()
    no_errors(at)
    int8 = stored(lab, "onnx-int8", "tiny-4x64")
    assert not int8.empty and not at.warning
    table = at.table[0].value
    for i, cell in enumerate(submodels.default_diagonal(4, 64)):
        shown = float(table.loc[f"size {i + 1}", "tiny-4x64"])
        assert shown == pytest.approx(views.cell_value(int8, "cosine_spearman", cell), abs=5e-5)


def test_explore_losses_and_latency_follow_the_backend(lab: Lab) -> None:
    ckpt = str(lab.checkpoints["tiny-3x48"])
    at = app(EXPLORE, checkpoint=ckpt, dataset=STS_DATASET, backend="onnx-int8", layer="2", dim="48")
    no_errors(at)
    assert any(h.value == "Where (2, 48) loses on onnx-int8" for h in at.subheader)
    options = at.selectbox(key="explore_loss_baseline").options
    assert options[0] == "this cell on torch" and "the full model (3, 48)" in options
    factory = db.init_db(lab.database_url)
    with factory() as s:
        fp = repository.get_checkpoint(s, ckpt).fingerprint  # type: ignore[union-attr]
        dataset_fp = repository.get_dataset(s, STS_DATASET).fingerprint  # type: ignore[union-attr]
    vs_torch = insight.item_losses(lab.sts_spec, dataset_fp, CellRef(fp, 2, 48, backend="onnx-int8"),
                                   CellRef(fp, 2, 48), session_factory=factory)  # fmt: skip
    shown = next(d.value for d in at.table if "rank error" in d.value.columns)
    assert shown["loss"].tolist() == pytest.approx(vs_torch["loss"].head(len(shown)).tolist())
    at.selectbox(key="explore_loss_baseline").select("the full model (3, 48)").run()
    no_errors(at)
    expected = insight.item_losses(lab.sts_spec, dataset_fp, CellRef(fp, 2, 48, backend="onnx-int8"),
                                   CellRef(fp, 3, 48, backend="onnx-int8"), session_factory=factory)  # fmt: skip
    shown = next(d.value for d in at.table if "rank error" in d.value.columns)
    assert shown["pair"].tolist() == expected["pair"].head(len(shown)).tolist()
    assert shown["similarity"].tolist() == pytest.approx(expected["similarity"].head(len(shown)).tolist())
    assert shown["similarity"].tolist() == pytest.approx(
        stored_items(lab, "tiny-3x48", (2, 48), "onnx-int8")[shown["pair"].tolist()].tolist(), abs=1e-6
    )  # the onnx-int8 per-pair similarities, not torch's

    assert any("Latency not measured for: tiny-3x48 on onnx-int8" in c.value for c in at.caption)
    at.button(key="explore_measure").click().run()
    no_errors(at)
    costs = queries.measured_costs(factory, [fp], None, "onnx-int8")
    p50 = float(costs[costs["layer"] == 2]["latency_ms_p50"].iloc[0])
    assert (
        next(m.value for m in at.metric if m.label == "Encoding latency, 2 layers, onnx-int8")
        == f"{p50:.1f} ms"
    )
    assert queries.measured_costs(factory, [fp], None, "torch").empty  # measured on the picked backend only


def test_curves_measures_the_latency_of_the_backend_shown(lab: Lab) -> None:
    ckpt = str(lab.checkpoints["tiny-3x48"])
    at = app(CURVES, dataset=STS_DATASET, checkpoints=ckpt)
    at.multiselect(key="curves_backends").set_value(["onnx-int8"]).run()
    no_errors(at)
    assert any(c.value == "Latency not measured for: tiny-3x48 on onnx-int8." for c in at.caption)
    assert not [b for b in at.button if b.key == "curves_measure"]  # nothing shown on torch here
    at.button(key="curves_measure_onnx-int8").click().run()
    no_errors(at)
    factory = db.init_db(lab.database_url)
    with factory() as s:
        fp = repository.get_checkpoint(s, ckpt).fingerprint  # type: ignore[union-attr]
    assert set(queries.measured_costs(factory, [fp], None, "onnx-int8")["layer"]) >= {2, 3}
    assert queries.measured_costs(factory, [fp], None, "torch").empty
    assert not [b for b in at.button if b.key == "curves_measure_onnx-int8"]
