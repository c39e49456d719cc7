"""Search cost per (dim, precision): bytes, exact and approximate search time, recall against float32."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core import ann, quantize, retrieval, submodels
from core.ann import AnnSpec
from core.cost.encoding import timed
from core.cost.keys import EXACT, CostError, ProgressFn


@dataclass(frozen=True)
class SearchMeasurement:
    """Bytes and search time of one (dim, precision, index kind) over a corpus.

    ``search_ms_per_query`` is the best of ``repeats`` batched searches of all queries divided by their
    number; ``search_ms_p50``/``p95`` time one query per call. ``recall_at_k`` is against exact search at
    the same precision (approximate indexes only, else None); ``recall_vs_float32`` against exact float32
    search at the same dim (so quantization, rescoring and approximation all count).
    """

    dim: int
    precision: str
    index_kind: str
    layer: int
    n_docs: int
    n_queries: int
    k: int
    bytes_per_vector: int
    index_bytes: int
    build_s: float
    search_ms_per_query: float
    search_ms_p50: float
    search_ms_p95: float
    recall_at_k: float | None
    recall_vs_float32: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


def search_kinds(
    precisions: Sequence[str], rescore: int, ann_specs: Sequence[AnnSpec], n_docs: int
) -> list[tuple[str, str]]:
    """Every (precision, index kind) that :func:`measure_search` measures for these options."""
    kinds = [(p, EXACT) for p in precisions]
    if rescore > 0:
        kinds += [(p, f"{EXACT}+rescore{rescore}") for p in precisions if p in ("int8", "binary")]
    kinds += [(p, spec.label_for(n_docs)) for spec in ann_specs for p in precisions]
    return kinds


def _single_query_ms(search: Callable[[np.ndarray], Any], queries: np.ndarray, n: int) -> tuple[float, float]:
    """p50 and p95 (ms) of one-query searches over the first ``n`` queries (after one untimed call)."""
    sample = queries[: max(1, min(n, len(queries)))]
    search(sample[:1])
    times = [timed(lambda q=q: search(q[None, :])) * 1e3 for q in sample]  # type: ignore[misc]
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


class _ExactIndexes:
    """Exact indexes of one corpus, built once per precision, with their build times."""

    def __init__(self, corpus: np.ndarray) -> None:
        self.corpus = corpus
        self.indexes: dict[str, Any] = {}
        self.build_s: dict[str, float] = {}

    def __call__(self, precision: str) -> Any:
        if precision not in self.indexes:
            start = time.perf_counter()
            self.indexes[precision] = retrieval.build_index(self.corpus, precision)
            self.build_s[precision] = time.perf_counter() - start
        return self.indexes[precision]


def measure_search(
    corpus_emb: np.ndarray,
    query_emb: np.ndarray,
    dims: Sequence[int],
    precisions: Sequence[str] = ("float32", "float16", "int8", "binary"),
    k: int = 10,
    rescore: int = 0,
    ann_specs: Sequence[AnnSpec] = (),
    normalize: bool = True,
    repeats: int = 3,
    single_queries: int = 50,
    layer: int = 0,
    skip: Iterable[tuple[int, str, str]] = (),
    progress: ProgressFn | None = None,
) -> list[SearchMeasurement]:
    """Index bytes and search time per (dim, precision, index kind) of full-width corpus/query embeddings.

    Each dim is a truncation of the full-width matrices (``core.submodels.truncate``, normalized when
    ``normalize``). Exact indexes are ``core.retrieval.build_index``; with ``rescore > 0`` int8 and
    binary are also measured with float rescoring of the top ``rescore * k``; ``ann_specs`` adds
    approximate indexes (``core.ann``). Cells in ``skip`` ((dim, precision, index kind)) are not measured.

    Args:
        corpus_emb: (n_docs, width) float embeddings.
        query_emb: (n_queries, width) float embeddings.
        dims: dims to measure (each <= width).
        precisions: precisions to measure.
        k: hits per query.
        rescore: candidate multiplier for int8/binary rescoring (0: no rescoring rows).
        ann_specs: approximate indexes to measure at every (dim, precision).
        normalize: L2-normalize truncated vectors (cosine checkpoints).
        repeats: batched searches per cell (the best is kept).
        single_queries: queries timed one per call for p50/p95.
        layer: recorded with the rows (the layer the embeddings came from).
        skip: cells already stored.
        progress: called with ("search", done, total).
    """
    for p in precisions:
        quantize.check_precision(p)
    corpus_full = np.asarray(corpus_emb, dtype=np.float32)
    queries_full = np.asarray(query_emb, dtype=np.float32)
    if corpus_full.ndim != 2 or queries_full.ndim != 2 or corpus_full.shape[1] != queries_full.shape[1]:
        raise CostError(
            f"corpus {corpus_full.shape} and queries {queries_full.shape} must be (n, width) alike"
        )
    width = corpus_full.shape[1]
    bad = [d for d in dims if not 1 <= d <= width]
    if bad:
        raise CostError(f"dims {bad} are outside 1..{width}")
    n, nq = corpus_full.shape[0], queries_full.shape[0]
    skipped = set(skip)
    kinds = search_kinds(precisions, rescore, ann_specs, n)
    plan = [(d, p, kind) for d in dims for p, kind in kinds if (d, p, kind) not in skipped]
    total, done = len(plan), 0
    out: list[SearchMeasurement] = []
    for dim in sorted({d for d, _, _ in plan}):
        corpus = submodels.truncate(corpus_full, dim, normalize)  # (n_docs, dim)
        queries = submodels.truncate(queries_full, dim, normalize)  # (n_queries, dim)
        exact = _ExactIndexes(corpus)
        _, truth_idx = ann.plain_search(exact("float32"), queries, k)
        for precision, kind in [(p, kk) for d, p, kk in plan if d == dim]:
            spec = next((s for s in ann_specs if s.label_for(n) == kind), None)
            use_rescore = rescore if kind.startswith(f"{EXACT}+rescore") else 0
            index: retrieval.CorpusIndex | ann.AnnIndex
            if spec is None:  # exact, with or without rescoring: one index, its build time
                index = exact(precision)
                build_s = exact.build_s[precision]
            else:
                start = time.perf_counter()
                index = ann.build_ann_index(corpus, precision, spec)
                build_s = time.perf_counter() - start
            cal = ann.query_calibration(index)  # int8 ranges computed once, as a deployed index would
            best, idx = math.inf, np.empty((0, 0), dtype=np.int64)
            for _ in range(max(1, repeats)):
                elapsed = time.perf_counter()
                _, idx = ann.plain_search(index, queries, k, use_rescore, cal)
                best = min(best, time.perf_counter() - elapsed)
            p50, p95 = _single_query_ms(
                lambda q, index=index, r=use_rescore, c=cal: ann.plain_search(index, q, k, r, c),  # type: ignore[misc]
                queries,
                single_queries,
            )
            recall_same: float | None = None
            if spec is not None:
                _, exact_idx = ann.plain_search(exact(precision), queries, k)
                recall_same = ann.recall_at_k(idx, exact_idx, k)
            out.append(
                SearchMeasurement(
                    dim=dim,
                    precision=precision,
                    index_kind=kind,
                    layer=layer,
                    n_docs=n,
                    n_queries=nq,
                    k=k,
                    bytes_per_vector=quantize.bytes_per_vector(dim, precision),
                    index_bytes=retrieval.index_bytes(n, dim, precision),
                    build_s=build_s,
                    search_ms_per_query=best * 1e3 / max(1, nq),
                    search_ms_p50=p50,
                    search_ms_p95=p95,
                    recall_at_k=recall_same,
                    recall_vs_float32=ann.recall_at_k(idx, truth_idx, k),
                    details={
                        "rescore": use_rescore,
                        "repeats": repeats,
                        "single_queries": min(single_queries, nq),
                        "faiss_threads": retrieval.respect_torch_threads(),
                        **({"ann": spec.to_dict()} if spec is not None else {}),
                    },
                )
            )
            done += 1
            if progress:
                progress("search", done, total)
    return out
