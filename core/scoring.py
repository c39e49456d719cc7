"""Scoring a grid of sub-models: plan cells, encode a dataset once per layer, score every cell.

Pure compute (no storage): ``score_cells`` yields each cell's metrics and raw per-item scores (per-pair
similarities for STS, per-query metrics for retrieval), so the significance tests and per-query views
never recompute. Storing them, run by run and cell by cell, is ``core.lab.evaluate``.

Out of scope: latency/FLOPs (core/cost), training (core/training), drawing (core/figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from common.errors import LabError, clip
from core import backends, checkpoints, datasets, metrics, quantize, ray_engine, retrieval, submodels
from core.submodels import SubModel

RETRIEVAL_DEPTH = 100  # ranked list length per query: enough for recall_at_100 and map_at_100
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total); phase: "encode" | "score"


class EvaluationError(LabError):
    """A grid request that cannot be evaluated (bad knobs, empty dataset, ...); the message says why."""


@dataclass(frozen=True)
class CellScores:
    """One cell's metrics and raw per-item scores (``items[kind] = values`` aligned with ``item_ids``)."""

    sub: SubModel
    metrics: dict[str, float]
    item_ids: list[str]
    items: dict[str, np.ndarray] = field(default_factory=dict)


def parse_int_list(text: str | Sequence[int] | None, what: str) -> list[int] | None:
    """``"1,2,6"`` -> [1, 2, 6]; ``"all"``/None/"" -> None (meaning: every value)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return sorted({int(v) for v in text})
    cleaned = text.strip().lower()
    if cleaned in {"", "all"}:
        return None
    values: set[int] = set()
    shown = clip(text)
    for part in cleaned.split(","):
        part = part.strip()
        if not part:
            raise EvaluationError(f"{what} {shown} has an empty item: give comma-separated integers or 'all'")
        try:
            values.add(int(part))
        except ValueError:
            raise EvaluationError(
                f"{what} must be a comma-separated list of integers or 'all', got {shown}"
            ) from None
    return sorted(values)


def parse_precisions(text: str | Sequence[str] | None) -> list[str]:
    """``"float32,int8"`` -> ["float32", "int8"]; refuses unknown precisions."""
    if text is None:
        return ["float32"]
    raw = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    if not raw or (isinstance(text, str) and not text.strip()):
        return ["float32"]
    if any(not p for p in raw):
        raise EvaluationError(
            f"--precision {clip(text if isinstance(text, str) else ','.join(text))} has an empty "
            f"item; choose from {', '.join(submodels.PRECISIONS)} or 'all'"
        )
    items = raw
    if items == ["all"]:
        return list(submodels.PRECISIONS)
    unknown = [p for p in items if p not in submodels.PRECISIONS]
    if unknown:
        raise EvaluationError(
            f"unknown precision {clip(unknown[0])}; choose from {', '.join(submodels.PRECISIONS)}"
        )
    return list(dict.fromkeys(items))


def plan_cells(
    info: checkpoints.CheckpointInfo,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32",),
) -> list[SubModel]:
    """Every (layer, dim, precision) cell asked for, validated against the checkpoint's shape.

    Layers default to 1..L and dims to ``default_grid_dims`` (powers of two plus the diagonal's dims); out-of-range knobs raise before anything
    is computed or stored.
    """
    width = info.embedding_dim
    layer_list = list(layers) if layers else list(range(1, info.num_layers + 1))
    dim_list = list(dims) if dims else submodels.default_grid_dims(info.num_layers, width)
    cells = [SubModel(k, d, p) for p in precisions for k in layer_list for d in dim_list]
    for cell in cells:
        try:
            # Layers count from 1 (the first transformer layer); 0, the embedding output, is no sub-model.
            submodels.validate_submodel(cell, info.num_layers, width, allow_layer_zero=False)
        except submodels.SubModelError as exc:
            raise EvaluationError(f"{info.name}: {exc}") from None
    return sorted(set(cells))


def _prompt(info: checkpoints.CheckpointInfo, *names: str) -> str | None:
    for name in names:
        if info.prompts.get(name):
            return info.prompts[name]
    return None


def encode_dataset(
    loaded: checkpoints.LoadedCheckpoint,
    data: datasets.STSData | datasets.RetrievalData,
    layers: Sequence[int],
    cache: submodels.EmbeddingCache | None,
    progress: ProgressFn | None = None,
    engine: str = "local",
    backend: str = backends.DEFAULT_BACKEND,
) -> dict[str, submodels.PooledTexts]:
    """Pooled matrices of every text the dataset needs: {"pairs"} for STS, {"queries","corpus"} else.

    ``engine="ray"`` first encodes missing texts on Ray into ``cache`` (core/ray_engine), so the
    ``pooled_embeddings`` calls below read the cache with no forward pass. ``backend`` says what runs
    the encoder (core/backends).
    """

    def report(done: int, total: int) -> None:
        if progress:
            progress("encode", done, total)

    def pooled(texts: Sequence[str], prompt: str | None) -> submodels.PooledTexts:
        if engine != "ray":
            return submodels.pooled_embeddings(
                loaded, texts, layers, cache, prompt, progress=report, backend=backend
            )

        if cache is None:
            raise EvaluationError("the ray engine writes the embedding cache: give a cache")
        encoded = ray_engine.fill_cache(loaded, texts, cache, prompt, progress=report, backend=backend)
        found = submodels.pooled_embeddings(loaded, texts, layers, cache, prompt, backend=backend)
        return dataclasses.replace(found, encoded=encoded + found.encoded)

    if isinstance(data, datasets.STSData):
        return {"pairs": pooled([*data.sentences1, *data.sentences2], None)}
    query_prompt = _prompt(loaded.info, "query")
    doc_prompt = _prompt(loaded.info, "document", "passage", "corpus", "doc")
    return {
        "corpus": pooled(data.corpus_texts, doc_prompt),
        "queries": pooled(judged_query_texts(data), query_prompt),
    }


def judged_query_texts(data: datasets.RetrievalData) -> list[str]:
    """Texts of the queries that have judgments, in ``judged_query_ids`` order."""
    text_of = dict(zip(data.query_ids, data.query_texts, strict=True))
    return [text_of[q] for q in data.judged_query_ids]


def score_cells(
    info: checkpoints.CheckpointInfo,
    data: datasets.STSData | datasets.RetrievalData,
    pooled: dict[str, submodels.PooledTexts],
    cells: Sequence[SubModel],
) -> Iterator[CellScores]:
    """Metrics and per-item scores of each cell from pooled matrices (no model needed)."""
    normalize = submodels.normalizes(info.similarity)
    if isinstance(data, datasets.STSData):
        n = len(data.sentences1)
        ids = [str(i) for i in range(n)]
        for cell in cells:
            matrix = pooled["pairs"].matrix(cell.layer)  # (2n, width)
            emb = submodels.truncate(matrix, cell.dim, normalize)
            sims = quantize.similarity(emb[:n], emb[n:], cell.precision)  # (n,)
            yield CellScores(
                cell, metrics.sts_correlations(sims, data.scores), ids, {"pair_similarity": sims}
            )
        return
    query_ids = data.judged_query_ids
    for cell in cells:
        corpus = submodels.truncate(pooled["corpus"].matrix(cell.layer), cell.dim, normalize)  # (n_docs, d)
        queries = submodels.truncate(pooled["queries"].matrix(cell.layer), cell.dim, normalize)  # (n_q, d)
        scores, indices = retrieval.search(corpus, queries, RETRIEVAL_DEPTH, precision=cell.precision)
        run = retrieval.run_from_search(query_ids, data.corpus_ids, scores, indices)
        aggregate, per_query = metrics.ranking_metrics(run, data.qrels)
        items = {
            f"query_{name}": np.array(
                [per_query.get(q, {}).get(name, 0.0) for q in query_ids], dtype=np.float64
            )
            for name in metrics.METRICS["retrieval"]
        }
        yield CellScores(cell, aggregate, list(query_ids), items)


def dataset_layers(cells: Sequence[SubModel]) -> list[int]:
    return sorted({c.layer for c in cells})


def check_engine(engine: str) -> None:
    """Refuse an unknown engine, or Ray when it is not installed, before anything is stored."""

    if engine not in ray_engine.ENGINES:
        raise EvaluationError(f"unknown engine {engine!r}; choose from {', '.join(ray_engine.ENGINES)}")
    if engine == "ray" and not ray_engine.ray_available():
        raise EvaluationError(
            f"--engine ray needs the ray package: pip install '{ray_engine.RAY_REQUIREMENT}'"
        )
