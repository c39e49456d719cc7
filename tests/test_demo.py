"""Live demo engine: side-by-side search against a brute-force reference, list overlap, the pair grid."""

from __future__ import annotations

import doctest
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from core import backends, checkpoints, datasets, demo, submodels, views
from core.demo import DemoModel
from core.lab import evaluate
from storage import db
from tests.test_insight import write_beir
from tests.tinymodel import build_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("demo") / "tiny-3x48", layers=3, hidden=48))


@pytest.fixture
def beir(tmp_path: Path) -> datasets.DatasetSpec:
    return datasets.DatasetSpec("tiny-beir", datasets.RETRIEVAL, write_beir(tmp_path / "beir"), "test")


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    demo.clear_caches()


def test_doctests() -> None:
    assert doctest.testmod(demo).failed == 0


# ------------------------------------------------------------------------------------ overlap


def _rbo_reference(a: list[str], b: list[str], p: float) -> float:
    """Webber et al. eq. 32 written with explicit prefix sets (no incremental bookkeeping)."""
    k = min(len(a), len(b))
    agreement = [len(set(a[:d]) & set(b[:d])) for d in range(1, k + 1)]
    tail = sum(agreement[d - 1] / d * p**d for d in range(1, k + 1))
    return agreement[-1] / k * p**k + (1 - p) / p * tail


def test_rank_biased_overlap_hand_worked() -> None:
    assert demo.rank_biased_overlap(list("abc"), list("abc")) == pytest.approx(1.0)
    assert demo.rank_biased_overlap(list("abc"), list("xyz")) == 0.0
    # p = 0.5, [a, b] vs [b, a]: X1 = 0, X2 = 2 -> 1 * 0.25 + 1 * (0 + 1 * 0.25) = 0.5
    assert demo.rank_biased_overlap(["a", "b"], ["b", "a"], p=0.5) == pytest.approx(0.5)
    # agreement at the top weighs more than agreement at the bottom
    top = demo.rank_biased_overlap(list("abcd"), list("abyz"))
    bottom = demo.rank_biased_overlap(list("abcd"), list("yzcd"))
    assert top > bottom
    assert demo.rank_biased_overlap([], ["a"]) == 0.0
    with pytest.raises(demo.DemoError, match="0 < p < 1"):
        demo.rank_biased_overlap(["a"], ["a"], p=1.0)


def test_rank_biased_overlap_equals_the_formula_on_random_lists() -> None:
    rng = np.random.default_rng(0)
    pool = [f"d{i}" for i in range(15)]
    for _ in range(200):
        a = list(rng.choice(pool, 10, replace=False))
        b = list(rng.choice(pool, 10, replace=False))
        assert demo.rank_biased_overlap(a, b) == pytest.approx(_rbo_reference(a, b, demo.RBO_P), abs=1e-12)


def test_list_overlap_counts_and_jaccard() -> None:
    overlap = demo.list_overlap(["a", "b", "c", "d"], ["d", "c", "x", "y"])
    assert overlap.shared == 2
    assert overlap.jaccard == pytest.approx(2 / 6)
    assert 0 < overlap.rbo < 1


# ------------------------------------------------------------------------------------ corpora


def test_pasted_documents() -> None:
    corpus = demo.corpus_from_text("  wings make lift \n\n\nshock waves\n")
    assert corpus.ids == ["line 1", "line 4"]
    assert corpus.texts == ["wings make lift", "shock waves"]
    assert not corpus.cacheable and corpus.qrels == {}
    with pytest.raises(demo.DemoError, match="no documents"):
        demo.corpus_from_text(" \n\n")
    with pytest.raises(demo.DemoError, match="at most"):
        demo.corpus_from_text("\n".join(f"doc {i}" for i in range(demo.MAX_PASTED_DOCS + 1)))


def test_dataset_corpus(beir: datasets.DatasetSpec) -> None:
    corpus = demo.corpus_from_dataset(beir)
    assert corpus.ids == ["d1", "d2", "d3", "d4", "d5"]
    assert corpus.texts[0] == "Wings Lift on an aircraft wing comes from pressure differences."
    assert corpus.query_ids == ["q1", "q2"]  # judged queries only
    assert corpus.query_id_for("  how do wings make lift ") == "q1"
    assert corpus.query_id_for("something else") is None
    sts = datasets.resolve_dataset("stsb-test")
    with pytest.raises(demo.DemoError, match="retrieval dataset"):
        demo.corpus_from_dataset(sts)


# ------------------------------------------------------------------------------------ search


def _reference_top(checkpoint: str, texts: list[str], query: str, layer: int, dim: int, k: int) -> list[int]:
    """Brute force through the OTHER path: a truly truncated copy encodes corpus and query."""
    loaded = checkpoints.load(checkpoint)
    model = submodels.truncated_copy(loaded.model, layer)
    docs = submodels.truncate(model.encode(texts, convert_to_numpy=True), dim)
    q = submodels.truncate(model.encode([query], convert_to_numpy=True), dim)
    scores = (docs.astype(np.float64) @ q[0].astype(np.float64)).round(5)
    return sorted(range(len(texts)), key=lambda i: (-scores[i], i))[:k]


def test_search_on_onnx_ranks_by_the_evaluations_onnx_embeddings(
    tiny: str, beir: datasets.DatasetSpec, tmp_path: Path
) -> None:
    corpus = demo.corpus_from_dataset(beir)
    query, model = "supersonic flow at the nose", DemoModel(tiny, 2, 32, backend="onnx")
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    result = demo.search(model, corpus, query, k=4, cache=cache, repeats=2, warmup=1)
    # core with that backend, encoded afresh (no cache): the grid evaluation's pooled matrices
    loaded = checkpoints.load(tiny)
    docs = submodels.pooled_embeddings(loaded, corpus.texts, [2], None, backend="onnx").matrix(2)
    q = submodels.pooled_embeddings(loaded, [query], [2], None, backend="onnx").matrix(2)
    scores = submodels.truncate(docs, 32).astype(np.float64) @ submodels.truncate(q, 32)[0].astype(np.float64)
    top = sorted(range(len(docs)), key=lambda i: -scores[i])[:4]
    assert result.hits["doc_id"].tolist() == [corpus.ids[i] for i in top]
    assert result.hits["score"].tolist() == pytest.approx(scores[top].tolist(), abs=1e-6)
    assert result.model.label == "tiny-3x48 (2, 32, onnx)" and result.timed_runs == 2
    graphs = backends.graph_dir() / f"{loaded.info.fingerprint[:32]}-v{backends.GRAPH_VERSION}"
    assert (graphs / "layers-2.onnx").is_file()  # the latency is the 2-layer sub-model's own graph's
    with pytest.raises(demo.DemoError, match="unknown backend 'tpu'"):
        demo.search(DemoModel(tiny, 2, 32, backend="tpu"), corpus, query)


def test_pair_grid_on_onnx_is_the_evaluations_pass(tiny: str) -> None:
    loaded = checkpoints.load(tiny)
    grid = demo.pair_grid(tiny, "one", "two", layers=[1, 3], dims=[16, 48], backend="onnx")
    pooled = submodels.pooled_embeddings(loaded, ["one", "two"], [1, 3], None, backend="onnx")
    for layer, dim in itertools.product([1, 3], [16, 48]):
        emb = submodels.truncate(pooled.matrix(layer), dim).astype(np.float64)
        assert grid.pivot.loc[layer, dim] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-6)
    torch_grid = demo.pair_grid(tiny, "one", "two", layers=[1, 3], dims=[16, 48])
    assert np.allclose(grid.pivot.to_numpy(), torch_grid.pivot.to_numpy(), atol=1e-4)


@pytest.mark.parametrize(("layer", "dim"), [(1, 16), (2, 32), (3, 48)])
def test_search_equals_brute_force_with_a_truncated_model(
    tiny: str, beir: datasets.DatasetSpec, tmp_path: Path, layer: int, dim: int
) -> None:
    corpus = demo.corpus_from_dataset(beir)
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    result = demo.search(DemoModel(tiny, layer, dim), corpus, "supersonic flow at the nose", k=3, cache=cache)
    expected = _reference_top(tiny, corpus.texts, "supersonic flow at the nose", layer, dim, 3)
    assert result.hits["doc_id"].tolist() == [corpus.ids[i] for i in expected]
    assert result.hits["rank"].tolist() == [1, 2, 3]
    assert result.hits["score"].is_monotonic_decreasing
    assert result.bytes_per_vector == 4 * dim and result.index_bytes == 5 * 4 * dim
    assert result.encode_ms > 0 and result.search_ms > 0 and result.latency_ms > result.encode_ms
    assert result.timed_runs == demo.LATENCY_REPEATS  # the warm-up runs are not timed
    assert 0 < result.latency_low_ms <= result.latency_high_ms  # the middle half of the timed runs
    assert result.query_id is None and result.hits["relevance"].isna().all()


def test_relevance_marks_for_a_dataset_query(tiny: str, beir: datasets.DatasetSpec, tmp_path: Path) -> None:
    corpus = demo.corpus_from_dataset(beir)
    result = demo.search(
        DemoModel(tiny, 3, 48),
        corpus,
        "how do wings make lift",
        k=5,
        cache=submodels.EmbeddingCache(tmp_path),
    )
    assert result.query_id == "q1"
    grades = dict(zip(result.hits["doc_id"], result.hits["relevance"], strict=True))
    assert grades == {"d1": 2.0, "d2": 1.0, "d3": 0.0, "d4": 0.0, "d5": 0.0}


def test_corpus_comes_from_the_cache_grid_evaluation_filled(
    tiny: str, beir: datasets.DatasetSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory: sessionmaker[Session] = db.init_db(f"sqlite:///{tmp_path / 'lab.sqlite3'}")
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    evaluate.evaluate_grid(tiny, beir, dims=[48], session_factory=factory, cache=cache)

    def no_corpus_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo re-encoded the corpus instead of reading the embedding cache")

    monkeypatch.setattr(submodels, "encode_all_layers", no_corpus_encoding)
    result = demo.search(
        DemoModel(tiny, 2, 32, "int8"), demo.corpus_from_dataset(beir), "shock", k=2, cache=cache
    )
    assert len(result.hits) == 2 and result.bytes_per_vector == 32


def test_pasted_corpus_stays_in_memory(tiny: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    corpus = demo.corpus_from_text("wings and lift\nshock waves in supersonic flow\nonions in butter")
    result = demo.search(
        DemoModel(tiny, 2, 24, "binary"),
        corpus,
        "supersonic shock",
        k=10,
        cache=submodels.EmbeddingCache(cache_dir),
    )
    assert len(result.hits) == 3  # k larger than the corpus returns every document
    assert result.bytes_per_vector == 3
    assert not any(cache_dir.rglob("*.npy"))
    expected = _reference_top(tiny, corpus.texts, "supersonic shock", 2, 24, 3)
    float_result = demo.search(DemoModel(tiny, 2, 24), corpus, "supersonic shock", k=3)
    assert float_result.hits["doc_id"].tolist() == [corpus.ids[i] for i in expected]


def test_side_by_side_and_truncated_model_reuse(tiny: str, tmp_path: Path) -> None:
    corpus = demo.corpus_from_text("\n".join(f"document number {i} about topic {i % 4}" for i in range(30)))
    full, small = DemoModel(tiny, 3, 48), DemoModel(tiny, 1, 16)
    same = demo.side_by_side(full, full, corpus, "topic 2")
    assert (
        same.overlap.shared == 10 and same.overlap.jaccard == 1.0 and same.overlap.rbo == pytest.approx(1.0)
    )
    both = demo.side_by_side(full, small, corpus, "topic 2")
    assert both.a.model == full and both.b.model == small
    assert 0 <= both.overlap.shared <= 10
    loaded = checkpoints.load(tiny)
    assert demo.query_encoder(loaded, 3) is loaded.model
    copy = demo.query_encoder(loaded, 1)
    assert demo.query_encoder(loaded, 1) is copy  # cached per (checkpoint, layers)
    assert loaded.model[0].auto_model.config.num_hidden_layers == 3  # the shared model is untouched
    assert copy[0].auto_model.config.num_hidden_layers == 1


@pytest.mark.parametrize(
    ("model", "query", "message"),
    [
        (DemoModel("TINY", 4, 16), "q", "layer 4 is outside"),
        (DemoModel("TINY", 0, 16), "q", "layer 0 is outside"),
        (DemoModel("TINY", 1, 0), "q", "dim 0 is outside"),
        (DemoModel("TINY", 1, 49), "q", "dim 49 is outside"),
        (DemoModel("TINY", 1, 16, "int4"), "q", "unknown precision"),
        (DemoModel("TINY", 1, 16), "   ", "type a query"),
        (DemoModel("TINY", 1, 16), "x" * (demo.MAX_QUERY_CHARS + 1), "at most"),
        (DemoModel("/no/such/folder", 1, 16), "q", "does not exist"),
    ],
)
def test_bad_requests_are_refused(tiny: str, model: DemoModel, query: str, message: str) -> None:
    if model.checkpoint == "TINY":
        model = DemoModel(tiny, model.layer, model.dim, model.precision)
    with pytest.raises(demo.DemoError, match=message):
        demo.search(model, demo.corpus_from_text("a\nb"), query)


# ------------------------------------------------------------------------------------ pair grid


def test_pair_grid_equals_encode_and_truncated_models(tiny: str) -> None:
    s1, s2 = "A man is playing a guitar.", "Someone plays an instrument."
    grid = demo.pair_grid(tiny, s1, s2, dims=[8, 24, 48])
    assert grid.pivot.shape == (3, 3) and (grid.num_layers, grid.width) == (3, 48)
    assert len(grid.frame) == 9
    loaded = checkpoints.load(tiny)
    full = loaded.model.encode([s1, s2], convert_to_numpy=True)
    assert grid.full == pytest.approx(
        float(full[0] @ full[1] / np.linalg.norm(full[0]) / np.linalg.norm(full[1])), abs=1e-5
    )
    assert grid.pivot.loc[3, 48] == pytest.approx(grid.full, abs=1e-7)
    for layer, dim in itertools.product([1, 2], [8, 24]):
        emb = submodels.truncate(
            submodels.truncated_copy(loaded.model, layer).encode([s1, s2], convert_to_numpy=True), dim
        )
        assert grid.pivot.loc[layer, dim] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5)


def test_pair_grid_defaults_precisions_and_errors(tiny: str) -> None:
    grid = demo.pair_grid(tiny, "one", "two")
    assert list(grid.pivot.index) == [1, 2, 3]
    assert list(grid.pivot.columns) == views.default_grid_dims(
        3, 48
    )  # Explore's grid: 32, 48 + diagonal dims
    binary = demo.pair_grid(tiny, "one", "two", layers=[1], dims=[8], precision="binary")
    value = binary.pivot.loc[1, 8]
    assert 0.0 <= value <= 1.0 and math.isclose(value * 8, round(value * 8))  # agreeing bits out of 8
    with pytest.raises(demo.DemoError, match="int8"):
        demo.pair_grid(tiny, "one", "two", precision="int8")
    with pytest.raises(demo.DemoError, match="two sentences"):
        demo.pair_grid(tiny, "one", " ")
    with pytest.raises(demo.DemoError, match="dim 64 is outside"):
        demo.pair_grid(tiny, "one", "two", dims=[64])


# ------------------------------------------------------------------------------------ page helpers


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("default:6:384:float32", ("default", 6, 384, "float32", "torch")),
        ("default:2:64", ("default", 2, 64, "float32", "torch")),
        ("/models/a:b/ckpt:3:128:binary", ("/models/a:b/ckpt", 3, 128, "binary", "torch")),
        ("org/name@v1:1:32:int8", ("org/name@v1", 1, 32, "int8", "torch")),
        ("org/name@v1:1:32:int8:onnx-int8", ("org/name@v1", 1, 32, "int8", "onnx-int8")),
        ("/models/a:b/ckpt:3:128:float32:torch-bf16", ("/models/a:b/ckpt", 3, 128, "float32", "torch-bf16")),
        ("default:2:64:onnx", ("default", 2, 64, "float32", "onnx")),
    ],
)
def test_model_param_round_trip(text: str, parsed: tuple[str, int, int, str, str]) -> None:
    assert demo.parse_model_param(text) == parsed
    assert demo.parse_model_param(demo.format_model_param(*parsed)) == parsed
    if parsed[4] == "torch" and parsed[3] != "float32":  # links from before backends keep their form
        assert demo.format_model_param(*parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not of the form checkpoint:layer:dim"),
        ("default", "not of the form checkpoint:layer:dim"),
        ("default:6", "not of the form checkpoint:layer:dim"),
        (":6:384", "not of the form checkpoint:layer:dim"),
        ("default:x:384", "layer 'x' is not a whole number"),
        ("default:6:3.5", "dim '3.5' is not a whole number"),
        ("default:6:384:int4", "precision 'int4' is not one of float32, float16, int8, binary"),
        ("default:6:384:float32:tpu", "backend 'tpu' is not one of torch, torch-bf16, onnx, onnx-int8"),
        ("default:6:384:float99:onnx", "precision 'float99' is not one of"),
    ],
)
def test_bad_model_params_are_refused_naming_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(demo.DemoError, match=re.escape(message)):
        demo.parse_model_param(text)


def test_hits_table_marks_relevance(tiny: str, beir: datasets.DatasetSpec, tmp_path: Path) -> None:
    corpus = demo.corpus_from_dataset(beir)
    cache = submodels.EmbeddingCache(tmp_path)
    judged = demo.hits_table(demo.search(DemoModel(tiny, 3, 48), corpus, "how do wings make lift", 5, cache))
    assert list(judged.columns) == ["rank", "score", "relevant", "document"]
    marks = dict(zip([d.split("]")[0][1:] for d in judged["document"]], judged["relevant"], strict=True))
    assert marks == {"d1": "✓ 2", "d2": "✓ 1", "d3": "✗", "d4": "✗", "d5": "✗"}
    unjudged = demo.hits_table(demo.search(DemoModel(tiny, 3, 48), corpus, "free text", 2, cache))
    assert unjudged["relevant"].tolist() == ["", ""]
    assert unjudged["document"].iloc[0].startswith("[d")


def test_an_empty_document_is_labelled_in_the_hits(
    tiny: str, beir: datasets.DatasetSpec, tmp_path: Path
) -> None:
    """Issue 14: Cranfield has documents with empty text, and their embedding can rank high; a result
    list says "(empty document)" instead of showing a bare id."""
    corpus_file = Path(beir.path) / "corpus.jsonl"
    with corpus_file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"_id": "d-empty", "title": "", "text": ""}) + "\n")
    corpus = demo.corpus_from_dataset(beir)
    n_docs = len(corpus_file.read_text(encoding="utf-8").splitlines())
    cache = submodels.EmbeddingCache(tmp_path)
    table = demo.hits_table(demo.search(DemoModel(tiny, 3, 48), corpus, "wings", n_docs, cache))
    assert "[d-empty] (empty document)" in table["document"].tolist()
    assert all(d.split("] ", 1)[1].strip() for d in table["document"])  # no hit shows a blank text
