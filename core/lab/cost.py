"""Measuring and storing cost: the orchestration of ``core.cost`` (compute) with ``storage``.

:func:`measure_checkpoint_cost` measures what is not stored yet (encoding per layer, search per cell)
inside one run (``core.lab.runs``); :func:`cost_frame` and :func:`cost_columns` read stored costs back
as a frame that joins onto result cells (Curves, the Demo's costs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import backends, checkpoints, datasets, provenance, quantize, submodels
from core.ann import AnnSpec
from core.checkpoints import CheckpointSpec, LoadedCheckpoint
from core.cost import (
    ENCODING_KEYS,
    EXACT,
    CostError,
    Machine,
    ProgressFn,
    current_machine,
    measure_encoding,
    measure_search,
    search_kinds,
    synthetic_features,
)
from core.lab import registry
from core.lab.runs import run_lifecycle
from core.scoring import encode_dataset
from storage import cost_repository, repository


@dataclass(frozen=True)
class CostReport:
    """What :func:`measure_checkpoint_cost` returns: stored rows for the request, and what was reused."""

    checkpoint: Any  # core.checkpoints.CheckpointInfo
    machine: Machine
    encoding: pd.DataFrame  # storage.cost_repository.ENCODING_COLUMNS
    search: pd.DataFrame  # storage.cost_repository.SEARCH_COLUMNS
    measured: int
    reused: int
    run_id: int | None
    dataset_fp: str | None = None


def _check_knobs(
    batch_size: int,
    seq_len: int,
    repeats: int,
    batch_repeats: int,
    warmup: int,
    k: int,
    rescore: int,
    precisions: Sequence[str],
) -> None:
    """Refuse out-of-range measurement knobs before anything is loaded or a run is opened.

    (The model-dependent limit of ``seq_len``, its position embeddings, is checked once it is loaded,
    still before the run opens.)
    """
    if batch_size < 1:
        raise CostError(f"batch size must be >= 1, got {batch_size}")
    if seq_len < 2:
        raise CostError(f"seq_len must be >= 2 (special tokens included), got {seq_len}")
    if repeats < 1 or batch_repeats < 1 or warmup < 0:
        raise CostError(f"repeats ({repeats}) and batch repeats ({batch_repeats}) must be >= 1, warmup >= 0")
    if k < 1:
        raise CostError(f"k must be >= 1, got {k}")
    if rescore < 0:
        raise CostError(f"rescore must be >= 0, got {rescore}")
    for precision in precisions:
        try:
            quantize.check_precision(precision)
        except quantize.PrecisionError as exc:
            raise CostError(str(exc)) from None


def measure_checkpoint_cost(
    checkpoint: str | CheckpointSpec | LoadedCheckpoint,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    seq_len: int = 32,
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    dataset: str | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32", "float16", "int8", "binary"),
    k: int = 10,
    rescore: int = 0,
    ann_specs: Sequence[AnnSpec] = (),
    remeasure: bool = False,
    *,
    session_factory: sessionmaker[Session],
    cache: Any = None,
    progress: ProgressFn | None = None,
    backend: str = backends.DEFAULT_BACKEND,
) -> CostReport:
    """Measure (or reuse stored) encoding cost per layer and, with ``dataset``, search cost per cell.

    Stored rows are keyed by the machine fingerprint of this process (torch's current thread count
    included): a second call on the same machine reuses them unless ``remeasure``. Search is measured on
    the full layer's embeddings of the dataset's corpus and judged queries (retrieval datasets only).
    ``backend`` (core/backends) says what runs each k-layer sub-model; encoding costs are stored per
    backend, with the bytes the sub-model ships (weights or ONNX graph) in their details.
    """
    try:
        backends.check_backend(backend)
    except backends.BackendError as exc:
        raise CostError(str(exc)) from None
    _check_knobs(batch_size, seq_len, repeats, batch_repeats, warmup, k, rescore, precisions)

    factory = session_factory
    loaded: LoadedCheckpoint | None = None
    info: Any  # CheckpointInfo, or the stored CheckpointRecord when nothing needs the model
    if isinstance(checkpoint, checkpoints.LoadedCheckpoint):
        loaded = checkpoint
        info = loaded.info
    else:
        spec_ck = checkpoints.parse_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
        fingerprint = checkpoints.fingerprint_folder(checkpoints.resolve_path(spec_ck))
        with factory() as s:
            info = repository.get_checkpoint(s, fingerprint)
        if info is None:  # not registered yet: load it to learn its shape
            loaded = checkpoints.load(spec_ck)
            info = loaded.info
    wanted_layers = sorted(set(layers)) if layers else list(range(1, info.num_layers + 1))
    for layer in wanted_layers:
        if not 0 <= layer <= info.num_layers:
            raise CostError(f"layer {layer} is outside {info.name}'s layers 0..{info.num_layers}")
    machine = current_machine()
    spec = data = None
    dataset_fp: str | None = None
    if dataset is not None:
        spec = datasets.resolve_dataset(dataset)
        if spec.kind != datasets.RETRIEVAL:
            raise CostError(f"search cost needs a retrieval dataset; {spec.name!r} is {spec.kind}")
        data = datasets.load_dataset(spec)
        dataset_fp = datasets.dataset_fingerprint(spec)
    dim_list = sorted(set(dims)) if dims else submodels.default_dims(info.embedding_dim)
    for d in dim_list:
        if not 1 <= d <= info.embedding_dim:
            raise CostError(f"dim {d} is outside {info.name}'s dims 1..{info.embedding_dim}")

    with factory() as s:
        stored_enc = cost_repository.encoding_costs_frame(
            s, info.fingerprint, machine.fingerprint, batch_size, seq_len, backend
        )
        stored_search = (
            cost_repository.search_costs_frame(s, info.fingerprint, dataset_fp, machine.fingerprint)
            if dataset_fp
            else None
        )
    have_layers = set() if remeasure else set(stored_enc["layer"].astype(int))
    todo_layers = [layer for layer in wanted_layers if layer not in have_layers]
    search_plan: list[tuple[int, str, str]] = []
    if isinstance(data, datasets.RetrievalData):
        n_docs = len(data.corpus_ids)
        kinds = search_kinds(list(precisions), rescore, ann_specs, n_docs)
        search_plan = [(d, p, kind) for d in dim_list for p, kind in kinds]
    have_search: set[tuple[int, str, str]] = set()
    if stored_search is not None and not remeasure:
        have_search = set(
            zip(
                stored_search["dim"].astype(int),
                stored_search["precision"],
                stored_search["index_kind"],
                strict=True,
            )
        )
    todo_search = [c for c in search_plan if c not in have_search]
    measured = len(todo_layers) + len(todo_search)
    run_id: int | None = None
    if measured:
        settings.ensure_writable("measure costs")
        if loaded is None:
            loaded = checkpoints.load(checkpoint)  # type: ignore[arg-type]
            info = loaded.info
        if todo_layers:
            synthetic_features(loaded.model, 1, seq_len)  # seq_len beyond the model: refused before the run
        with factory() as s, s.begin():
            repository.upsert_checkpoint(s, **registry.checkpoint_values(info))
            if spec is not None and dataset_fp is not None:
                repository.upsert_dataset(s, **registry.dataset_values(spec))
            cost_repository.upsert_machine(s, machine.fingerprint, machine.to_dict())
            params = {
                "layers": todo_layers,
                "batch_size": batch_size,
                "seq_len": seq_len,
                "repeats": repeats,
                "batch_repeats": batch_repeats,
                "warmup": warmup,
                "dims": dim_list if todo_search else [],
                "precisions": list(precisions) if todo_search else [],
                "k": k,
                "rescore": rescore,
                "ann": [a.to_dict() for a in ann_specs],
                "machine_fp": machine.fingerprint,
            }
            if backend != backends.DEFAULT_BACKEND:
                params["backend"] = backend
            run_id = repository.start_run(
                s,
                "cost",
                info.fingerprint,
                dataset_fp,
                params,
                measured,
                {**provenance.collect_provenance(info.to_dict(), dataset_fp), "machine": machine.to_dict()},
            ).id
        with run_lifecycle(factory, run_id):
            if todo_layers:
                costs = measure_encoding(
                    loaded.model,
                    todo_layers,
                    batch_size,
                    seq_len,
                    repeats,
                    batch_repeats,
                    warmup,
                    progress,
                    backend=backend,
                    fingerprint=info.fingerprint,
                )
                rows = [
                    {
                        **c.to_dict(),
                        "checkpoint_fp": info.fingerprint,
                        "machine_fp": machine.fingerprint,
                        "details": {
                            "threads": c.threads,
                            "warmup": warmup,
                            "tokenization": "excluded",
                            "latency_ms_min": c.latency_ms_min,
                            "batch_ms_min": c.batch_ms_min,
                            "model_bytes": c.model_bytes,
                        },
                    }
                    for c in costs
                ]
                with factory() as s, s.begin():
                    cost_repository.upsert_encoding_costs(s, rows, run_id)
                    repository.record_progress(s, run_id, len(todo_layers))
            if todo_search and isinstance(data, datasets.RetrievalData) and dataset_fp is not None:
                full = info.num_layers

                def report(phase: str, done: int, total: int) -> None:
                    if progress:
                        progress(phase, done, total)

                pooled = encode_dataset(loaded, data, [full], cache or submodels.EmbeddingCache(), report)
                normalize = submodels.normalizes(info.similarity)
                found = measure_search(
                    pooled["corpus"].matrix(full),
                    pooled["queries"].matrix(full),
                    sorted({d for d, _, _ in todo_search}),
                    sorted({p for _, p, _ in todo_search}, key=list(precisions).index),
                    k=k,
                    rescore=rescore,
                    ann_specs=ann_specs,
                    normalize=normalize,
                    layer=full,
                    skip=set(search_plan) - set(todo_search),
                    progress=progress,
                )
                rows = [
                    {
                        **m.to_dict(),
                        "checkpoint_fp": info.fingerprint,
                        "dataset_fp": dataset_fp,
                        "machine_fp": machine.fingerprint,
                    }
                    for m in found
                ]
                with factory() as s, s.begin():
                    cost_repository.upsert_search_costs(s, rows, run_id)
                    repository.record_progress(s, run_id, measured)
    with factory() as s:
        enc = cost_repository.encoding_costs_frame(
            s, info.fingerprint, machine.fingerprint, batch_size, seq_len, backend
        )
        enc = enc[enc["layer"].isin(wanted_layers)].reset_index(drop=True)
        search = cost_repository.search_costs_frame(s, info.fingerprint, dataset_fp, machine.fingerprint)
        if dataset_fp is None:
            search = search.iloc[0:0]
        else:
            planned = set(search_plan)
            keys = zip(search["dim"].astype(int), search["precision"], search["index_kind"], strict=True)
            search = search[[key in planned for key in keys]].reset_index(drop=True)
    total = len(wanted_layers) + len(search_plan)
    return CostReport(info, machine, enc, search, measured, total - measured, run_id, dataset_fp)


# ---------------------------------------------------------------- cost frame for curves


COST_FRAME_KEYS: tuple[str, ...] = ("checkpoint_fp", "layer", "dim", "precision")
MEASURED_COLUMNS: tuple[str, ...] = (
    "latency_ms_p50",
    "latency_ms_p95",
    "throughput_per_s",
    "flops_per_token",
    "params",
    "index_bytes",
    "search_ms_per_query",
)
COST_FRAME_COLUMNS: tuple[str, ...] = (
    *COST_FRAME_KEYS,
    *MEASURED_COLUMNS,
    "bytes_per_vector",
    "search_ms_p50",
    "recall_vs_float32",
    "n_docs",
    "cost_dataset_fp",
    "machine_fp",
    "machine",
    "batch_size",
    "seq_len",
)


def _choose_config(enc: pd.DataFrame) -> tuple[str, int, int] | None:
    """The (machine, batch size, seq len) covering the most checkpoints; ties to the newest measurement."""
    if enc.empty:
        return None
    groups = enc.groupby(["machine_fp", "batch_size", "seq_len"])
    ranked = sorted(
        ((g["checkpoint_fp"].nunique(), g["measured_at"].max(), key) for key, g in groups),
        key=lambda t: (-t[0], -t[1].timestamp(), t[2]),
    )
    machine_fp, batch_size, seq_len = ranked[0][2]
    return str(machine_fp), int(batch_size), int(seq_len)


def cost_frame(
    session: Session,
    checkpoint_fp: str | Iterable[str] | None = None,
    dataset_fp: str | None = None,
    machine_fp: str | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dims: Sequence[int] | None = None,
    index_kind: str = EXACT,
    backend: str = backends.DEFAULT_BACKEND,
) -> pd.DataFrame:
    """Stored costs, one row per (checkpoint_fp, layer, dim, precision), for joining onto result cells.

    Per checkpoint with any stored cost: layers 1..L (and 0 when measured) x dims (``dims``, default
    every dim 1..width, so any evaluated cell joins) x every precision (columns
    :data:`COST_FRAME_COLUMNS`). Never mixes machines: encoding columns all come from one (machine,
    batch size, seq len) - the given one, else the one covering most of the checkpoints (newest on a
    tie); a checkpoint not measured there gets NaN. Search columns come from ``index_kind`` rows on that
    machine for ``dataset_fp`` (default: each checkpoint's most recently measured dataset);
    ``index_bytes`` is ``n_docs * bytes_per_vector`` for every cell once the corpus size is known.
    Encoding columns are those measured on ``backend`` (core/backends).
    """

    fps = (
        [checkpoint_fp]
        if isinstance(checkpoint_fp, str)
        else (list(checkpoint_fp) if checkpoint_fp else None)
    )
    enc = cost_repository.encoding_costs_frame(session, fps, machine_fp, batch_size, seq_len, backend)
    config = _choose_config(enc)
    search_all = cost_repository.search_costs_frame(session, fps, dataset_fp, None, index_kind)
    chosen_machine = config[0] if config else machine_fp
    if config is not None:
        enc = enc[
            (enc["machine_fp"] == config[0])
            & (enc["batch_size"] == config[1])
            & (enc["seq_len"] == config[2])
        ]
    measured_fps = sorted(set(enc["checkpoint_fp"]) | set(search_all["checkpoint_fp"]))
    records = {
        r.fingerprint: r for r in repository.list_checkpoints(session) if r.fingerprint in measured_fps
    }
    frames = []
    for fp in measured_fps:
        record = records.get(fp)
        if record is None:
            continue
        enc_fp = enc[enc["checkpoint_fp"] == fp]
        layer_list = sorted(set(range(1, record.num_layers + 1)) | set(enc_fp["layer"].astype(int)))
        dim_list = list(dims) if dims else list(range(1, record.embedding_dim + 1))
        grid = pd.DataFrame(
            list(itertools.product([fp], layer_list, dim_list, quantize.PRECISIONS)),
            columns=list(COST_FRAME_KEYS),
        )
        enc_cols = [
            *ENCODING_KEYS,
            "machine_fp",
            "machine",
            "batch_size",
            "seq_len",
        ]
        grid = grid.merge(enc_fp[enc_cols], on="layer", how="left")
        search_fp = search_all[search_all["checkpoint_fp"] == fp]
        if chosen_machine is not None and (search_fp["machine_fp"] == chosen_machine).any():
            search_fp = search_fp[search_fp["machine_fp"] == chosen_machine]
        if not search_fp.empty:
            newest = search_fp.sort_values("measured_at").iloc[-1]
            ds = dataset_fp or str(newest["dataset_fp"])
            search_fp = search_fp[search_fp["dataset_fp"] == ds]
            if search_fp["machine_fp"].nunique() > 1:  # no chosen machine: take the newest one's rows
                search_fp = search_fp[search_fp["machine_fp"] == newest["machine_fp"]]
            cols = ["dim", "precision", "search_ms_per_query", "search_ms_p50", "recall_vs_float32"]
            grid = grid.merge(search_fp[cols], on=["dim", "precision"], how="left")
            grid["n_docs"] = int(search_fp["n_docs"].max())
            grid["cost_dataset_fp"] = ds
        frames.append(grid)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COST_FRAME_COLUMNS})
    frame = pd.concat(frames, ignore_index=True).reindex(columns=list(COST_FRAME_COLUMNS))
    frame["bytes_per_vector"] = [
        quantize.bytes_per_vector(int(d), str(p))
        for d, p in zip(frame["dim"], frame["precision"], strict=True)
    ]
    frame["index_bytes"] = frame["n_docs"] * frame["bytes_per_vector"]
    for name in ("layer", "dim", "bytes_per_vector"):
        frame[name] = frame[name].astype("int64")
    return frame


def cost_columns(session: Session, checkpoint_fps: Iterable[str] | None = None) -> list[str]:
    """The measured cost columns (:data:`MEASURED_COLUMNS`) with a stored value for any of the checkpoints."""

    fps = list(checkpoint_fps) if checkpoint_fps is not None else None
    columns: list[str] = []
    if not cost_repository.encoding_costs_frame(session, fps).empty:
        columns += ["latency_ms_p50", "latency_ms_p95", "throughput_per_s", "flops_per_token", "params"]
    if not cost_repository.search_costs_frame(session, fps, index_kind=EXACT).empty:
        columns += ["index_bytes", "search_ms_per_query"]
    return [c for c in MEASURED_COLUMNS if c in columns]
