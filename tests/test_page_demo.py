"""AppTest of the Demo page: a shared link restores the view, shown lists and numbers equal core's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import datasets, demo
from core.lab import registry
from storage import db
from tests.pagedata import Lab, build_lab, no_errors, run_page
from tests.test_insight import write_beir

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "pages" / "5_Demo.py")
TIMEOUT = 120
QUERY = "how do wings make lift"


@pytest.fixture(scope="module")
def lab_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    folder = tmp_path_factory.mktemp("demolab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(folder / "home"))
        lab = build_lab(folder)
        beir = datasets.DatasetSpec("tiny-beir", datasets.RETRIEVAL, write_beir(folder / "tiny-beir"), "test")
        registry.register_dataset(beir, session_factory=db.init_db(lab.database_url))
        db.dispose_engines()
    return lab


@pytest.fixture
def lab(lab_template: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Lab]:
    monkeypatch.setenv("MLAB_DATABASE_URL", lab_template.database_url)  # the demo only reads it
    # the corpus list must not depend on whether ../shared/data sits beside the checkout
    monkeypatch.setenv("MLAB_EXTRA_DATA", str(tmp_path / "no-extra-data"))
    demo.clear_caches()
    yield lab_template


def tiny(lab: Lab) -> str:
    return str(lab.checkpoints["tiny-3x48"])


def run(**query: str) -> AppTest:
    return run_page(DEMO, TIMEOUT, **query)


def metrics_of(at: AppTest) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def test_shared_link_restores_a_search_and_shows_core_results(lab: Lab) -> None:
    a, b = f"{tiny(lab)}:3:48:float32", f"{tiny(lab)}:1:16:int8"
    at = run(mode="Search", corpus="tiny-beir", a=a, b=b, q=QUERY)
    no_errors(at)
    assert at.selectbox(key="demo_a_ckpt").value == tiny(lab)
    assert (at.slider(key="demo_a_layer").value, at.select_slider(key="demo_b_dim").value) == (3, 16)
    assert at.selectbox(key="demo_b_prec").value == "int8"
    assert at.selectbox(key="demo_corpus").value == "tiny-beir"
    assert at.text_input(key="demo_query").value == QUERY
    # the URL keeps the whole view
    assert {k: at.query_params[k] for k in ("a", "b", "q", "mode", "corpus")} == {
        "a": a, "b": b, "q": QUERY, "mode": "Search", "corpus": "tiny-beir"
    }  # fmt: skip
    corpus = demo.corpus_from_dataset(
        datasets.DatasetSpec("tiny-beir", "retrieval", lab.folder / "tiny-beir", "test")
    )
    expected = demo.side_by_side(
        demo.DemoModel(tiny(lab), 3, 48), demo.DemoModel(tiny(lab), 1, 16, "int8"), corpus, QUERY
    )
    shown = [at.table[i].value for i in (0, 1)]  # st.table: long documents wrap
    for table, result in zip(shown, (expected.a, expected.b), strict=True):
        assert table["rank"].tolist() == result.hits["rank"].tolist()
        assert [d.split("]")[0][1:] for d in table["document"]] == result.hits["doc_id"].tolist()
        assert table["score"].tolist() == pytest.approx(result.hits["score"].tolist(), abs=1e-6)
    assert "✓ 2" in shown[0]["relevant"].tolist()  # d1 is judged relevant with grade 2 for this query
    values = dict(metrics_of(at))
    assert values["Shared documents"] == f"{expected.overlap.shared} / 5"
    assert values["Rank-biased overlap"] == f"{expected.overlap.rbo:.2f}"
    bytes_shown = [v for label, v in metrics_of(at) if label == "Bytes per vector"]
    assert bytes_shown == ["192", "16"]  # 48 float32 dims; 16 int8 dims


def test_example_query_and_pasted_documents(lab: Lab) -> None:
    at = run(a=f"{tiny(lab)}:3:48", b=f"{tiny(lab)}:2:32", corpus="tiny-beir")
    no_errors(at)
    assert at.info and "type a query" in at.info[0].value
    at.selectbox(key="demo_example").select("supersonic shock waves").run()
    no_errors(at)
    assert at.text_input(key="demo_query").value == "supersonic shock waves"
    assert len(at.table[0].value) == 5
    at.selectbox(key="demo_corpus").select("Paste documents").run()
    at.text_area(key="demo_docs").input(
        "wings give lift\nshock waves in supersonic flow\nonions in butter"
    ).run()
    no_errors(at)
    table = at.table[1].value
    assert len(table) == 3 and set(table["relevant"]) == {""}  # pasted documents have no judgments
    assert at.query_params["corpus"] == "Paste documents"


def test_sentence_pair_grid_matches_core(lab: Lab) -> None:
    s1, s2 = "A man is playing a guitar.", "Someone plays an instrument."
    at = run(mode="Sentence pair", a=f"{tiny(lab)}:3:48", b=f"{tiny(lab)}:2:32", s1=s1, s2=s2)
    no_errors(at)
    grid = demo.pair_grid(tiny(lab), s1, s2)
    values = dict(metrics_of(at))
    assert values["Full model (3, 48)"] == f"{grid.full:.4f}"
    assert values["Sub-model B (2, 32)"] == f"{grid.pivot.loc[2, 32]:.4f}"
    assert at.get("plotly_chart")
    assert at.query_params["s1"] == s1 and at.query_params["mode"] == "Sentence pair"


def test_bad_link_values_are_refused_with_a_message(lab: Lab) -> None:
    at = run(mode="Sentence pair", a=f"{tiny(lab)}:9:48", b=f"{tiny(lab)}:2:64", s1="x", s2="y")
    assert not at.exception
    messages = " ".join(e.value for e in at.error)
    assert "a=" in messages and "layer 9 is outside" in messages
    assert "b=" in messages and "dim 64 is outside" in messages
    bad_form = run(mode="Sentence pair", a=f"{tiny(lab)}:3:48", b=f"{tiny(lab)}:2:x", s1="x", s2="y")
    assert "dim 'x' is not a whole number" in " ".join(e.value for e in bad_form.error)
    bad_precision = run(mode="Sentence pair", a=f"{tiny(lab)}:3:48:float99", s1="x", s2="y")
    assert "precision 'float99' is not one of float32" in " ".join(e.value for e in bad_precision.error)
    # the known checkpoint is kept; the refused cell falls back to the defaults (A full, B the 2nd pair)
    assert at.selectbox(key="demo_a_ckpt").value == tiny(lab)
    assert at.slider(key="demo_a_layer").value == 3


def test_unknown_mode_and_corpus_in_a_link_are_named(lab: Lab) -> None:
    at = run(mode="Bogus", corpus="nope", a=f"{tiny(lab)}:3:48", b=f"{tiny(lab)}:1:16")
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert (
        "mode='Bogus' was not used: the modes are Search and Sentence pair; showing Search instead"
        in warnings
    )
    assert (
        "corpus='nope' was not used: the documents here are cranfield, tiny-beir, Paste documents" in warnings
    )
    assert (
        at.radio(key="demo_mode").value == "Search" and at.selectbox(key="demo_corpus").value == "cranfield"
    )


def test_sentence_pair_reads_sub_model_b_from_its_own_checkpoint(lab: Lab) -> None:
    s1, s2 = "A man is playing a guitar.", "Someone plays an instrument."
    other = str(lab.checkpoints["tiny-4x64"])
    at = run(mode="Sentence pair", a=f"{tiny(lab)}:3:48", b=f"{other}:2:40", s1=s1, s2=s2)
    no_errors(at)
    values = dict(metrics_of(at))
    assert values["Full model (3, 48)"] == f"{demo.pair_grid(tiny(lab), s1, s2).full:.4f}"
    assert values["Sub-model B (2, 40)"] == f"{demo.pair_grid(other, s1, s2).pivot.loc[2, 40]:.4f}"
    assert len(at.get("plotly_chart")) == 2  # one grid per checkpoint


def test_a_sub_model_on_onnx_from_a_link_searches_like_core(lab: Lab) -> None:
    a, b = f"{tiny(lab)}:3:48:float32", f"{tiny(lab)}:1:16:float32:onnx"
    at = run(mode="Search", corpus="tiny-beir", a=a, b=b, q=QUERY)
    no_errors(at)
    assert (at.selectbox(key="demo_a_backend").value, at.selectbox(key="demo_b_backend").value) == (
        "torch",
        "onnx",
    )
    assert (at.query_params["a"], at.query_params["b"]) == (a, b)  # torch links keep their old form
    corpus = demo.corpus_from_dataset(
        datasets.DatasetSpec("tiny-beir", "retrieval", lab.folder / "tiny-beir", "test")
    )
    onnx = demo.DemoModel(tiny(lab), 1, 16, backend="onnx")
    expected = demo.search(onnx, corpus, QUERY, repeats=1, warmup=0)
    table = at.table[1].value
    assert [d.split("]")[0][1:] for d in table["document"]] == expected.hits["doc_id"].tolist()
    assert table["score"].tolist() == pytest.approx(expected.hits["score"].tolist(), abs=1e-6)
    assert "tiny-3x48 (1, 16, onnx)" in [h.value for h in at.subheader]
    assert any(c.value.endswith("ms on onnx") for c in at.caption)  # the cost line says what ran

    at.selectbox(key="demo_b_backend").select("onnx-int8").run()
    no_errors(at)
    assert at.query_params["b"] == f"{tiny(lab)}:1:16:float32:onnx-int8"


def test_sentence_pair_on_a_backend_and_a_bad_backend_in_a_link(lab: Lab) -> None:
    s1, s2 = "A man is playing a guitar.", "Someone plays an instrument."
    at = run(mode="Sentence pair", a=f"{tiny(lab)}:3:48:float32:onnx", b=f"{tiny(lab)}:2:32", s1=s1, s2=s2)
    no_errors(at)
    values = dict(metrics_of(at))
    assert values["Full model (3, 48)"] == f"{demo.pair_grid(tiny(lab), s1, s2, backend='onnx').full:.4f}"
    assert values["Sub-model B (2, 32)"] == f"{demo.pair_grid(tiny(lab), s1, s2).pivot.loc[2, 32]:.4f}"
    assert len(at.get("plotly_chart")) == 2  # A on onnx, B on torch: one grid each
    bad = run(mode="Sentence pair", a=f"{tiny(lab)}:2:40:float16:tpu", s1="x", s2="y")
    assert not bad.exception and not bad.error
    warning = " ".join(w.value for w in bad.warning)
    assert (
        "a backend='tpu' was not used: the backends are torch, torch-bf16, onnx, onnx-int8; showing torch"
        in warning
    )
    assert bad.selectbox(key="demo_a_backend").value == "torch"  # the rest of the link still applies
    assert (bad.slider(key="demo_a_layer").value, bad.selectbox(key="demo_a_prec").value) == (2, "float16")
