"""Approximate search (core.ann): recall@k by hand and against numpy brute force, indexes per precision."""

from __future__ import annotations

import numpy as np
import pytest

from core import ann, quantize, retrieval


def _data(n: int = 400, nq: int = 12, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    corpus = rng.normal(size=(n, dim)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:nq] + 0.5 * rng.normal(size=(nq, dim)).astype(np.float32)
    return corpus, queries


def _numpy_topk(corpus: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T  # (nq, n)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_recall_at_k_by_hand() -> None:
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    approx = np.array([[0, 9, 2], [-1, -1, 5]])  # 2 of 3 found; 1 of 3 found (-1 = no hit)
    assert ann.per_query_recall(approx, exact, 3).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert ann.recall_at_k(approx, exact, 3) == pytest.approx(0.5)
    assert ann.recall_at_k(approx, exact, 1) == pytest.approx(0.5)  # only the first column counts
    assert ann.recall_at_k(exact, exact, 3) == 1.0


def test_recall_against_numpy_brute_force_equals_set_overlap() -> None:
    corpus, queries = _data()
    k = 10
    _, truth = _numpy_topk(corpus, queries, k)
    index = ann.build_ann_index(corpus, "float32", ann.AnnSpec("hnsw", m=4, ef_construction=8, ef_search=10))
    _, found = index.search(queries, k)
    by_hand = np.mean([len(set(f) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist(), strict=True)])
    assert ann.recall_at_k(found, truth, k) == pytest.approx(by_hand)


def test_exhaustive_ivf_equals_numpy_brute_force() -> None:
    corpus, queries = _data()
    spec = ann.AnnSpec("ivf", nlist=8, nprobe=8)  # every list probed: exact
    index = ann.build_ann_index(corpus, "float32", spec)
    assert index.nlist == 8 and index.label == "ivf8-p8"
    scores, found = index.search(queries, 7)
    ref_scores, ref_idx = _numpy_topk(corpus, queries, 7)
    np.testing.assert_array_equal(found, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    report = ann.compare_with_exact(corpus, queries, "float32", spec, k=7, repeats=1)
    assert report.recall_at_k == 1.0
    assert report.n_docs == 400 and report.n_queries == 12 and report.index_kind == "ivf8-p8"
    assert report.search_ms_per_query > 0 and report.exact_search_ms_per_query > 0


def test_plain_search_on_exact_index_equals_brute_force_reference() -> None:
    corpus, queries = _data(seed=1)
    scores, idx = ann.plain_search(retrieval.build_index(corpus, "float32"), queries, 5)
    ref_scores, ref_idx = retrieval.brute_force_search(corpus, queries, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("precision", ["float16", "int8", "binary"])
def test_exhaustive_ivf_scores_are_the_exact_precision_scores(precision: str) -> None:
    corpus, queries = _data(n=300, dim=32, seed=2)
    index = ann.build_ann_index(corpus, precision, ann.AnnSpec("ivf", nlist=4, nprobe=4))
    scores, found = index.search(queries, 10)
    ref_scores, _ = retrieval.brute_force_search(corpus, queries, 10, precision=precision)
    # the same top-10 score lists (ids may differ only among equal scores)
    np.testing.assert_allclose(np.sort(scores, axis=1), np.sort(ref_scores, axis=1), atol=1e-3)
    if precision == "binary":  # dim - hamming of each returned document, by numpy
        q_bits = np.unpackbits(quantize.quantize(queries, "binary"), axis=1)[:, :32]
        d_bits = np.unpackbits(quantize.quantize(corpus, "binary"), axis=1)[:, :32]
        agree = 32 - (q_bits[:, None, :] != d_bits[found]).sum(axis=2)
        np.testing.assert_array_equal(scores, agree)


def test_rescoring_scores_are_float_query_times_stored_codes() -> None:
    corpus, queries = _data(n=200, dim=16, seed=3)
    index = retrieval.build_index(corpus, "binary")
    scores, found = ann.plain_search(index, queries, 5, rescore=4)
    signs = np.unpackbits(index.codes, axis=1)[:, :16].astype(np.float32) * 2 - 1  # (n, 16) of +-1
    expected = np.einsum("qd,qkd->qk", queries, signs[found])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    _, candidates = ann.plain_search(index, queries, 20)  # rescoring picks from the top 4 * 5 hits
    assert all(set(f) <= set(c) for f, c in zip(found.tolist(), candidates.tolist(), strict=True))


def test_hnsw_binary_and_int8_build_and_search() -> None:
    corpus, queries = _data(n=150, dim=16, seed=4)
    for precision in ("int8", "binary"):
        report = ann.compare_with_exact(corpus, queries, precision, ann.AnnSpec("hnsw", m=8), k=5, repeats=1)
        assert 0.0 <= report.recall_at_k <= 1.0
        assert report.index_kind == "hnsw8-ef64" and report.params["m"] == 8


def test_parse_ann_and_defaults() -> None:
    assert ann.parse_ann("") == []
    specs = ann.parse_ann("hnsw:m=16:ef_search=128, ivf:nlist=64:nprobe=4")
    assert specs == [ann.AnnSpec("hnsw", m=16, ef_search=128), ann.AnnSpec("ivf", nlist=64, nprobe=4)]
    assert [s.label for s in specs] == ["hnsw16-ef128", "ivf64-p4"]
    assert ann.AnnSpec("ivf").label_for(1400) == "ivf35-p8"
    assert ann.default_nlist(1_000_000) == 4000 and ann.default_nlist(10) == 1
    with pytest.raises(ann.AnnError, match="flat"):
        ann.parse_ann("flat")
    with pytest.raises(ann.AnnError, match="bogus=1"):
        ann.parse_ann("hnsw:bogus=1")
    with pytest.raises(ann.AnnError, match="m must be >= 1"):
        ann.AnnSpec("hnsw", m=0)
    with pytest.raises(ann.AnnError, match="exceeds the corpus size"):
        ann.build_ann_index(np.ones((3, 4), np.float32), "float32", ann.AnnSpec("ivf", nlist=5))


def test_precomputed_int8_ranges_give_the_same_search() -> None:
    corpus, queries = _data(n=300, dim=16, seed=5)
    index = retrieval.build_index(corpus, "int8")
    ranges = ann.query_calibration(index)
    assert ranges is not None and ranges.shape == (2, 16)
    with_full = ann.plain_search(index, queries, 8)  # ranges recomputed from the whole corpus
    with_ranges = ann.plain_search(index, queries, 8, calibration=ranges)
    np.testing.assert_array_equal(with_full[0], with_ranges[0])
    np.testing.assert_array_equal(with_full[1], with_ranges[1])
    assert ann.query_calibration(retrieval.build_index(corpus, "binary")) is None
    approx = ann.build_ann_index(corpus, "int8", ann.AnnSpec("ivf", nlist=2, nprobe=2))
    np.testing.assert_array_equal(approx.codes, index.codes)  # same codes as the exact int8 index
