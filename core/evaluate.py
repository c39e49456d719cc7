"""Grid evaluation: plan cells, reuse the database and the embedding cache, compute the rest, store.

``score_cells`` is the pure part: given pooled embeddings of a dataset, it yields each cell's metrics
and raw per-item scores (per-pair similarities for STS, per-query metrics for retrieval), so the
significance tests and per-query views never recompute. ``evaluate_grid`` wraps it with storage: one
run row with provenance, results committed cell by cell (a crash loses at most the cell in flight), and
an interrupted run resumed when the same grid is asked for again.

Out of scope: latency/FLOPs (core/cost), training (core/training), drawing (core/figures).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core import checkpoints, datasets, metrics, quantize, registry, retrieval, settings, submodels
from core.submodels import SubModel

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

RETRIEVAL_DEPTH = 100  # ranked list length per query: enough for recall_at_100 and map_at_100
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total); phase: "encode" | "score"


class EvaluationError(ValueError):
    """A grid request that cannot be evaluated (bad knobs, empty dataset, ...); the message says why."""


@dataclass(frozen=True)
class CellScores:
    """One cell's metrics and raw per-item scores (``items[kind] = values`` aligned with ``item_ids``)."""

    sub: SubModel
    metrics: dict[str, float]
    item_ids: list[str]
    items: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class GridReport:
    """What ``evaluate_grid`` did: the run id (None when everything was already stored) and the frame."""

    run_id: int | None
    computed: int
    reused: int
    frame: pd.DataFrame
    checkpoint: checkpoints.CheckpointInfo
    dataset: datasets.DatasetSpec
    dataset_fingerprint: str
    encoded_texts: int = 0  # texts that went through the model in this call (0: all from cache)


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
    for part in cleaned.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.add(int(part))
        except ValueError:
            raise EvaluationError(
                f"{what} must be a comma-separated list of integers or 'all', got {text!r}"
            ) from None
    if not values:
        raise EvaluationError(f"{what} list {text!r} is empty")
    return sorted(values)


def parse_precisions(text: str | Sequence[str] | None) -> list[str]:
    """``"float32,int8"`` -> ["float32", "int8"]; refuses unknown precisions."""
    if text is None:
        return ["float32"]
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not items or items == ["all"]:
        return list(submodels.PRECISIONS) if items else ["float32"]
    unknown = [p for p in items if p not in submodels.PRECISIONS]
    if unknown:
        raise EvaluationError(
            f"unknown precision {unknown[0]!r}; choose from {', '.join(submodels.PRECISIONS)}"
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
            submodels.validate_submodel(cell, info.num_layers, width)
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
) -> dict[str, submodels.PooledTexts]:
    """Pooled matrices of every text the dataset needs: {"pairs"} for STS, {"queries","corpus"} else.

    ``engine="ray"`` first encodes missing texts on Ray into ``cache`` (core/ray_engine), so the
    ``pooled_embeddings`` calls below read the cache with no forward pass.
    """

    def report(done: int, total: int) -> None:
        if progress:
            progress("encode", done, total)

    def pooled(texts: Sequence[str], prompt: str | None) -> submodels.PooledTexts:
        if engine != "ray":
            return submodels.pooled_embeddings(loaded, texts, layers, cache, prompt, progress=report)
        from core import ray_engine

        if cache is None:
            raise EvaluationError("the ray engine writes the embedding cache: give a cache")
        encoded = ray_engine.fill_cache(loaded, texts, cache, prompt, progress=report)
        found = submodels.pooled_embeddings(loaded, texts, layers, cache, prompt)
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


def _dataset_layers(cells: Sequence[SubModel]) -> list[int]:
    return sorted({c.layer for c in cells})


def evaluate_grid(
    checkpoint: str | checkpoints.CheckpointSpec | checkpoints.LoadedCheckpoint,
    dataset: str | datasets.DatasetSpec,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32",),
    session_factory: sessionmaker[Session] | None = None,
    cache: submodels.EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
    recompute: bool = False,
    engine: str = "local",
) -> GridReport:
    """Evaluate (and store) every requested cell that is not stored yet; return all requested cells.

    A second call with the same checkpoint and dataset runs no forward pass: stored cells are read back,
    and missing cells of already-encoded layers come from the embedding cache. ``engine="ray"`` encodes
    missing texts on a Ray cluster (core/ray_engine) into the same cache entries.
    """
    from storage import db, repository

    _check_engine(engine)
    precision_list = parse_precisions(list(precisions))
    loaded = (
        checkpoints.load(checkpoint)
        if not isinstance(checkpoint, checkpoints.LoadedCheckpoint)
        else checkpoint
    )
    info = loaded.info
    spec = dataset if isinstance(dataset, datasets.DatasetSpec) else datasets.resolve_dataset(dataset)
    data = datasets.load_dataset(spec)
    dataset_fp = datasets.dataset_fingerprint(spec)
    cells = plan_cells(info, layers, dims, precision_list)
    main = metrics.MAIN_SCORE[spec.kind]
    factory = session_factory or db.init_db()
    cache = cache if cache is not None else submodels.EmbeddingCache()

    with factory() as s, s.begin():
        if settings.read_only():
            _check_read_only(s, info, dataset_fp, recompute)
        repository.upsert_checkpoint(s, **registry.checkpoint_values(info))
        repository.upsert_dataset(s, **registry.dataset_values(spec))
        repository.mark_interrupted_runs(s)
        done = (
            set() if recompute else repository.done_cells(s, info.fingerprint, dataset_fp, spec.split, main)
        )
    todo = [c for c in cells if (c.layer, c.dim, c.precision) not in done]
    run_id: int | None = None
    encoded = 0
    if todo:
        run_id = _open_run(factory, info, dataset_fp, cells, len(todo))
        try:
            encoded = _compute_and_store(
                factory, run_id, loaded, spec, dataset_fp, data, cells, todo, cache, progress, engine
            )
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            with factory() as s, s.begin():
                repository.finish_run(s, run_id, status, error_text=f"{type(exc).__name__}: {exc}")
            raise
        with factory() as s, s.begin():
            repository.finish_run(s, run_id, "completed")
    elif progress:
        progress("score", len(cells), len(cells))
    with factory() as s:
        frame = repository.results_frame(
            s, checkpoint_fp=info.fingerprint, dataset_fp=dataset_fp, split=spec.split
        )
    wanted = {(c.layer, c.dim, c.precision) for c in cells}
    if not frame.empty:
        keys = list(zip(frame["layer"], frame["dim"], frame["precision"], strict=True))
        frame = frame[[k in wanted for k in keys]].reset_index(drop=True)
    return GridReport(run_id, len(todo), len(cells) - len(todo), frame, info, spec, dataset_fp, encoded)


def _check_read_only(s: Session, info: checkpoints.CheckpointInfo, dataset_fp: str, recompute: bool) -> None:
    """Read-only demo mode still evaluates missing cells, but only of what is already known.

    Allowed: the default checkpoint or a registered one, on a built-in or registered dataset (the new
    rows are derived, reproducible results). Refused: anything that would add a checkpoint or dataset
    (a new path or name), and ``recompute`` (replacing stored results).
    """
    from storage import repository

    if recompute:
        settings.ensure_writable("recomputing stored results")
    if info.kind != "default" and repository.get_checkpoint(s, info.fingerprint) is None:
        settings.ensure_writable(f"evaluating the unregistered checkpoint {info.name!r}")
    builtin = {datasets.dataset_fingerprint(spec) for spec in datasets.builtin_datasets().values()}
    if dataset_fp not in builtin and repository.get_dataset(s, dataset_fp) is None:
        settings.ensure_writable("evaluating an unregistered dataset")


def _open_run(
    factory: sessionmaker[Session],
    info: checkpoints.CheckpointInfo,
    dataset_fp: str,
    cells: Sequence[SubModel],
    n_todo: int,
) -> int:
    """Resume the latest interrupted/failed run of the same grid, or start a new one; return its id."""
    from core import provenance
    from storage import repository

    params = _run_params(cells)
    already = len(cells) - n_todo
    with factory() as s, s.begin():
        previous = repository.find_resumable_run(s, "evaluate", info.fingerprint, dataset_fp, params)
        if previous is not None:
            repository.resume_run(s, previous.id, cells_done=already)
            return previous.id
        record = repository.start_run(
            s,
            kind="evaluate",
            checkpoint_fp=info.fingerprint,
            dataset_fp=dataset_fp,
            params=params,
            cells_total=len(cells),
            provenance=provenance.collect_provenance(info.to_dict(), dataset_fp),
        )
        if already:
            repository.record_progress(s, record.id, already)
        return record.id


def _compute_and_store(
    factory: sessionmaker[Session],
    run_id: int,
    loaded: checkpoints.LoadedCheckpoint,
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    data: datasets.STSData | datasets.RetrievalData,
    cells: Sequence[SubModel],
    todo: Sequence[SubModel],
    cache: submodels.EmbeddingCache,
    progress: ProgressFn | None,
    engine: str = "local",
) -> int:
    """Score and store each cell of ``todo`` in its own transaction; return the number of texts encoded."""
    from storage import repository

    pooled = encode_dataset(loaded, data, _dataset_layers(todo), cache, progress, engine)
    done = len(cells) - len(todo)
    info = loaded.info
    for scored in score_cells(info, data, pooled, todo):
        rows = [
            repository.ResultRow(
                checkpoint_fp=info.fingerprint,
                dataset_fp=dataset_fp,
                split=spec.split,
                layer=scored.sub.layer,
                dim=scored.sub.dim,
                precision=scored.sub.precision,
                metric=name,
                value=float(value),
            )
            for name, value in scored.metrics.items()
        ]
        with factory() as s, s.begin():  # one transaction per cell
            repository.upsert_results(s, run_id, rows)
            for kind, values in scored.items.items():
                repository.put_item_scores(
                    s,
                    run_id=run_id,
                    checkpoint_fp=info.fingerprint,
                    dataset_fp=dataset_fp,
                    split=spec.split,
                    layer=scored.sub.layer,
                    dim=scored.sub.dim,
                    precision=scored.sub.precision,
                    kind=kind,
                    ids=scored.item_ids,
                    values=values,
                )
            done += 1
            repository.record_progress(s, run_id, done)
        if progress:
            progress("score", done, len(cells))
    return sum(p.encoded for p in pooled.values())


def _check_engine(engine: str) -> None:
    """Refuse an unknown engine, or Ray when it is not installed, before anything is stored."""
    from core import ray_engine

    if engine not in ray_engine.ENGINES:
        raise EvaluationError(f"unknown engine {engine!r}; choose from {', '.join(ray_engine.ENGINES)}")
    if engine == "ray" and not ray_engine.ray_available():
        raise EvaluationError(
            f"--engine ray needs the ray package: pip install '{ray_engine.RAY_REQUIREMENT}'"
        )


def _run_params(cells: Sequence[SubModel]) -> dict[str, Any]:
    return {
        "layers": sorted({c.layer for c in cells}),
        "dims": sorted({c.dim for c in cells}),
        "precisions": sorted({c.precision for c in cells}),
    }


def nan_to_none(value: float) -> float | None:
    """JSON-safe metric value: NaN (a constant-score correlation) becomes null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
