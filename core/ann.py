"""Approximate search (faiss HNSW and IVF) per precision, with recall@k against exact search beside its speed.

Scope: build an approximate index over float corpus embeddings at a precision, search it, and measure it
against the exact index of ``core.retrieval`` on the same data. Indexes (faiss factory strings):

============  ==========================  ==========================
precision     HNSW (``hnsw``)             IVF (``ivf``)
============  ==========================  ==========================
float32       ``HNSW{m},Flat``            ``IVF{nlist},Flat``
float16       ``HNSW{m},SQfp16``          ``IVF{nlist},SQfp16``
int8          ``HNSW{m},SQ8_direct_signed``  ``IVF{nlist},SQ8_direct_signed``
binary        ``BHNSW{m}`` (Hamming)      ``BIVF{nlist}`` (Hamming)
============  ==========================  ==========================

Float indexes use the inner product; int8 indexes hold the int8 codes of ``core.quantize`` (queries are
quantized with the corpus ranges, as in ``core.retrieval``); binary scores are ``dim - hamming``.
``rescore=m`` (int8/binary) re-scores the top ``m * k`` candidates with the float query against the
stored codes, as the exact index does.

:func:`plain_search` is the search a deployed system runs on either kind of index: encode the queries,
one faiss search, optional rescoring, hits in faiss's order. It is what the cost measurements time
(``core.retrieval``'s exact search also re-orders ties by document index, and widens the search when a
tie crosses the cut, which on coarse binary scores can cost more than the search itself).

Recall@k (:func:`recall_at_k`): for each query, the fraction of the exact top-k (``min(k, n)`` ids)
found among the approximate top-k; the mean over queries. Out of scope: encoding texts, storing results.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np

from common.errors import LabError
from core import quantize, retrieval

ANN_KINDS: tuple[str, ...] = ("hnsw", "ivf")


class AnnError(LabError):
    """An approximate-index option or input that cannot be used; the message names it."""


@dataclass(frozen=True)
class AnnSpec:
    """Which approximate index and its knobs.

    Args:
        kind: ``hnsw`` or ``ivf``.
        m: HNSW neighbours per node.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search-time beam width.
        nlist: IVF lists; None = about ``4 * sqrt(n)``, at most ``n // 39`` (faiss's minimum of 39
            training points per list), at least 1.
        nprobe: IVF lists visited per query.
    """

    kind: str
    m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int = 8

    def __post_init__(self) -> None:
        if self.kind not in ANN_KINDS:
            raise AnnError(f"unknown approximate index {self.kind!r}; choose from {', '.join(ANN_KINDS)}")
        for name in ("m", "ef_construction", "ef_search", "nprobe"):
            if getattr(self, name) < 1:
                raise AnnError(f"{self.kind} {name} must be >= 1, got {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise AnnError(f"ivf nlist must be >= 1, got {self.nlist}")

    @property
    def label(self) -> str:
        """Stable name of the index and its knobs, e.g. ``hnsw32-ef64`` or ``ivf-auto-p8``."""
        if self.kind == "hnsw":
            return f"hnsw{self.m}-ef{self.ef_search}"
        return f"ivf{self.nlist or '-auto'}-p{self.nprobe}"

    def label_for(self, n: int) -> str:
        """The label of this index built over ``n`` documents (IVF names its actual number of lists)."""
        if self.kind == "hnsw":
            return self.label
        return f"ivf{self.nlist or default_nlist(n)}-p{self.nprobe}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the knobs."""
        return asdict(self)


def parse_ann(text: str | None) -> list[AnnSpec]:
    """``"hnsw,ivf"`` -> specs with default knobs; knobs as ``hnsw:m=16:ef_search=128``, ``ivf:nlist=256:nprobe=16``.

    >>> [s.label for s in parse_ann("hnsw, ivf:nprobe=4")]
    ['hnsw32-ef64', 'ivf-auto-p4']
    """
    specs = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        kind, *knobs = part.split(":")
        values: dict[str, Any] = {}
        for knob in knobs:
            name, _, raw = knob.partition("=")
            if (
                name not in {"m", "ef_construction", "ef_search", "nlist", "nprobe"}
                or not raw.strip().isdigit()
            ):
                raise AnnError(
                    f"bad approximate-index option {knob!r} in {part!r} (e.g. hnsw:m=16:ef_search=128)"
                )
            values[name] = int(raw)
        specs.append(AnnSpec(kind.strip().lower(), **values))
    return specs


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` documents: ``round(4 sqrt(n))`` capped at ``n // 39``, at least 1.

    >>> default_nlist(1_000_000), default_nlist(1400), default_nlist(20)
    (4000, 35, 1)
    """
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def encode_queries(queries: np.ndarray, precision: str, calibration: np.ndarray | None) -> np.ndarray:
    """Float queries as the index of ``precision`` takes them (int8 codes as float32, packed bits, floats)."""
    if precision == "int8":
        return quantize.quantize(queries, "int8", calibration).astype(np.float32)
    if precision == "binary":
        return quantize.quantize(queries, "binary")
    return np.ascontiguousarray(queries, dtype=np.float32)


def _rescoring_vectors(codes: np.ndarray, precision: str, dim: int) -> np.ndarray:
    """Stored codes as float vectors for rescoring: int8 values, binary bits as +-1."""
    if precision == "binary":
        return np.unpackbits(codes, axis=-1)[..., :dim].astype(np.float32) * 2.0 - 1.0
    return codes.astype(np.float32)


@dataclass
class AnnIndex:
    """An approximate faiss index over one corpus at one precision; build with :func:`build_ann_index`."""

    spec: AnnSpec
    precision: str
    dim: int
    size: int
    index: Any  # faiss.Index or faiss.IndexBinary
    calibration: np.ndarray | None
    codes: np.ndarray  # int8/binary codes kept for rescoring (empty for float precisions)
    nlist: int | None = None

    @property
    def label(self) -> str:
        """The spec's label with the actual number of IVF lists."""
        return self.spec.label_for(self.size)

    def search(self, query_emb: np.ndarray, k: int, rescore: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k of float queries: (scores (nq, k) float32, indices (nq, k) int64, -1 = none)."""
        return plain_search(self, query_emb, k, rescore)


def build_ann_index(
    corpus_emb: np.ndarray,
    precision: str,
    spec: AnnSpec,
    calibration: np.ndarray | None = None,
) -> AnnIndex:
    """Approximate index of float corpus embeddings (n, dim) at ``precision`` (table in the module docstring)."""
    quantize.check_precision(precision)
    corpus = np.ascontiguousarray(np.asarray(corpus_emb, dtype=np.float32))
    if corpus.ndim != 2 or corpus.shape[0] == 0:
        raise AnnError(f"corpus embeddings must be a non-empty (n, dim) array, got shape {corpus.shape}")
    n, dim = corpus.shape
    retrieval.respect_torch_threads()
    nlist = (spec.nlist or default_nlist(n)) if spec.kind == "ivf" else None
    if nlist is not None and nlist > n:
        raise AnnError(f"ivf nlist {nlist} exceeds the corpus size {n}")
    cal: np.ndarray | None = None
    codes = np.empty((0, 0), dtype=np.uint8)
    index: Any
    if precision == "binary":
        codes = quantize.quantize(corpus, "binary")
        bits = 8 * codes.shape[1]
        index = faiss.index_binary_factory(bits, f"BHNSW{spec.m}" if spec.kind == "hnsw" else f"BIVF{nlist}")
        data: np.ndarray = codes
    else:
        storage = {"float32": "Flat", "float16": "SQfp16", "int8": "SQ8_direct_signed"}[precision]
        head = f"HNSW{spec.m}" if spec.kind == "hnsw" else f"IVF{nlist}"
        index = faiss.index_factory(dim, f"{head},{storage}", faiss.METRIC_INNER_PRODUCT)
        if precision == "int8":
            cal = quantize.int8_ranges(corpus if calibration is None else calibration)  # (2, dim) min/max
            codes = quantize.quantize(corpus, "int8", cal)
            data = codes.astype(np.float32)
        else:
            data = corpus
    if spec.kind == "hnsw":
        index.hnsw.efConstruction = spec.ef_construction
    else:
        if precision in ("float16", "int8"):
            index.by_residual = False  # store the codes themselves, as the exact index does
        index.train(data)
    index.add(data)
    _set_search_knobs(index, spec)
    return AnnIndex(spec, precision, dim, n, index, cal, codes, nlist)


def _set_search_knobs(index: Any, spec: AnnSpec) -> None:
    if spec.kind == "hnsw":
        index.hnsw.efSearch = spec.ef_search
    else:
        index.nprobe = spec.nprobe


def query_calibration(index: AnnIndex | retrieval.CorpusIndex) -> np.ndarray | None:
    """The int8 ranges (2, dim) that quantize queries for ``index`` (None for other precisions).

    Quantizing with these two rows gives exactly the codes the full calibration set gives (its per-dim
    min and max are the same), without scanning the corpus on every query: compute once per index.
    """
    if index.precision != "int8" or index.calibration is None:
        return None
    return quantize.int8_ranges(index.calibration)


def plain_search(
    index: AnnIndex | retrieval.CorpusIndex,
    query_emb: np.ndarray,
    k: int,
    rescore: int = 0,
    calibration: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode queries, one faiss search, optional float rescoring (int8/binary): (scores, indices) by score.

    Works on exact (``core.retrieval.CorpusIndex``) and approximate indexes alike. Missing hits (an IVF
    probe that found fewer than k) have index -1 and score -inf. ``calibration`` (int8) replaces the
    index's calibration set, e.g. with :func:`query_calibration` computed once.
    """
    queries = np.asarray(query_emb, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.dim:
        raise AnnError(f"queries must be (nq, {index.dim}), got shape {queries.shape}")
    if k < 1:
        raise AnnError(f"k must be >= 1, got {k}")
    retrieval.respect_torch_threads()
    k = min(k, index.size)
    use_rescore = rescore > 0 and index.precision in ("int8", "binary")
    fetch = min(index.size, rescore * k) if use_rescore else k
    encoded = encode_queries(
        queries, index.precision, index.calibration if calibration is None else calibration
    )
    dist, idx = index.index.search(encoded, fetch)
    idx = idx.astype(np.int64)
    scores = ((index.dim - dist) if index.precision == "binary" else dist).astype(np.float32)
    scores[idx < 0] = -np.inf
    if use_rescore:
        vectors = _rescoring_vectors(
            index.codes[np.maximum(idx, 0)], index.precision, index.dim
        )  # (nq, c, d)
        scores = np.einsum("qd,qcd->qc", queries, vectors).astype(np.float32)
        scores[idx < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(idx, order, axis=1)


def per_query_recall(approx_idx: np.ndarray, exact_idx: np.ndarray, k: int) -> np.ndarray:
    """Per query: |approximate top-k ∩ exact top-k| / (number of exact ids in the top k), shape (nq,).

    >>> per_query_recall(np.array([[1, 2, -1]]), np.array([[2, 3, 4]]), 3).tolist()
    [0.3333333333333333]
    """
    approx = np.asarray(approx_idx)[:, :k]
    exact = np.asarray(exact_idx)[:, :k]
    if approx.shape[0] != exact.shape[0]:
        raise AnnError(f"{approx.shape[0]} approximate result rows for {exact.shape[0]} exact ones")
    out = np.empty(exact.shape[0], dtype=np.float64)
    for i, (a_row, e_row) in enumerate(zip(approx, exact, strict=True)):
        truth = {int(x) for x in e_row if x >= 0}
        found = {int(x) for x in a_row if x >= 0}
        out[i] = len(truth & found) / len(truth) if truth else 1.0
    return out


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray, k: int) -> float:
    """Mean over queries of :func:`per_query_recall`."""
    return float(per_query_recall(approx_idx, exact_idx, k).mean())


@dataclass(frozen=True)
class AnnReport:
    """An approximate index beside exact search on the same corpus, queries and precision."""

    precision: str
    dim: int
    index_kind: str
    n_docs: int
    n_queries: int
    k: int
    rescore: int
    recall_at_k: float
    build_s: float
    search_ms_per_query: float
    exact_build_s: float
    exact_search_ms_per_query: float
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


def _timed_search(
    index: AnnIndex | retrieval.CorpusIndex, queries: np.ndarray, k: int, rescore: int, repeats: int
) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` wall time of one batched search of all queries, and its indices."""
    best = math.inf
    idx = np.empty((0, 0), dtype=np.int64)
    calibration = query_calibration(index)
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        _, idx = plain_search(index, queries, k, rescore, calibration)
        best = min(best, time.perf_counter() - start)
    return best, idx


def compare_with_exact(
    corpus_emb: np.ndarray,
    query_emb: np.ndarray,
    precision: str,
    spec: AnnSpec,
    k: int = 10,
    rescore: int = 0,
    calibration: np.ndarray | None = None,
    repeats: int = 3,
    exact: retrieval.CorpusIndex | None = None,
) -> AnnReport:
    """Build ``spec`` at ``precision``; recall@k against the exact index of the same precision; both timed.

    Timings are the best of ``repeats`` batched searches of all queries, divided by the number of
    queries. ``exact`` may pass an already built exact index of the same corpus and precision.
    """
    queries = np.asarray(query_emb, dtype=np.float32)
    start = time.perf_counter()
    exact_index = exact if exact is not None else retrieval.build_index(corpus_emb, precision, calibration)
    exact_build = time.perf_counter() - start if exact is None else math.nan
    start = time.perf_counter()
    approx = build_ann_index(corpus_emb, precision, spec, calibration)
    build = time.perf_counter() - start
    exact_s, exact_idx = _timed_search(exact_index, queries, k, rescore, repeats)
    approx_s, approx_idx = _timed_search(approx, queries, k, rescore, repeats)
    nq = max(1, queries.shape[0])
    return AnnReport(
        precision=precision,
        dim=approx.dim,
        index_kind=approx.label,
        n_docs=approx.size,
        n_queries=queries.shape[0],
        k=k,
        rescore=rescore,
        recall_at_k=recall_at_k(approx_idx, exact_idx, k),
        build_s=build,
        search_ms_per_query=approx_s * 1e3 / nq,
        exact_build_s=exact_build,
        exact_search_ms_per_query=exact_s * 1e3 / nq,
        params={**spec.to_dict(), "nlist": approx.nlist},
    )
