"""Live demo: two sub-models side by side on a typed query, and one sentence pair across the whole grid.

Search (:func:`search`, :func:`side_by_side`): a corpus is a retrieval dataset (its documents, queries
and qrels) or pasted documents, one per line (:func:`corpus_from_text`). Corpus embeddings are the
pooled matrices of ``core.submodels.pooled_embeddings``: a dataset corpus comes from (and fills) the
on-disk embedding cache, with the same document prompt as grid evaluation, so a corpus evaluated
before is never re-encoded; pasted documents are encoded once per process and kept only in memory.
Only the query is encoded live, by a copy of the checkpoint truncated to the sub-model's layers
(``truncated_copy``, kept per (checkpoint, layers) in a small cache), so the measured query latency is
what that sub-model really costs. Search is exact faiss search at the sub-model's precision
(``core.retrieval``). Lists are compared by overlap count, Jaccard and rank-biased overlap.

Backends (``DemoModel.backend``, core/backends): off torch, corpus and query embeddings are the grid
evaluation's own on that backend (``pooled_embeddings``: the all-layer pass of ``runner_for``), so a
Demo answer equals the evaluated cell's; the query latency is timed on the k-layer sub-model as it
ships on that backend (``core.cost``'s encode path: its own ONNX graph for onnx / onnx-int8).

Sentence pair (:func:`pair_grid`): one forward pass gives every layer; each (layer, dim) cell is a
slice, so the similarity of two sentences at every cell costs one encode.

Out of scope: storing anything (the demo writes nothing to the database; a dataset corpus may fill the
embedding cache, which is derived data), drawing and widgets (pages/5_Demo.py, core/figures).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from common.errors import LabError
from core import backends, checkpoints, datasets, quantize, retrieval, submodels, views
from core.cost import encoding as cost_encoding
from core.memo import LRUCache

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.checkpoints import LoadedCheckpoint

TOP_K = 10
RBO_P = 0.9  # rank-biased overlap persistence: the top 10 ranks carry ~65% of the weight
MAX_PASTED_DOCS = 2000
MAX_PASTED_CHARS = 2_000_000
LATENCY_REPEATS = 15  # timed queries per sub-model: the median and middle half are shown
LATENCY_WARMUP = 2  # untimed queries first
MAX_QUERY_CHARS = 2000
DOCUMENT_CHARS = 1500  # a hit's text is shown whole (tables wrap it) up to this, then cut with a count
INDEXES_KEPT = 8
PASTED_CORPORA_KEPT = 4
# The prompt names grid evaluation uses (core.scoring.encode_dataset), so cache keys match.
QUERY_PROMPT_NAMES: tuple[str, ...] = ("query",)
DOCUMENT_PROMPT_NAMES: tuple[str, ...] = ("document", "passage", "corpus", "doc")


class DemoError(LabError):
    """A demo request that cannot run: empty query or corpus, a bad sub-model, too much pasted text."""


@dataclass(frozen=True)
class DemoModel:
    """A sub-model to demo: a checkpoint name (as ``checkpoints.load`` takes it), a grid cell and the
    deployment backend that runs its encoder (core/backends)."""

    checkpoint: str
    layer: int
    dim: int
    precision: str = "float32"
    backend: str = backends.DEFAULT_BACKEND

    @property
    def label(self) -> str:
        """``default (3, 128)``, ``default (3, 128, int8)`` or ``default (3, 128, int8, onnx)``."""
        return self.titled(self.checkpoint.rstrip("/").rsplit("/", 1)[-1])

    def titled(self, name: str) -> str:
        """``label`` with ``name`` (e.g. the checkpoint's display name) for the checkpoint."""
        prec = "" if self.precision == "float32" else f", {self.precision}"
        on = "" if self.backend == backends.DEFAULT_BACKEND else f", {self.backend}"
        return f"{name} ({self.layer}, {self.dim}{prec}{on})"


@dataclass(frozen=True)
class DemoCorpus:
    """Documents to search, with the dataset's judged queries and qrels when it is a dataset."""

    name: str
    ids: list[str]
    texts: list[str]
    fingerprint: str
    cacheable: bool  # True: a dataset corpus (on-disk embedding cache); False: pasted, memory only
    query_ids: list[str] = field(default_factory=list)
    query_texts: list[str] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    def query_id_for(self, text: str) -> str | None:
        """The id of the dataset query with exactly this text (after stripping), else None."""
        wanted = text.strip()
        return next(
            (qid for qid, q in zip(self.query_ids, self.query_texts, strict=True) if q.strip() == wanted),
            None,
        )


def corpus_from_dataset(spec: datasets.DatasetSpec) -> DemoCorpus:
    """A retrieval dataset as a demo corpus (its judged queries offered as examples)."""
    if spec.kind != datasets.RETRIEVAL:
        raise DemoError(
            f"dataset {spec.name!r} is an STS pair set; the search demo needs a retrieval dataset"
        )
    data = datasets.load_dataset(spec)
    if not isinstance(data, datasets.RetrievalData):  # pragma: no cover - guarded by spec.kind
        raise DemoError(f"dataset {spec.name!r} did not load as a retrieval dataset")
    return DemoCorpus(
        name=spec.name,
        ids=list(data.corpus_ids),
        texts=list(data.corpus_texts),
        fingerprint=submodels.texts_fingerprint(data.corpus_texts),
        cacheable=True,
        query_ids=list(data.judged_query_ids),
        query_texts=list(data.judged_query_texts),
        qrels={q: dict(d) for q, d in data.qrels.items()},
    )


def corpus_from_text(text: str, name: str = "pasted documents") -> DemoCorpus:
    """Pasted documents, one per non-blank line; ids are ``line N`` (1-based line numbers).

    >>> corpus_from_text("first doc\\n\\nsecond doc").ids
    ['line 1', 'line 3']
    """
    if len(text) > MAX_PASTED_CHARS:
        raise DemoError(
            f"pasted text has {len(text):,} characters; the demo takes at most {MAX_PASTED_CHARS:,}"
        )
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DemoError("no documents: paste at least one non-empty line")
    if len(lines) > MAX_PASTED_DOCS:
        raise DemoError(f"{len(lines):,} pasted documents; the demo takes at most {MAX_PASTED_DOCS:,} lines")
    texts = [line for _, line in lines]
    return DemoCorpus(
        name=name,
        ids=[f"line {i}" for i, _ in lines],
        texts=texts,
        fingerprint=submodels.texts_fingerprint(texts),
        cacheable=False,
    )


# ------------------------------------------------------------------------------------ bounded caches


# Derived data of the Demo (the truncated query encoders live in ``checkpoints.MODELS``).
_indexes: LRUCache[retrieval.CorpusIndex] = LRUCache(INDEXES_KEPT)
_pasted: LRUCache[submodels.PooledTexts] = LRUCache(PASTED_CORPORA_KEPT)


def clear_caches() -> None:
    """Forget loaded and truncated models, indexes and pasted-corpus embeddings (tests, memory pressure)."""
    for cache in (checkpoints.MODELS, _indexes, _pasted):
        cache.clear()


def _prompt(info: checkpoints.CheckpointInfo, names: Sequence[str]) -> str | None:
    return next((info.prompts[n] for n in names if info.prompts.get(n)), None)


def query_encoder(loaded: LoadedCheckpoint, layers: int) -> SentenceTransformer:
    """The model that encodes a query for a ``layers``-deep sub-model: the checkpoint itself at full
    depth, else a cached truly truncated copy (warmed up once, so the first timed query is not cold)."""
    if layers == loaded.info.num_layers:
        return loaded.model

    def build() -> SentenceTransformer:
        copy = submodels.truncated_copy(loaded.model, layers)
        copy.eval()
        copy.encode(["warm up"], convert_to_numpy=True, show_progress_bar=False)
        return copy

    encoder: SentenceTransformer = checkpoints.MODELS.get_or_build((loaded.info.fingerprint, layers), build)
    return encoder


def validate_model(model: DemoModel) -> None:
    """Refuse a sub-model outside its checkpoint (layer 1..L, dim 1..width, a known precision)."""
    try:
        loaded = checkpoints.load(model.checkpoint)
    except checkpoints.CheckpointError as exc:
        raise DemoError(str(exc)) from None
    _check_model(model, loaded)


def _check_model(model: DemoModel, loaded: LoadedCheckpoint) -> None:
    sub = submodels.SubModel(model.layer, model.dim, model.precision)
    try:
        submodels.validate_submodel(
            sub, loaded.info.num_layers, loaded.info.embedding_dim, allow_layer_zero=False
        )
        backends.check_backend(model.backend)
    except (submodels.SubModelError, backends.BackendError) as exc:
        raise DemoError(f"{model.checkpoint}: {exc}") from None


def deployed_encoder(
    loaded: LoadedCheckpoint, layers: int, backend: str
) -> Callable[[str, str | None], object]:
    """``encode(text, prompt)`` by the ``layers``-deep sub-model as it ships on a non-torch ``backend``:
    a truly truncated copy run as ``core.cost`` measures it (its own ONNX graph for the ONNX backends),
    kept per (checkpoint, layers, backend) and warmed up once. The Demo times it; its answers come from
    the evaluation's all-layer pass (:func:`search`)."""
    import torch  # heavy: imported on first use

    def build() -> Callable[[str, str | None], object]:
        truncated = cost_encoding.truncated_sharing_weights(loaded.model, layers).eval()
        run, _ = cost_encoding.encode_fn(truncated, loaded.info.fingerprint, backend)

        def encode(text: str, prompt: str | None) -> object:
            features = truncated.preprocess([text], prompt=prompt) if prompt else truncated.preprocess([text])
            with torch.inference_mode():
                return run(features)

        encode("warm up", None)
        return encode

    try:
        encoder: Callable[[str, str | None], object] = checkpoints.MODELS.get_or_build(
            (loaded.info.fingerprint, layers, backend), build
        )
    except (backends.BackendError, cost_encoding.CostError) as exc:
        raise DemoError(str(exc)) from None
    return encoder


def corpus_matrix(
    loaded: LoadedCheckpoint,
    corpus: DemoCorpus,
    layer: int,
    cache: submodels.EmbeddingCache | None = None,
    progress: submodels.ProgressFn | None = None,
    backend: str = backends.DEFAULT_BACKEND,
) -> np.ndarray:
    """Pooled full-width corpus embeddings at ``layer`` on ``backend``, (n_docs, width), in corpus order.

    A dataset corpus reads (or fills) the on-disk cache, the grid evaluation's entries of that backend;
    pasted documents are encoded once per process (all layers in one pass) and kept in memory only.
    """
    prompt = _prompt(loaded.info, DOCUMENT_PROMPT_NAMES)
    if corpus.cacheable:
        pooled = submodels.pooled_embeddings(
            loaded,
            corpus.texts,
            [layer],
            cache if cache is not None else submodels.EmbeddingCache(),
            prompt,
            progress=progress,
            backend=backend,
        )
        return pooled.matrix(layer)
    all_layers = list(range(loaded.info.num_layers + 1))

    def build() -> submodels.PooledTexts:
        return submodels.pooled_embeddings(
            loaded, corpus.texts, all_layers, None, prompt, progress=progress, backend=backend
        )

    pooled = _pasted.get_or_build((loaded.info.fingerprint, corpus.fingerprint, backend), build)
    return pooled.matrix(layer)


def _index(
    loaded: LoadedCheckpoint,
    corpus: DemoCorpus,
    model: DemoModel,
    cache: submodels.EmbeddingCache | None,
    progress: submodels.ProgressFn | None,
) -> retrieval.CorpusIndex:
    key = (
        loaded.info.fingerprint,
        corpus.fingerprint,
        model.layer,
        model.dim,
        model.precision,
        model.backend,
    )

    def build() -> retrieval.CorpusIndex:
        matrix = corpus_matrix(loaded, corpus, model.layer, cache, progress, model.backend)
        emb = submodels.truncate(matrix, model.dim, submodels.normalizes(loaded.info.similarity))  # (n, dim)
        return retrieval.build_index(emb, model.precision)

    return _indexes.get_or_build(key, build)


def _query_encode(
    loaded: LoadedCheckpoint, model: DemoModel, query: str, prompt: str | None
) -> Callable[[], np.ndarray]:
    """What :func:`search` times per run: ``() -> (1, width)`` pooled query embedding.

    torch: the truncated copy's own ``encode``. Other backends: the embedding is the grid evaluation's
    (``pooled_embeddings`` on that backend's all-layer pass, so it equals the evaluated cell's), computed
    once; each timed run encodes the query again by the sub-model as it ships (:func:`deployed_encoder`),
    so the latency is that k-layer sub-model's, not the all-layer pass's.
    """
    if model.backend == backends.DEFAULT_BACKEND:
        encoder = query_encoder(loaded, model.layer)
        return lambda: np.asarray(
            encoder.encode([query], prompt=prompt, convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )
    pooled = submodels.pooled_embeddings(loaded, [query], [model.layer], None, prompt, backend=model.backend)
    answer = pooled.matrix(model.layer)  # (1, width)
    deployed = deployed_encoder(loaded, model.layer, model.backend)

    def encode() -> np.ndarray:
        deployed(query, prompt)
        return answer

    return encode


@dataclass(frozen=True)
class SearchResult:
    """A top-k list with what it cost.

    ``hits`` columns: rank, doc_id, score, text (whole up to ``DOCUMENT_CHARS``), relevance (the qrels grade; 0 = judged
    not relevant or unjudged, NaN when the query has no judgments).
    """

    model: DemoModel
    hits: pd.DataFrame
    encode_ms: float
    search_ms: float
    bytes_per_vector: int
    index_bytes: int
    corpus_size: int
    query_id: str | None
    latency_low_ms: float = float("nan")  # 25th percentile of the timed runs' encode + search
    latency_high_ms: float = float("nan")  # 75th percentile
    timed_runs: int = 1

    @property
    def latency_ms(self) -> float:
        """Query encoding plus search."""
        return self.encode_ms + self.search_ms


def _shown(text: str) -> str:
    """A document for a results table: whitespace collapsed, whole up to ``DOCUMENT_CHARS`` characters.

    >>> _shown("wing  flutter   at  Mach 2"), _shown("x" * 1600)[-24:]
    ('wing flutter at Mach 2', 'xxxxx… (+101 characters)')
    """
    text = " ".join(text.split())
    if len(text) <= DOCUMENT_CHARS:
        return text
    return f"{text[: DOCUMENT_CHARS - 1].rstrip()}… (+{len(text) - DOCUMENT_CHARS + 1} characters)"


def search(
    model: DemoModel,
    corpus: DemoCorpus,
    query: str,
    k: int = TOP_K,
    cache: submodels.EmbeddingCache | None = None,
    query_id: str | None = None,
    progress: submodels.ProgressFn | None = None,
    repeats: int = LATENCY_REPEATS,
    warmup: int = LATENCY_WARMUP,
) -> SearchResult:
    """Top-``k`` documents of ``corpus`` for ``query`` under ``model``, with measured latency.

    ``encode_ms`` times the truncated model encoding the query (prompt, pooling, normalization, cut to
    ``dim``); ``search_ms`` the faiss search at the model's precision; each the median of ``repeats``
    timed runs after ``warmup`` untimed ones (a first query pays for lazy initialisation, a single
    sample is noise); ``latency_low_ms``/``latency_high_ms`` give the middle half (25th..75th
    percentile) of the timed runs' totals. The corpus index is built once
    per (checkpoint, corpus, layer, dim, precision) and kept. ``query_id`` names the dataset query for
    relevance marks (default: the dataset query with exactly this text, if any). ``progress(done,
    total)`` reports corpus encoding when the corpus is not cached yet (once per checkpoint and corpus).
    """
    query = query.strip()
    if not query:
        raise DemoError("type a query first")
    if len(query) > MAX_QUERY_CHARS:
        raise DemoError(
            f"the query has {len(query):,} characters; the demo takes at most {MAX_QUERY_CHARS:,}"
        )
    if not corpus.ids:
        raise DemoError(f"corpus {corpus.name!r} has no documents")
    try:
        loaded = checkpoints.load(model.checkpoint)
    except checkpoints.CheckpointError as exc:
        raise DemoError(str(exc)) from None
    _check_model(model, loaded)
    index = _index(loaded, corpus, model, cache, progress)
    prompt = _prompt(loaded.info, QUERY_PROMPT_NAMES)
    normalize = submodels.normalizes(loaded.info.similarity)
    encode = _query_encode(loaded, model, query, prompt)

    encode_times, search_times = [], []
    for run in range(max(0, warmup) + max(1, repeats)):  # warm-up runs first, then the timed ones
        start = time.perf_counter()
        query_emb = submodels.truncate(encode(), model.dim, normalize)  # (1, dim)
        encoded = time.perf_counter()
        scores, indices = index.search(query_emb, k)
        if run >= max(0, warmup):
            encode_times.append(encoded - start)
            search_times.append(time.perf_counter() - encoded)
    totals = np.add(encode_times, search_times) * 1000.0  # (repeats,) ms

    qid = query_id if query_id is not None else corpus.query_id_for(query)
    grades = corpus.qrels.get(qid, {}) if qid is not None else {}
    rows = []
    for rank, (score, i) in enumerate(zip(scores[0], indices[0], strict=True), start=1):
        doc_id = corpus.ids[int(i)]
        rows.append(
            {
                "rank": rank,
                "doc_id": doc_id,
                "score": float(score),
                "text": _shown(corpus.texts[int(i)]),
                "relevance": float(grades.get(doc_id, 0)) if grades else float("nan"),
            }
        )
    bpv = quantize.bytes_per_vector(model.dim, model.precision)
    return SearchResult(
        model=model,
        hits=pd.DataFrame(rows, columns=["rank", "doc_id", "score", "text", "relevance"]),
        encode_ms=float(np.median(encode_times)) * 1000.0,
        search_ms=float(np.median(search_times)) * 1000.0,
        latency_low_ms=float(np.percentile(totals, 25)),
        latency_high_ms=float(np.percentile(totals, 75)),
        timed_runs=len(totals),
        bytes_per_vector=bpv,
        index_bytes=retrieval.index_bytes(len(corpus.ids), model.dim, model.precision),
        corpus_size=len(corpus.ids),
        query_id=qid,
    )


# ------------------------------------------------------------------------------------ list overlap


def rank_biased_overlap(a: Sequence[str], b: Sequence[str], p: float = RBO_P) -> float:
    """Extrapolated rank-biased overlap of two rankings (Webber, Moffat & Zobel 2010, eq. 32).

    For lists of equal length k: ``X_k/k * p**k + (1-p)/p * sum_{d=1..k} X_d/d * p**d``, where X_d is
    the overlap of the top-d prefixes; 1 for identical lists, 0 for disjoint ones. Lists of unequal
    length are cut to the shorter one.

    >>> rank_biased_overlap(["a", "b"], ["b", "a"], p=0.5)
    0.5
    >>> rank_biased_overlap(["a", "b", "c"], ["a", "b", "c"])
    1.0
    """
    if not 0.0 < p < 1.0:
        raise DemoError(f"rank-biased overlap needs 0 < p < 1, got {p}")
    k = min(len(a), len(b))
    if k == 0:
        return 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0
    total = 0.0
    for d in range(1, k + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p**d
    return float(overlap / k * p**k + (1 - p) / p * total)


@dataclass(frozen=True)
class Overlap:
    """How much two top-k lists agree."""

    shared: int
    jaccard: float
    rbo: float


def list_overlap(a: Sequence[str], b: Sequence[str], p: float = RBO_P) -> Overlap:
    """Shared documents, Jaccard of the two sets, and rank-biased overlap.

    >>> list_overlap(["a", "b", "c"], ["c", "d", "a"])
    Overlap(shared=2, jaccard=0.5, rbo=0.54)
    """
    set_a, set_b = set(a), set(b)
    union = set_a | set_b
    return Overlap(
        shared=len(set_a & set_b),
        jaccard=len(set_a & set_b) / len(union) if union else 1.0,
        rbo=rank_biased_overlap(a, b, p),
    )


@dataclass(frozen=True)
class SideBySide:
    """Two searches of the same query and how their lists overlap."""

    a: SearchResult
    b: SearchResult
    overlap: Overlap


def side_by_side(
    model_a: DemoModel,
    model_b: DemoModel,
    corpus: DemoCorpus,
    query: str,
    k: int = TOP_K,
    cache: submodels.EmbeddingCache | None = None,
    query_id: str | None = None,
    progress: submodels.ProgressFn | None = None,
) -> SideBySide:
    """Search with both sub-models and compare their lists (``progress`` as in :func:`search`)."""
    first = search(model_a, corpus, query, k, cache, query_id, progress)
    second = search(model_b, corpus, query, k, cache, query_id, progress)
    overlap = list_overlap(first.hits["doc_id"].tolist(), second.hits["doc_id"].tolist())
    return SideBySide(first, second, overlap)


# ------------------------------------------------------------------------------------ sentence pair


@dataclass(frozen=True)
class PairGrid:
    """Similarity of one sentence pair at every (layer, dim) cell.

    ``frame`` columns layer, dim, similarity; ``pivot`` layers x dims; ``full`` the (L, D) cell's value.
    """

    frame: pd.DataFrame
    pivot: pd.DataFrame
    full: float
    num_layers: int
    width: int


def pair_grid(
    checkpoint: str,
    sentence1: str,
    sentence2: str,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precision: str = "float32",
    backend: str = backends.DEFAULT_BACKEND,
) -> PairGrid:
    """Similarity of two sentences at every cell, from ONE forward pass (every layer at once).

    Layers default to 1..L, dims to the lab's default grid dims; precision float32, float16 or binary
    (int8 needs calibration over many texts, which one pair cannot give). ``backend`` runs the pass as
    grid evaluation does (``core.backends.runner_for``).
    """
    if not sentence1.strip() or not sentence2.strip():
        raise DemoError("type two sentences")
    if max(len(sentence1), len(sentence2)) > MAX_QUERY_CHARS:
        raise DemoError(f"each sentence may have at most {MAX_QUERY_CHARS:,} characters")
    if precision == "int8":
        raise DemoError("int8 needs calibration ranges from many texts; use float32, float16 or binary here")
    try:
        loaded = checkpoints.load(checkpoint)
        quantize.check_precision(precision)
    except (checkpoints.CheckpointError, quantize.PrecisionError) as exc:
        raise DemoError(str(exc)) from None
    info = loaded.info
    layer_list = sorted(set(layers)) if layers else list(range(1, info.num_layers + 1))
    dim_list = sorted(set(dims)) if dims else views.default_grid_dims(info.num_layers, info.embedding_dim)
    for layer in layer_list:
        for dim in dim_list:
            _check_model(DemoModel(checkpoint, layer, dim, precision, backend), loaded)
    encoded_layers = sorted({*layer_list, info.num_layers})  # the full model's layer rides along
    runner = (
        None
        if backend == backends.DEFAULT_BACKEND
        else backends.runner_for(loaded.model, info.fingerprint, backend)
    )
    texts = [sentence1.strip(), sentence2.strip()]
    pooled = submodels.encode_all_layers(loaded.model, texts, encoded_layers, runner=runner)
    normalize = submodels.normalizes(info.similarity)

    def similarity(layer: int, dim: int) -> float:
        emb = submodels.truncate(pooled[layer], dim, normalize)  # (2, dim)
        return float(quantize.similarity(emb[:1], emb[1:], precision)[0])

    frame = pd.DataFrame(
        [{"layer": k, "dim": d, "similarity": similarity(k, d)} for k in layer_list for d in dim_list],
        columns=["layer", "dim", "similarity"],
    )
    pivot = frame.pivot(index="layer", columns="dim", values="similarity").sort_index().sort_index(axis=1)
    full = similarity(info.num_layers, info.embedding_dim)
    return PairGrid(frame, pivot.astype("float64"), full, info.num_layers, info.embedding_dim)


# ------------------------------------------------------------------------------------ page helpers


def format_model_param(
    ref: str, layer: int, dim: int, precision: str, backend: str = backends.DEFAULT_BACKEND
) -> str:
    """A sub-model as one URL value: ``default:6:384:float32``, with ``:backend`` unless torch (so links
    from before backends stay as they were).

    >>> format_model_param("default", 2, 64, "int8"), format_model_param("default", 2, 64, "int8", "onnx")
    ('default:2:64:int8', 'default:2:64:int8:onnx')
    """
    on = "" if backend == backends.DEFAULT_BACKEND else f":{backend}"
    return f"{ref}:{int(layer)}:{int(dim)}:{precision}{on}"


def parse_model_param(text: str, known_backend: bool = True) -> tuple[str, int, int, str, str]:
    """``ref:layer:dim[:precision[:backend]]`` -> (ref, layer, dim, precision, backend); the ref may
    itself contain ``:``; ``ref:layer:dim:backend`` is read as float32 on that backend.

    A bad value is refused naming the part that is wrong; ``known_backend=False`` returns an unknown
    backend name as it is (the page then names it in a warning and keeps the rest of the sub-model).

    >>> parse_model_param("default:2:64")
    ('default', 2, 64, 'float32', 'torch')
    >>> parse_model_param("default:2:64:onnx-int8")
    ('default', 2, 64, 'float32', 'onnx-int8')
    >>> parse_model_param("default:6:384:float32:tpu")
    Traceback (most recent call last):
    ...
    core.demo.DemoError: sub-model 'default:6:384:float32:tpu': backend 'tpu' is not one of torch, torch-bf16, onnx, onnx-int8
    >>> parse_model_param("default:6:384:float99")
    Traceback (most recent call last):
    ...
    core.demo.DemoError: sub-model 'default:6:384:float99': precision 'float99' is not one of float32, float16, int8, binary
    """
    raw = text.strip()
    backend = backends.DEFAULT_BACKEND
    tail = raw.rsplit(":", 2)
    if len(tail) == 3 and not tail[2].isdigit() and (not tail[1].isdigit() or tail[2] in backends.BACKENDS):
        backend = tail[2]  # after a precision, or right after the dim: a backend (never a number)
        if known_backend and backend not in backends.BACKENDS:
            raise DemoError(
                f"sub-model {text!r}: backend {backend!r} is not one of {', '.join(backends.BACKENDS)}"
            )
        raw = raw.rsplit(":", 1)[0]
    parts = raw.rsplit(":", 3)
    precision = "float32"
    if len(parts) == 4 and not parts[3].isdigit():  # a precision is never a number
        precision = parts[3]
        if precision not in quantize.PRECISIONS:
            raise DemoError(
                f"sub-model {text!r}: precision {precision!r} is not one of {', '.join(quantize.PRECISIONS)}"
            )
        raw = raw.rsplit(":", 1)[0]
    pieces = raw.rsplit(":", 2)
    if len(pieces) != 3 or not pieces[0]:
        raise DemoError(f"sub-model {text!r} is not of the form checkpoint:layer:dim[:precision[:backend]]")
    ref, layer, dim = pieces
    for name, part in (("layer", layer), ("dim", dim)):
        if not part.isdigit():
            raise DemoError(f"sub-model {text!r}: {name} {part!r} is not a whole number")
    return ref, int(layer), int(dim), precision, backend


def hits_table(result: SearchResult) -> pd.DataFrame:
    """A top-k list for display: rank, score, ``relevant`` (``✓ grade``, ``✗`` judged-not-relevant or
    unjudged, empty when the query has no judgments), document text (``(empty document)`` when blank)."""

    def mark(grade: float) -> str:
        if math.isnan(grade):
            return ""
        return f"✓ {int(grade)}" if grade > 0 else "✗"

    hits = result.hits
    return pd.DataFrame(
        {
            "rank": hits["rank"],
            "score": hits["score"],
            "relevant": [mark(float(g)) for g in hits["relevance"]],
            "document": [
                f"[{d}] {datasets.shown_text(str(t))}"
                for d, t in zip(hits["doc_id"], hits["text"], strict=True)
            ],
        }
    )
