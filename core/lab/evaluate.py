"""Evaluating a grid and storing it: one run row with provenance, results committed cell by cell.

A crash loses at most the cell in flight, and an interrupted run is resumed when the same grid is asked
for again. The scoring itself is ``core.scoring`` (pure compute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import backends, checkpoints, datasets, metrics, provenance, submodels
from core.lab import registry
from core.lab.runs import run_lifecycle
from core.scoring import (
    ProgressFn,
    check_engine,
    dataset_layers,
    encode_dataset,
    parse_precisions,
    plan_cells,
    score_cells,
)
from core.submodels import SubModel
from storage import repository


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


def evaluate_grid(
    checkpoint: str | checkpoints.CheckpointSpec | checkpoints.LoadedCheckpoint,
    dataset: str | datasets.DatasetSpec,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32",),
    *,
    session_factory: sessionmaker[Session],
    cache: submodels.EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
    recompute: bool = False,
    engine: str = "local",
    backend: str = backends.DEFAULT_BACKEND,
) -> GridReport:
    """Evaluate (and store) every requested cell that is not stored yet; return all requested cells.

    A second call with the same checkpoint and dataset runs no forward pass: stored cells are read back,
    and missing cells of already-encoded layers come from the embedding cache. ``engine="ray"`` encodes
    missing texts on a Ray cluster (core/ray_engine) into the same cache entries. ``backend`` says
    what runs the encoder (core/backends); it is part of every stored cell's key.
    """

    check_engine(engine)
    backends.check_backend(backend)
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
    factory = session_factory
    cache = cache if cache is not None else submodels.EmbeddingCache()

    with factory() as s, s.begin():
        # A dataset is its content: a copy under another name (or an STS file whose stem differs) is
        # the dataset already stored, under the split it was first registered with.
        known = repository.get_dataset(s, dataset_fp)
        split = known.split if known is not None and known.fingerprint == dataset_fp else spec.split
        done = (
            set()
            if recompute
            else repository.done_cells(s, info.fingerprint, dataset_fp, split, main, backend)
        )
        todo = [c for c in cells if (c.layer, c.dim, c.precision) not in done]
        if settings.read_only():
            _check_read_only(s, info, dataset_fp, recompute, len(todo))
        repository.upsert_checkpoint(s, **registry.checkpoint_values(info))
        repository.upsert_dataset(s, **registry.dataset_values(spec))
        repository.mark_interrupted_runs(s)
    run_id: int | None = None
    encoded = 0
    if todo:
        run_id = _open_run(factory, info, dataset_fp, cells, len(todo), backend)
        with run_lifecycle(factory, run_id):
            encoded = _compute_and_store(
                factory, run_id, loaded, dataclasses.replace(spec, split=split), dataset_fp, data, cells, todo,
                cache, progress, engine, backend,
            )  # fmt: skip
    elif progress:
        progress("score", len(cells), len(cells))
    with factory() as s:
        frame = repository.results_frame(
            s, checkpoint_fp=info.fingerprint, dataset_fp=dataset_fp, split=split, backend=backend
        )
    wanted = {(c.layer, c.dim, c.precision) for c in cells}
    if not frame.empty:
        keys = list(zip(frame["layer"], frame["dim"], frame["precision"], strict=True))
        frame = frame[[k in wanted for k in keys]].reset_index(drop=True)
    return GridReport(run_id, len(todo), len(cells) - len(todo), frame, info, spec, dataset_fp, encoded)


def _check_read_only(
    s: Session, info: checkpoints.CheckpointInfo, dataset_fp: str, recompute: bool, n_todo: int
) -> None:
    """Read-only demo mode serves stored results only: visitors never start an evaluation.

    Refused: any cell not stored yet (a multi-minute CPU job a public visitor could start), ``recompute``
    (replacing stored results), and anything that would add a checkpoint or dataset. A grid whose cells
    are all stored is read back as usual.
    """

    if recompute:
        settings.ensure_writable("recomputing stored results")
    if info.kind != "default" and repository.get_checkpoint(s, info.fingerprint) is None:
        settings.ensure_writable(f"evaluating the unregistered checkpoint {info.name!r}")
    builtin = {datasets.dataset_fingerprint(spec) for spec in datasets.builtin_datasets().values()}
    if dataset_fp not in builtin and repository.get_dataset(s, dataset_fp) is None:
        settings.ensure_writable("evaluating an unregistered dataset")
    if n_todo:
        settings.ensure_writable(f"evaluating {n_todo} cells that are not stored yet")


def _open_run(
    factory: sessionmaker[Session],
    info: checkpoints.CheckpointInfo,
    dataset_fp: str,
    cells: Sequence[SubModel],
    n_todo: int,
    backend: str = backends.DEFAULT_BACKEND,
) -> int:
    """Resume the latest interrupted/failed run of the same grid, or start a new one; return its id."""

    params = _run_params(cells, backend)
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
    backend: str = backends.DEFAULT_BACKEND,
) -> int:
    """Score and store each cell of ``todo`` in its own transaction; return the number of texts encoded."""

    pooled = encode_dataset(loaded, data, dataset_layers(todo), cache, progress, engine, backend)
    done = len(cells) - len(todo)
    info = loaded.info
    for scored in score_cells(info, data, pooled, todo):
        cell: dict[str, Any] = {
            "checkpoint_fp": info.fingerprint,
            "dataset_fp": dataset_fp,
            "split": spec.split,
            "layer": scored.sub.layer,
            "dim": scored.sub.dim,
            "precision": scored.sub.precision,
        }
        rows = [
            repository.ResultRow(**cell, metric=name, value=float(value), backend=backend)
            for name, value in scored.metrics.items()
        ]
        with factory() as s, s.begin():  # one transaction per cell
            repository.upsert_results(s, run_id, rows)
            for kind, values in scored.items.items():
                repository.put_item_scores(
                    s,
                    run_id=run_id,
                    **cell,
                    kind=kind,
                    ids=scored.item_ids,
                    values=values,
                    backend=backend,
                )
            done += 1
            repository.record_progress(s, run_id, done)
        if progress:
            progress("score", done, len(cells))
    return sum(p.encoded for p in pooled.values())


def _run_params(cells: Sequence[SubModel], backend: str = backends.DEFAULT_BACKEND) -> dict[str, Any]:
    params: dict[str, Any] = {
        "layers": sorted({c.layer for c in cells}),
        "dims": sorted({c.dim for c in cells}),
        "precisions": sorted({c.precision for c in cells}),
    }
    if backend != backends.DEFAULT_BACKEND:  # torch runs keep their params, so old runs still resume
        params["backend"] = backend
    return params
