"""core.retrieval: faiss top-k equals numpy brute force at every precision, ties, edge cases, runs."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics import ranking_metrics
from core.quantize import PRECISIONS
from core.retrieval import (
    TIE_MARGIN,
    RetrievalError,
    brute_force_search,
    build_index,
    index_bytes,
    respect_torch_threads,
    run_from_search,
    search,
)


def test_float32_hand_computed() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    query = np.array([[1.0, 0.5]], dtype=np.float32)
    # scores 1.0, 0.5, 1.5 -> order 2, 0, 1
    scores, idx = search(corpus, query, 3)
    assert idx.tolist() == [[2, 0, 1]] and scores.tolist() == [[1.5, 1.0, 0.5]]
    assert scores.dtype == np.float32 and idx.dtype == np.int64


def test_binary_hand_computed_score_is_dim_minus_hamming() -> None:
    corpus = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [-1, -1, -1, -1]], dtype=np.float32)
    query = np.array([[1, 1, 1, -1]], dtype=np.float32)
    # hamming 1, 1, 3 -> scores 3, 3, 1; tie between docs 0 and 1 broken by index
    scores, idx = search(corpus, query, 3, "binary")
    assert idx.tolist() == [[0, 1, 2]] and scores.tolist() == [[3.0, 3.0, 1.0]]


def integer_data(seed: int, n: int = 400, nq: int = 30, dim: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Small-integer vectors: float32 dot products are exact, and duplicated rows make exact ties."""
    rng = np.random.default_rng(seed)
    corpus = rng.integers(-3, 4, size=(n, dim)).astype(np.float32)
    dup = min(40, n // 2)
    corpus[n // 2 : n // 2 + dup] = corpus[:dup]  # duplicates -> tied scores far apart in index
    queries = rng.integers(-3, 4, size=(nq, dim)).astype(np.float32)
    queries[: min(5, nq)] = corpus[: min(5, nq)]
    return corpus, queries


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("k", [1, 10, 100])
def test_equals_brute_force_with_exact_ties(precision: str, k: int) -> None:
    corpus, queries = integer_data(1)
    scores, idx = search(corpus, queries, k, precision)
    ref_scores, ref_idx = brute_force_search(corpus, queries, k, precision)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)
    # ties really occur and are ordered by index
    same = scores[:, 1:] == scores[:, :-1]
    assert np.all(idx[:, 1:][same] > idx[:, :-1][same])
    if k > 1:
        assert same.any()


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("rescore", [0, 3])
def test_equals_brute_force_on_random_floats(precision: str, rescore: int) -> None:
    rng = np.random.default_rng(2)
    corpus = rng.normal(size=(600, 48)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = rng.normal(size=(40, 48)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, idx = search(corpus, queries, 20, precision, rescore=rescore)
    ref_scores, ref_idx = brute_force_search(corpus, queries, 20, precision, rescore=rescore)
    np.testing.assert_array_equal(idx, ref_idx)
    if precision in ("float32", "float16"):  # rescore is ignored; faiss sums float32 in another order
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    else:
        np.testing.assert_array_equal(scores, ref_scores)


def test_ties_beyond_the_margin_take_lowest_indices() -> None:
    rng = np.random.default_rng(4)
    corpus = rng.normal(size=(300, 8)).astype(np.float32) * 0.01
    tied = rng.permutation(300)[: 5 * TIE_MARGIN]
    corpus[tied] = 1.0  # many identical best documents, scattered
    query = np.ones((1, 8), dtype=np.float32)
    for precision in PRECISIONS:
        _, idx = search(corpus, query, 5, precision)
        assert idx[0].tolist() == sorted(tied)[:5], precision


def test_binary_low_dim_many_ties_equals_brute_force() -> None:
    rng = np.random.default_rng(8)
    corpus = rng.normal(size=(500, 6)).astype(np.float32)  # 64 possible codes for 500 documents
    queries = rng.normal(size=(25, 6)).astype(np.float32)
    for rescore in (0, 2):
        got = search(corpus, queries, 15, "binary", rescore=rescore)
        ref = brute_force_search(corpus, queries, 15, "binary", rescore=rescore)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])


def test_int8_uses_given_calibration() -> None:
    rng = np.random.default_rng(9)
    corpus = rng.normal(size=(200, 16)).astype(np.float32)
    queries = rng.normal(size=(10, 16)).astype(np.float32)
    calibration = rng.normal(scale=3.0, size=(1000, 16)).astype(np.float32)
    got = search(corpus, queries, 10, "int8", calibration=calibration)
    ref = brute_force_search(corpus, queries, 10, "int8", calibration=calibration)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_k_larger_than_corpus_returns_everything(precision: str) -> None:
    corpus, queries = integer_data(3, n=7, nq=3, dim=8)
    scores, idx = search(corpus, queries, 50, precision, rescore=2)
    assert scores.shape == idx.shape == (3, 7)
    assert all(sorted(row) == list(range(7)) for row in idx.tolist())
    np.testing.assert_array_equal(idx, brute_force_search(corpus, queries, 50, precision, rescore=2)[1])


def test_index_reuse_matches_search() -> None:
    corpus, queries = integer_data(5)
    index = build_index(corpus, "int8")
    assert index.nbytes == index_bytes(400, 24, "int8") == 400 * 24
    np.testing.assert_array_equal(index.search(queries, 10)[1], search(corpus, queries, 10, "int8")[1])


@pytest.mark.parametrize(
    ("corpus_shape", "query_shape", "k", "message"),
    [
        ((10, 4), (0, 4), 3, "no queries"),
        ((0, 4), (2, 4), 3, "corpus is empty"),
        ((10, 4), (2, 5), 3, "dim"),
        ((10, 4), (2, 4), 0, "k must be"),
        ((10,), (2, 4), 3, "2-D"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    corpus_shape: tuple[int, ...], query_shape: tuple[int, ...], k: int, message: str
) -> None:
    corpus, queries = np.ones(corpus_shape, np.float32), np.ones(query_shape, np.float32)
    for fn in (search, brute_force_search):
        with pytest.raises(RetrievalError, match=message):
            fn(corpus, queries, k)
    if corpus.ndim == 2 and corpus.shape[0] and query_shape[0] == 0:
        with pytest.raises(RetrievalError, match=message):
            build_index(corpus).search(queries, k)


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        search(np.ones((3, 4), np.float32), np.ones((1, 4), np.float32), 2, "int4")


def test_index_bytes() -> None:
    assert index_bytes(1000, 384, "float32") == 1_536_000
    assert index_bytes(1000, 384, "float16") == 768_000
    assert index_bytes(1000, 384, "int8") == 384_000
    assert index_bytes(1000, 384, "binary") == 48_000


def test_run_from_search_feeds_ranking_metrics() -> None:
    corpus = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    scores, idx = search(corpus, queries, 3)
    run = run_from_search(["qa", "qb"], ["d0", "d1", "d2"], scores, idx)
    # qa: d0 and d2 tie at 1.0 -> d0 first (lower index); qb: d1 and d2 tie -> d1 first
    assert list(run["qa"]) == ["d0", "d2", "d1"] and list(run["qb"]) == ["d1", "d2", "d0"]
    assert run["qa"] == {"d0": 1.0, "d2": 1.0, "d1": 0.0}
    aggregate, _ = ranking_metrics(run, {"qa": {"d2": 1}, "qb": {"d1": 1}})
    assert aggregate["mrr_at_10"] == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(RetrievalError):
        run_from_search(["qa"], ["d0", "d1", "d2"], scores, idx)


def test_respect_torch_threads() -> None:
    assert respect_torch_threads() >= 1


@pytest.mark.parametrize("block_rows", [7, 64, 100_000])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_int8_blockwise_gemm_ranks_as_the_scalar_quantizer(
    block_rows: int, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched int8 path (blockwise float32 GEMM) gives today's faiss scalar-quantizer rankings and
    scores exactly, ties included, whatever the block size (several blocks merge their top-k)."""
    from core import retrieval

    corpus, queries = integer_data(5, n=500, nq=40, dim=32)
    rng = np.random.default_rng(6)
    real_corpus = rng.normal(size=(700, 384)).astype(np.float32)
    real_queries = rng.normal(size=(20, 384)).astype(np.float32)
    monkeypatch.setattr(retrieval, "INT8_BLOCK_ROWS", block_rows)
    for c, q in ((corpus, queries), (real_corpus, real_queries)):
        index = build_index(c, "int8")
        monkeypatch.setattr(retrieval, "INT8_GEMM_MIN_QUERIES", 1)
        gemm = index.search(q, k)
        monkeypatch.setattr(retrieval, "INT8_GEMM_MIN_QUERIES", 10**9)
        scalar = index.search(q, k)
        np.testing.assert_array_equal(gemm[1], scalar[1])
        np.testing.assert_array_equal(gemm[0], scalar[0])
        np.testing.assert_array_equal(gemm[1], brute_force_search(c, q, k, "int8")[1])


def test_int8_single_query_stays_on_the_scalar_quantizer(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import retrieval

    corpus, queries = integer_data(7)
    calls: list[int] = []
    real = retrieval.int8_gemm_topk
    monkeypatch.setattr(retrieval, "int8_gemm_topk", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    index = build_index(corpus, "int8")
    index.search(queries[:1], 10)
    assert calls == []  # memory-bound single queries read 1 byte per value in faiss's SIMD loop
    index.search(queries[: retrieval.INT8_GEMM_MIN_QUERIES], 10)
    assert calls
