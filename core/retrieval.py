"""Exact top-k search over a corpus at a precision (faiss), a numpy brute-force reference, runs.

Index and score per precision (queries are quantized like the corpus; int8 with the corpus ranges
unless ``calibration`` is given):

- ``float32``: ``IndexFlatIP``; score = inner product (cosine for normalized embeddings).
- ``float16``: ``IndexFlatIP`` over the corpus cast to float16 by numpy (``core.quantize``) and decoded
  back; score = inner product of the float32 query with the fp16 values. (faiss's ``QT_fp16`` scalar
  quantizer rounds some values differently from numpy in the last bit, up to 1/2 ulp, so it would give
  float16 two definitions; this index holds 4 bytes per value in RAM, ``index_bytes`` reports the
  2-byte storage.)
- ``int8``: the int8 codes of ``core.quantize.quantize``; score = inner product of the int8 query and
  document codes. A batch of ``INT8_GEMM_MIN_QUERIES`` or more queries is scored by blockwise float32
  GEMM (``INT8_BLOCK_ROWS`` codes at a time cast to float32, ``faiss.knn`` on BLAS, the running top-k
  merged), which is exact: every partial sum is an integer below ``dim * 128 * 128 <= 2**24`` for
  dim <= 1024. Fewer queries go through ``IndexScalarQuantizer(QT_8bit_direct_signed)``, whose SIMD
  loop reads 1 byte per value (memory-bound single queries are faster there) and accumulates in
  float32, exact for the same dims. faiss's scalar quantizer has no BLAS path, so batched it was 3.6x
  slower than float32.
- ``binary``: ``IndexBinaryFlat`` over packed sign bits (Hamming); score = ``dim - hamming`` (agreeing bits).

Rescoring (``rescore=m > 0``, int8 and binary only, ignored for float precisions): the top ``m * k``
candidates of the quantized search are re-scored with the float32 query against the documents'
stored codes (int8 values; binary as +-1 signs), as sentence-transformers' ``semantic_search_faiss``
does, so no float corpus is kept in memory; the top k of those are returned with the rescored scores.

Ties break deterministically on (-score, doc index): faiss is asked for a few extra hits, each row is
stable-sorted by (-score, index), and a row whose k-th score equals its last retrieved score (a tie may
continue past what faiss returned) is searched again with twice as many hits, up to the whole corpus.
``k`` larger than the corpus returns every document. This module does not encode texts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from common.errors import LabError
from core.quantize import bytes_per_vector, check_precision, int8_ranges, quantize

TIE_MARGIN = 8  # extra hits fetched beyond k so boundary ties can be ordered without a second search
INT8_GEMM_MIN_QUERIES = 8  # int8 batches from this size are scored by blockwise float32 GEMM
INT8_BLOCK_ROWS = 32768  # int8 codes cast to float32 per GEMM block (32768 x 384 x 4 B = 48 MiB)
INT8_GEMM_MAX_DIM = 1024  # float32 sums of int8 products stay exact integers up to this dim

# faiss 1.15 scores flat indexes with its own SIMD loop while n_queries * dim < 128,000 (at dim 384:
# under 334 queries) and with BLAS sgemm above that. Measured on this 2-core machine (1M x 384 corpus):
# BLAS is 4-12x faster from 8 queries on (100 queries: 0.50 s vs 6.0 s) and equal within noise for 1-4,
# at every dim from 32 to 384; so flat inner-product search always goes through BLAS.
BLAS_THRESHOLD = 0
faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class RetrievalError(LabError):
    """Embeddings or arguments that cannot be searched (empty, mismatched dims, bad k)."""


def index_bytes(n: int, dim: int, precision: str) -> int:
    """Bytes of the vectors of an exact index of ``n`` documents (faiss adds a small constant)."""
    return n * bytes_per_vector(dim, precision)


def respect_torch_threads() -> int:
    """Give faiss the same OpenMP thread count as torch when torch is loaded; returns faiss's count."""
    torch = sys.modules.get("torch")
    if torch is not None:
        faiss.omp_set_num_threads(max(1, int(torch.get_num_threads())))
    return int(faiss.omp_get_max_threads())


def _check_inputs(corpus_emb: Any, query_emb: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    corpus = np.asarray(corpus_emb)
    queries = np.asarray(query_emb)
    if corpus.ndim != 2 or queries.ndim != 2:
        raise RetrievalError(f"embeddings must be 2-D: corpus {corpus.shape}, queries {queries.shape}")
    if corpus.shape[0] == 0:
        raise RetrievalError("the corpus is empty: nothing to search")
    if queries.shape[0] == 0:
        raise RetrievalError("no queries to search (query embeddings have 0 rows)")
    if corpus.shape[1] != queries.shape[1]:
        raise RetrievalError(f"corpus has dim {corpus.shape[1]}, queries have dim {queries.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RetrievalError(f"k must be a positive integer, got {k!r}")
    return corpus.astype(np.float32, copy=False), queries.astype(np.float32, copy=False)


def _sorted_rows(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row ordered by (-score, index)."""
    order = np.lexsort((indices, -scores), axis=-1)
    return np.take_along_axis(scores, order, axis=-1), np.take_along_axis(indices, order, axis=-1)


def _deterministic_topk(
    search_fn: SearchFn, queries: np.ndarray, k: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top min(k, n) per query by (-score, index), widening the search where a tie crosses the cut."""
    k = min(k, n)
    nq = queries.shape[0]
    out_scores = np.empty((nq, k), dtype=np.float32)
    out_idx = np.empty((nq, k), dtype=np.int64)
    rows = np.arange(nq)
    fetch = min(n, k + TIE_MARGIN)
    while rows.size:
        scores, idx = search_fn(queries[rows], fetch)
        scores, idx = _sorted_rows(scores.astype(np.float32), idx.astype(np.int64))
        out_scores[rows], out_idx[rows] = scores[:, :k], idx[:, :k]
        if fetch >= n:
            break
        unresolved = scores[:, k - 1] == scores[:, -1]
        rows = rows[unresolved]
        fetch = min(n, 2 * fetch)
    return out_scores, out_idx


@dataclass
class CorpusIndex:
    """An exact faiss index over one corpus at one precision; build with :func:`build_index`."""

    precision: str
    dim: int
    size: int
    index: Any  # faiss.Index or faiss.IndexBinary
    calibration: np.ndarray | None  # int8: per-dim (min, max) rows (2, dim) that quantize the queries
    codes: np.ndarray  # the stored document codes, used for rescoring

    @property
    def nbytes(self) -> int:
        """Bytes of the stored vectors."""
        return index_bytes(self.size, self.dim, self.precision)

    def _raw_search(self, encoded_queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss search of encoded queries; scores higher-is-better (binary: dim - hamming)."""
        if (
            self.precision == "int8"
            and encoded_queries.shape[0] >= INT8_GEMM_MIN_QUERIES
            and self.dim <= INT8_GEMM_MAX_DIM
        ):
            return int8_gemm_topk(self.codes, encoded_queries, kk)
        dist, idx = self.index.search(encoded_queries, kk)
        if self.precision == "binary":
            return (self.dim - dist).astype(np.float32), idx
        return dist, idx

    def search(self, query_emb: np.ndarray, k: int, rescore: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores (nq, k) float32, indices (nq, k) int64) of float query embeddings."""
        _, queries = _check_inputs(np.zeros((1, self.dim), np.float32), query_emb, k)
        respect_torch_threads()
        if self.precision == "int8":
            encoded = quantize(queries, "int8", self.calibration).astype(np.float32)
        elif self.precision == "binary":
            encoded = quantize(queries, "binary")
        else:
            encoded = np.ascontiguousarray(queries)
        if rescore <= 0 or self.precision in ("float32", "float16"):
            return _deterministic_topk(self._raw_search, encoded, k, self.size)
        _, candidates = _deterministic_topk(self._raw_search, encoded, max(k, rescore * k), self.size)
        doc_vectors = _rescoring_vectors(self.codes[candidates], self.precision, self.dim)  # (nq, c, dim)
        rescored = np.einsum("qd,qcd->qc", queries.astype(np.float64), doc_vectors).astype(np.float32)
        scores, idx = _sorted_rows(rescored, candidates)
        return scores[:, :k], idx[:, :k]


def int8_gemm_topk(
    codes: np.ndarray, queries: np.ndarray, kk: int, block_rows: int = INT8_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``kk`` inner products of int8-valued queries against int8 ``codes`` by blockwise float32 GEMM.

    Returns (scores (nq, kk) float32, indices (nq, kk) int64), unordered within a row; ties at the cut
    may keep any of the tied documents (``_deterministic_topk`` orders and widens them).
    """
    nq, n = queries.shape[0], codes.shape[0]
    kk = min(kk, n)
    queries = np.ascontiguousarray(queries, dtype=np.float32)  # (nq, dim) integer values
    best_scores = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_idx = np.empty((nq, 0), dtype=np.int64)
    # One float32 buffer reused by every block: a fresh 48 MiB array per block costs its page faults again.
    buffer = np.empty((min(block_rows, n), codes.shape[1]), dtype=np.float32)
    for start in range(0, n, block_rows):
        rows = min(block_rows, n - start)
        block = buffer[:rows]  # (b, dim), C-contiguous: leading rows of a C-contiguous buffer
        np.copyto(block, codes[start : start + rows], casting="unsafe")  # int8 values are exact in float32
        scores, idx = faiss.knn(queries, block, min(kk, block.shape[0]), metric=faiss.METRIC_INNER_PRODUCT)
        scores = np.concatenate([best_scores, scores], axis=1)
        idx = np.concatenate([best_idx, idx.astype(np.int64) + start], axis=1)
        if scores.shape[1] > kk:
            keep = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            scores, idx = np.take_along_axis(scores, keep, axis=1), np.take_along_axis(idx, keep, axis=1)
        best_scores, best_idx = scores, idx
    return best_scores, best_idx


def _rescoring_vectors(codes: np.ndarray, precision: str, dim: int) -> np.ndarray:
    """Document codes as float vectors for rescoring: int8 values, or binary bits as +-1."""
    if precision == "binary":
        bits = np.unpackbits(codes, axis=-1)[..., :dim]
        return bits.astype(np.float64) * 2.0 - 1.0
    return codes.astype(np.float64)


def build_index(
    corpus_emb: np.ndarray, precision: str = "float32", calibration: np.ndarray | None = None
) -> CorpusIndex:
    """Exact faiss index of float corpus embeddings (n, dim) at ``precision`` (module docstring)."""
    check_precision(precision)
    corpus, _ = _check_inputs(corpus_emb, np.zeros((1, np.asarray(corpus_emb).shape[-1]), np.float32), 1)
    n, dim = corpus.shape
    cal: np.ndarray | None = None
    index: Any
    if precision == "float32":
        codes = np.ascontiguousarray(corpus)
        index = faiss.IndexFlatIP(dim)
        index.add(codes)
    elif precision == "float16":
        codes = quantize(corpus, "float16")
        index = faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(codes.astype(np.float32)))
    elif precision == "int8":
        # Only the per-dim (min, max) rows are kept: they give exactly the codes the whole calibration set
        # gives, and quantizing each query batch against a 1M-row set cost 90-660 ms per single query.
        cal = int8_ranges(corpus if calibration is None else calibration)
        codes = quantize(corpus, "int8", cal)
        index = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_8bit_direct_signed, faiss.METRIC_INNER_PRODUCT
        )
        index.add(codes.astype(np.float32))
    else:
        codes = quantize(corpus, "binary")
        index = faiss.IndexBinaryFlat(8 * codes.shape[1])
        index.add(codes)
    return CorpusIndex(precision=precision, dim=dim, size=n, index=index, calibration=cal, codes=codes)


def search(
    corpus_emb: np.ndarray,
    query_emb: np.ndarray,
    k: int,
    precision: str = "float32",
    rescore: int = 0,
    calibration: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k search: (scores (nq, min(k, n)) float32, indices (nq, min(k, n)) int64).

    Args:
        corpus_emb: float corpus embeddings (n, dim).
        query_emb: float query embeddings (nq, dim).
        k: hits per query (capped at the corpus size).
        precision: float32 | float16 | int8 | binary.
        rescore: int8/binary - re-score the top ``rescore * k`` with the float query (0: off).
        calibration: int8 - embeddings whose per-dim ranges set the buckets (default: the corpus).
    """
    _check_inputs(corpus_emb, query_emb, k)
    return build_index(corpus_emb, precision, calibration).search(query_emb, k, rescore)


def brute_force_search(
    corpus_emb: np.ndarray,
    query_emb: np.ndarray,
    k: int,
    precision: str = "float32",
    rescore: int = 0,
    calibration: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy reference of :func:`search`: full score matrix in float64/int64, sorted by (-score, index)."""
    check_precision(precision)
    corpus, queries = _check_inputs(corpus_emb, query_emb, k)
    n, dim = corpus.shape
    if precision == "float32":
        full = queries.astype(np.float64) @ corpus.astype(np.float64).T
        codes: np.ndarray = corpus
    elif precision == "float16":
        full = queries.astype(np.float64) @ corpus.astype(np.float16).astype(np.float64).T
        codes = corpus
    elif precision == "int8":
        cal = corpus if calibration is None else calibration
        codes = quantize(corpus, "int8", cal)
        full = (quantize(queries, "int8", cal).astype(np.int64) @ codes.astype(np.int64).T).astype(np.float64)
    else:
        codes = quantize(corpus, "binary")
        doc_bits = np.unpackbits(codes, axis=1)[:, :dim].astype(np.int64)
        query_bits = np.unpackbits(quantize(queries, "binary"), axis=1)[:, :dim].astype(np.int64)
        agree = query_bits @ doc_bits.T + (1 - query_bits) @ (1 - doc_bits).T
        full = agree.astype(np.float64)  # dim - hamming
    order = np.lexsort((np.broadcast_to(np.arange(n), full.shape), -full), axis=-1)
    use_rescore = rescore > 0 and precision in ("int8", "binary")
    take = min(n, max(k, rescore * k) if use_rescore else k)
    top = order[:, :take].astype(np.int64)
    if not use_rescore:
        return np.take_along_axis(full, top, axis=1).astype(np.float32), top
    doc_vectors = _rescoring_vectors(codes[top], precision, dim)
    rescored = np.einsum("qd,qcd->qc", queries.astype(np.float64), doc_vectors)
    scores, idx = _sorted_rows(rescored, top)
    k_eff = min(k, n)
    return scores[:, :k_eff].astype(np.float32), idx[:, :k_eff]


def run_from_search(
    query_ids: Sequence[str], corpus_ids: Sequence[str], scores: np.ndarray, indices: np.ndarray
) -> dict[str, dict[str, float]]:
    """A run (query id -> doc id -> score) in rank order, for ``core.metrics.ranking_metrics``."""
    if len(query_ids) != scores.shape[0] or scores.shape != indices.shape:
        raise RetrievalError(
            f"{len(query_ids)} query ids for scores {scores.shape} and indices {indices.shape}"
        )
    run: dict[str, dict[str, float]] = {}
    for qid, row_scores, row_idx in zip(query_ids, scores, indices, strict=True):
        run[qid] = {corpus_ids[int(i)]: float(s) for s, i in zip(row_scores, row_idx, strict=True) if i >= 0}
    return run
