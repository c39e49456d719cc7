"""Reference models from MTEB: import published result folders into the database, list them, export the lab's.

Scope: orchestration over ``core.mteb`` (parsing, the metadata rule, the format) and
``storage.reference_repository`` (tables). The CLI (``import-mteb``, ``references``,
``results --format mteb``) and the pages (Curves, Compare, Home) call these functions.

- :func:`import_results`: every ``<model>/<revision>/<Task>.json`` of a folder; a file whose path, size
  and mtime are the stored ones is not read at all, one whose sha256 is stored already is not parsed
  again (re-importing changes no score), a malformed file is reported by
  path and skipped while the rest imports; written in batches, each its own transaction, so an
  interrupted import keeps what it wrote and the next run completes it.
- :func:`ensure_shipped`: the copy shipped in ``data/reference/mteb-results`` is imported on first use,
  so a fresh install shows reference models without any download.
- :func:`references` / :func:`meta_conflicts`: stored scores with each model's resolved ``embed_dim`` and
  ``n_parameters`` and the lab dataset of each task; the disagreements behind those figures.
- :func:`export_results`: the lab's stored results as MTEB model folders, one per sub-model.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import checkpoints, cost, mteb
from core.datasets import REPO_ROOT
from storage import cost_repository, reference_repository, repository

SHIPPED_DIR = REPO_ROOT / "data" / "reference" / "mteb-results"
SHIPPED_ROOT = "data/reference/mteb-results/results"  # the shipped folder's name in provenance and the log
BATCH_FILES = 2000  # task files written per transaction
PARALLEL_FILES = 4000  # files to read from which worker processes read them
# Reader processes: 4 per core, at most 8. Reading files the page cache does not hold waits on the disk,
# and more readers than cores overlap those waits: the whole public results repository from a cold cache
# took 26.5-34.2 s with 2 readers, 24.3 s with 4, 15.4-21.7 s with 8, 19.5 s with 16 (2 cores); from a
# warm cache 2, 4 and 8 readers are alike (10.2-12.7 s).
READERS_PER_CORE = 4
MAX_WORKERS = 8
EXPORTED_DATASETS = frozenset(t.dataset for t in mteb.TASKS.values() if t.export and t.dataset)
Progress = Callable[[int, int], None]
Factory = sessionmaker[Session]


class _Read(NamedTuple):
    """What reading one file gives the importing process: the outcome (a task file's without its rows)
    and a task file's scores as stored (``reference_repository.pack_scores``), packed where it was read."""

    outcome: mteb.ReadOutcome
    scores: str = ""
    n_scores: int = 0


def _read(job: mteb.ReadJob) -> _Read:
    outcome = mteb.read_file(job)
    content = outcome.content
    if not isinstance(content, mteb.ScoreColumns):
        return _Read(outcome)
    scores, count = reference_repository.pack_scores(
        (content.split, content.subset, content.metric, content.value)
    )
    return _Read(outcome._replace(content=content.without_rows()), scores, count)


@contextmanager
def _reader(count: int) -> Iterator[Callable[[Sequence[mteb.ReadJob]], Iterator[_Read]]]:
    """``read(jobs)`` -> what reading them gave, in order. A large import from a single-threaded process
    (the CLI) reads, hashes, parses and packs in forked worker processes (:data:`READERS_PER_CORE`) beside this
    process's database writes; otherwise (a small import, or threads around, as in the app, where
    forking is unsafe) here."""
    workers = min(READERS_PER_CORE * (os.cpu_count() or 1), MAX_WORKERS)
    if count < PARALLEL_FILES or threading.active_count() > 1 or os.name != "posix":
        yield lambda jobs: map(_read, jobs)
        return
    # fork: workers start at once with core.mteb loaded; they only read files (no database use). Each
    # freezes what it inherited (gc.freeze), so its garbage collections never walk the parent's heap
    # (the CLI's holds torch and pandas: walking it cost the workers seconds of CPU and copy-on-write).
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=gc.freeze) as pool:
        yield lambda jobs: pool.map(_read, jobs, chunksize=64)


@dataclass(frozen=True)
class FileError:
    """A file that could not be imported, and why."""

    path: str
    message: str


@dataclass(frozen=True)
class ImportReport:
    """What one import read and wrote."""

    root: str
    files_seen: int
    files_changed: int  # task and meta files whose content (sha256) was new
    files_unchanged: int
    errors: tuple[FileError, ...]
    models: int
    scores_written: int
    wall_time_s: float
    conflicts: tuple[mteb.MetaConflict, ...] = field(default_factory=tuple)


def display_path(path: Path) -> str:
    """A folder's path as provenance: relative to the repository when inside it, else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def import_results(
    factory: Factory,
    path: str | Path,
    models: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
    keep_stored: bool = False,
) -> ImportReport:
    """Import an MTEB results folder (the repository's layout); see the module doc for the guarantees.

    ``keep_stored``: a task file whose (model, revision, task) is stored already is left as stored even
    when its content differs (the shipped copy must not overwrite a newer import of the same model).
    """
    started = time.perf_counter()
    files = mteb.find_result_files(Path(path), models)
    root_path = mteb.results_root(Path(path))
    root = display_path(root_path)
    with factory() as s, s.begin():
        ids = reference_repository.ensure_models(s, {(f.model, f.revision) for f in files})
        stored = reference_repository.stored_results(s)
        meta_sha = {m.id: m.meta_sha256 for m in reference_repository.list_models(s) if m.meta_sha256}
    errors: list[FileError] = []
    changed = unchanged = written = 0
    pending: list[dict[str, Any]] = []
    metas: list[tuple[int, dict[str, Any]]] = []
    stats: list[tuple[int, int, int]] = []  # (result id, size, mtime_ns) of files read again, unchanged

    def flush() -> None:
        nonlocal written
        if not (pending or metas or stats):
            return
        with factory() as s, s.begin():
            written += reference_repository.replace_results(s, pending)
            for model_id, meta in metas:
                reference_repository.set_model_meta(s, model_id, meta)
            reference_repository.set_file_stats(s, stats)
        pending.clear()
        metas.clear()
        stats.clear()

    todo = []  # (file, model_id, label, known, size, mtime_ns) of every file to read
    for file in files:
        model_id = ids[(file.model, file.revision)]
        label = "/".join((root, *file.location.rsplit(os.sep, 3)[-3:]))  # <model>/<revision>/<file>
        size = file.size if file.size >= 0 else None
        mtime_ns = file.mtime_ns if file.mtime_ns >= 0 else None
        known = None if file.is_meta else stored.get((model_id, file.task))
        if file.is_meta and keep_stored and model_id in meta_sha:
            continue
        if known is not None and (keep_stored or (
            size is not None and (known.source_path, known.file_size, known.file_mtime_ns) == (label, size, mtime_ns)
        )):  # fmt: skip
            unchanged += 1  # kept as stored, or the same path, size and mtime: not read at all
            continue
        todo.append((file, model_id, label, known, size, mtime_ns))
    jobs = [
        mteb.ReadJob(file.location, file.task, label,
                     meta_sha.get(model_id) if file.is_meta else None if known is None else known.sha256, file.size)
        for file, model_id, label, known, _, _ in todo
    ]  # fmt: skip
    with _reader(len(jobs)) as read:
        for done, ((file, model_id, label, known, size, mtime_ns), got) in enumerate(
            zip(todo, read(jobs), strict=True), start=1
        ):
            outcome = got.outcome
            if outcome.error is not None:
                errors.append(FileError(label, outcome.error.removeprefix(f"{label}: ")))
            elif isinstance(outcome.content, mteb.ModelMeta):
                meta = outcome.content
                metas.append((model_id, {
                    "embed_dim": meta.embed_dim, "n_parameters": meta.n_parameters,
                    "max_tokens": meta.max_tokens, "similarity": meta.similarity_fn_name,
                    "meta_path": label, "meta_sha256": outcome.sha256,
                }))  # fmt: skip
            elif isinstance(outcome.content, mteb.ScoreColumns):
                parsed = outcome.content
                changed += 1
                pending.append({
                    "model_id": model_id, "task": file.task, "source_path": label, "sha256": outcome.sha256,
                    "mteb_version": parsed.mteb_version, "dataset_revision": parsed.dataset_revision,
                    "file_size": size, "file_mtime_ns": mtime_ns, "scores": got.scores, "n_scores": got.n_scores,
                })  # fmt: skip
            elif known is not None:
                unchanged += 1  # same sha256 as stored (provenance stays the first path it came from)
                if known.source_path == label and size is not None:
                    stats.append((known.id, size, mtime_ns or 0))  # next time: skipped without reading
            if len(pending) >= BATCH_FILES or len(stats) >= 10 * BATCH_FILES:
                flush()
            if progress is not None and done % 500 == 0:
                progress(len(files) - len(todo) + done, len(files))  # files skipped unread count as done
    flush()
    if progress is not None:
        progress(len(files), len(files))
    wall = time.perf_counter() - started
    imported_models = sorted({f.model for f in files})
    with factory() as s, s.begin():
        reference_repository.log_import(
            s, root=root, files_seen=len(files), files_changed=changed, files_failed=len(errors),
            scores_written=written, wall_time_s=wall,
            errors=[{"path": e.path, "message": e.message} for e in errors],
        )  # fmt: skip
        conflicts = _conflicts(s, imported_models)
    return ImportReport(
        root=root,
        files_seen=len(files),
        files_changed=changed,
        files_unchanged=unchanged,
        errors=tuple(errors),
        models=len(imported_models),
        scores_written=written,
        wall_time_s=wall,
        conflicts=tuple(conflicts),
    )


def ensure_shipped(factory: Factory) -> ImportReport | None:
    """Import the shipped folder once per database (a logged import of it exists -> nothing to do).

    Stored models are kept as stored (``keep_stored``): the shipped copy never overwrites a newer import
    of the same model. Nothing is written in read-only demo mode.
    """
    if settings.read_only():
        return None
    with factory() as s:
        if reference_repository.imports(s, SHIPPED_ROOT) or not SHIPPED_DIR.is_dir():
            return None
    return import_results(factory, SHIPPED_DIR, keep_stored=True)


# ---------------------------------------------------------------------------------------- reading


def _metas_by_model(
    s: Session, models: Sequence[str] | None = None
) -> dict[str, dict[str, mteb.ModelMeta | None]]:
    by_model: dict[str, dict[str, mteb.ModelMeta | None]] = defaultdict(dict)
    wanted = set(models) if models else None
    for record in reference_repository.list_models(s):
        if wanted is not None and record.name not in wanted:
            continue
        meta = None
        if record.meta_sha256 is not None:
            meta = mteb.ModelMeta(record.name, record.revision, record.embed_dim, record.n_parameters,
                                  record.max_tokens, record.similarity)  # fmt: skip
        by_model[record.name][record.revision] = meta
    return by_model


def _conflicts(s: Session, models: Sequence[str] | None = None) -> list[mteb.MetaConflict]:
    found: list[mteb.MetaConflict] = []
    for model, metas in sorted(_metas_by_model(s, models).items()):
        found.extend(mteb.resolve_model_meta(model, metas)[2])
    return found


def meta_conflicts(factory: Factory) -> list[mteb.MetaConflict]:
    """Every stored model whose meta files disagree, with the value the rule chose."""
    with factory() as s:
        return _conflicts(s)


def references(
    factory: Factory,
    *,
    models: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    split: str | None = None,
    subset: str | None = None,
) -> pd.DataFrame:
    """Stored reference scores (``core.mteb.REFERENCE_COLUMNS``): each row with its model's resolved
    embed_dim / n_parameters and the lab dataset of its task (None where the lab has none).

    Only reads: entry points call :func:`ensure_shipped` first (a write, kept out of cached reads)."""
    with factory() as s:
        frame = reference_repository.scores_frame(
            s, models=models, tasks=tasks, metrics=metrics, split=split, subset=subset
        )
        resolved = {
            model: mteb.resolve_model_meta(model, metas)[:2]
            for model, metas in _metas_by_model(s, sorted(set(frame["model"]))).items()
        }
    # dict lookups (hashed once per distinct key), not a Python call per row: 2 million rows of a whole
    # results repository took 7 s through lambdas
    frame["embed_dim"] = frame["model"].map({m: v[0] for m, v in resolved.items()}).astype("Int64")
    frame["n_parameters"] = frame["model"].map({m: v[1] for m, v in resolved.items()}).astype("Int64")
    frame["dataset"] = frame["task"].map({t: mteb.dataset_for_task(t) for t in frame["task"].unique()})
    return frame[list(mteb.REFERENCE_COLUMNS)]


def model_summaries(factory: Factory) -> pd.DataFrame:
    """One row per stored reference model: model, embed_dim, n_parameters (resolved), revisions, tasks."""
    with factory() as s:
        metas = _metas_by_model(s)
        tasks = reference_repository.task_counts(s)
    rows = []
    for model, by_revision in sorted(metas.items()):
        embed_dim, n_parameters, _ = mteb.resolve_model_meta(model, by_revision)
        rows.append({"model": model, "embed_dim": embed_dim, "n_parameters": n_parameters,
                     "revisions": len(by_revision), "tasks": tasks.get(model, 0)})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["model", "embed_dim", "n_parameters", "revisions", "tasks"])
    return frame.astype({"embed_dim": "Int64", "n_parameters": "Int64"})


def reference_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The ``references --format json`` rows: model, revision, embed_dim, n_parameters, task, dataset,
    metric, value, source (+ split, subset, sha256, mteb_version); NaN and missing figures as null.

    Built column by column (a dict per row from ``to_dict("records")`` with per-field checks took 36 s for
    the 2 million rows of a whole results repository)."""

    def plain(column: str, kind: type) -> list[Any]:
        values = frame[column]
        return [
            None if missing else kind(v)
            for v, missing in zip(values.tolist(), values.isna().tolist(), strict=True)
        ]

    columns = {
        "model": frame["model"].tolist(), "revision": frame["revision"].tolist(),
        "embed_dim": plain("embed_dim", int), "n_parameters": plain("n_parameters", int),
        "task": frame["task"].tolist(), "dataset": plain("dataset", str), "metric": frame["metric"].tolist(),
        "value": plain("value", float), "source": frame["source"].tolist(), "split": frame["split"].tolist(),
        "subset": frame["subset"].tolist(), "sha256": frame["sha256"].tolist(),
        "mteb_version": [v if isinstance(v, str) else None for v in frame["mteb_version"].tolist()],
    }  # fmt: skip
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


# ------------------------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: model folders, task files, and what was left out and why."""

    output: str
    folders: tuple[str, ...]
    files: int
    skipped: tuple[str, ...]  # datasets that are not MTEB tasks (or not the same items)


def _params_by_layer(record: repository.CheckpointRecord, s: Session) -> dict[int, int] | None:
    """Parameters used per layer count: measured ones when stored, else counted on the loaded model."""
    measured = cost_repository.encoding_costs_frame(s, record.fingerprint)
    if not measured.empty and "params" in measured:
        found = {int(k): int(v) for k, v in zip(measured["layer"], measured["params"], strict=True)}
        if len(found) >= record.num_layers:
            return found
    try:
        loaded = checkpoints.load(record.name)
        if loaded.info.fingerprint != record.fingerprint:
            return None  # the folder changed since it was evaluated: its counts are not this checkpoint's
        shape = cost.encoder_shape(loaded.model)
        return {k: cost.params_used(shape, k) for k in range(0, shape.num_layers + 1)}
    except checkpoints.CheckpointError:
        return None


def export_results(factory: Factory, output: str | Path, checkpoint: str | None = None) -> ExportReport:
    """Write stored results as MTEB model folders ``<checkpoint>__L<k>-D<d>[-<precision>]/<revision>/<Task>.json``.

    Only datasets whose items are an MTEB task's (``core.mteb.TASKS`` with ``export``) are written, under
    MTEB's task name; ``<revision>`` is the checkpoint fingerprint's first 12 characters (the lab's
    content revision); ``dataset_revision`` is ``mlab-<dataset fingerprint>`` (the lab's copy, not a
    claim about MTEB's dataset revision). Raises ``mteb.MtebFormatError`` when nothing is exportable.
    """
    out = Path(output)
    with factory() as s:
        records = repository.list_checkpoints(s)
        if checkpoint:
            record = repository.get_checkpoint(s, checkpoint)
            if record is None:
                raise mteb.MtebFormatError(
                    f"no stored checkpoint named {checkpoint!r} (see `python -m core checkpoints`)"
                )
            records = [record]
        frame = repository.results_frame(s)
        params = {}
        wanted = {r.fingerprint for r in records}
        frame = frame[frame["checkpoint_fp"].isin(wanted)]
        exportable = frame[frame["dataset"].isin(EXPORTED_DATASETS)]
        for record in records:
            if record.fingerprint in set(exportable["checkpoint_fp"]):
                params[record.fingerprint] = _params_by_layer(record, s)
    skipped = sorted(set(frame["dataset"]) - set(exportable["dataset"]))
    if exportable.empty:
        raise mteb.MtebFormatError(
            "no stored results on a dataset that is an MTEB task (exported: "
            + ", ".join(f"{t.dataset} -> {t.task}" for t in mteb.TASKS.values() if t.export)
            + "); evaluate one first, e.g. `python -m core evaluate --checkpoint default --dataset stsb-test`"
        )
    by_fp = {r.fingerprint: r for r in records}
    folders: set[str] = set()
    files = 0
    keys = ["checkpoint_fp", "dataset", "dataset_fp", "split", "layer", "dim", "precision"]
    for (fp, dataset, dataset_fp, _split, layer, dim, precision), group in exportable.groupby(
        keys, sort=True
    ):
        record = by_fp[fp]
        info = mteb.task_for_dataset(dataset)
        assert info is not None  # filtered above
        folder = mteb.submodel_folder(record.name, int(layer), int(dim), str(precision))
        revision = record.fingerprint[:12]
        target = out / folder / revision
        target.mkdir(parents=True, exist_ok=True)
        values = {
            m: (None if pd.isna(v) else float(v))
            for m, v in zip(group["metric"], group["value"], strict=True)
        }
        doc = mteb.task_result_dict(info.task, values, f"mlab-{dataset_fp}", split=info.split)
        (target / f"{info.task}.json").write_text(mteb.dump_json(doc), encoding="utf-8")
        counts = params.get(fp)
        meta = mteb.model_meta_dict(
            folder, revision, int(dim), None if counts is None else counts.get(int(layer)),
            max_tokens=record.max_seq_length, similarity=record.similarity,
            source={"checkpoint": record.name, "checkpoint_fingerprint": record.fingerprint,
                    "layer": int(layer), "dim": int(dim), "precision": str(precision)},
        )  # fmt: skip
        (target / mteb.META_FILE).write_text(mteb.dump_json(meta), encoding="utf-8")
        folders.add(folder)
        files += 1
    return ExportReport(str(out), tuple(sorted(folders)), files, tuple(skipped))
