"""Export a sub-model with what the lab measured about it, and register the exported folder.

``export_submodel`` joins storage and compute: it reads the cell's stored scores (every evaluated
dataset, float32, the chosen backend) and measured encoding cost of its layer, renders the model card
(``core.export.model_card``), writes the folder (``core.export.write_submodel``: a temporary folder
renamed at the end) and registers it as a checkpoint, so it appears on every page. ``zip_folder``
packs an exported folder for a browser download.

Out of scope: the files themselves (core/export), measuring anything (core/evaluate, core/cost).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import backends, checkpoints, export, provenance
from core.lab import registry
from storage import cost_repository, repository

COST_COLUMNS = {  # stored encoding-cost column -> model card label
    "latency_ms_p50": "latency p50 (ms)",
    "latency_ms_p95": "latency p95 (ms)",
    "throughput_per_s": "throughput (texts/s)",
}


@dataclass(frozen=True)
class ExportReport:
    """An exported, registered sub-model."""

    folder: Path
    layer: int
    dim: int
    backend: str
    files_bytes: int
    scores: list[dict[str, Any]]
    checkpoint: checkpoints.CheckpointInfo  # the exported folder as the lab loads it


def exports_dir() -> Path:
    """Where exports go when no output folder is given: ``$MLAB_HOME/exports``."""
    path = settings.lab_home() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cell_facts(
    factory: sessionmaker[Session], info: checkpoints.CheckpointInfo, layer: int, dim: int, backend: str
) -> export.CardFacts:
    """The stored scores and encoding cost of one cell, and the lab's provenance, for its model card."""
    with factory() as s:
        frame = repository.results_frame(
            s, checkpoint_fp=info.fingerprint, precision="float32", backend=backend
        )
        costs = cost_repository.encoding_costs_frame(s, checkpoint_fp=info.fingerprint, backend=backend)
    scores: list[dict[str, Any]] = []
    if not frame.empty:
        cell = frame[(frame["layer"] == layer) & (frame["dim"] == dim)]
        for rec in cell.sort_values(["dataset", "split", "metric"]).to_dict("records"):
            scores.append(
                {
                    "dataset": rec["dataset"],
                    "split": rec["split"],
                    "metric": rec["metric"],
                    "value": rec["value"],
                }
            )
    cost: dict[str, Any] = {}
    if not costs.empty:
        rows = costs[costs["layer"] == layer].sort_values("measured_at")
        for batch in sorted(set(rows["batch_size"]), reverse=True):
            latest = rows[rows["batch_size"] == batch].iloc[-1]
            for column, label in COST_COLUMNS.items():
                cost[f"batch {batch}, length {int(latest['seq_len'])}: {label}"] = float(latest[column])
            cost[f"batch {batch}: machine"] = str(latest["machine"])
    revision, dirty = provenance.lab_git_revision()
    versions = provenance.package_versions()
    return export.CardFacts(
        source_name=info.name,
        source_fingerprint=info.fingerprint,
        source_label=info.label,
        source_revision=info.revision,
        scores=scores,
        cost=cost,
        provenance={
            "lab git revision": f"{revision}{' (modified)' if dirty else ''}" if revision else "unknown",
            **{name: version for name, version in versions.items() if version},
        },
    )


def export_submodel(
    checkpoint: str | checkpoints.LoadedCheckpoint,
    layer: int,
    dim: int,
    backend: str = backends.DEFAULT_BACKEND,
    output: str | Path | None = None,
    *,
    session_factory: sessionmaker[Session],
) -> ExportReport:
    """Write the (layer, dim) sub-model of ``checkpoint`` for ``backend`` and register it; see module doc.

    Raises ExportError / BackendError / CheckpointError (user errors, nothing written) and ReadOnlyError
    in read-only demo mode.
    """
    settings.ensure_writable("exporting a sub-model")
    loaded = (
        checkpoint if isinstance(checkpoint, checkpoints.LoadedCheckpoint) else checkpoints.load(checkpoint)
    )
    export.check_cell(loaded, layer, dim, backend)
    target = export.check_output(
        output if output is not None else export.default_output(exports_dir(), loaded, layer, dim, backend)
    )
    factory = session_factory
    facts = cell_facts(factory, loaded.info, layer, dim, backend)
    onnx_file = f"{export.ONNX_FOLDER}/{export.ONNX_FILES[backend]}" if backend in export.ONNX_FILES else None
    card = export.model_card(target.name, layer, dim, backend, facts, onnx_file)
    written = export.write_submodel(loaded, layer, dim, target, backend, card)
    try:
        exported = checkpoints.load(str(written.folder))
        with factory() as s, s.begin():
            repository.upsert_checkpoint(s, **registry.checkpoint_values(exported.info))
    except BaseException:
        shutil.rmtree(written.folder, ignore_errors=True)  # not registered: leave nothing half-done
        raise
    return ExportReport(
        written.folder,
        layer,
        dim,
        backend,
        written.files_bytes,
        [dict(row) for row in facts.scores],
        exported.info,
    )


def zip_folder(folder: str | Path) -> bytes:
    """The folder's files as a zip (paths relative to its parent, so it unpacks to one folder)."""
    root = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(path, Path(root.name) / path.relative_to(root))
    return buffer.getvalue()


def export_zip(
    checkpoint: str | checkpoints.LoadedCheckpoint,
    layer: int,
    dim: int,
    backend: str = backends.DEFAULT_BACKEND,
    *,
    session_factory: sessionmaker[Session],
) -> tuple[str, bytes, ExportReport]:
    """Export into the lab's exports folder and return (zip name, zip bytes, report).

    The folder of an earlier export of the same cell is exported afresh (its card then shows today's
    scores); another folder of that name is left alone and a fresh name is taken.
    """
    loaded = (
        checkpoint if isinstance(checkpoint, checkpoints.LoadedCheckpoint) else checkpoints.load(checkpoint)
    )
    base = export.default_output(exports_dir(), loaded, layer, dim, backend)
    target = base
    if base.exists() and any(base.iterdir()):
        target = Path(tempfile.mkdtemp(prefix=f"{base.name}-", dir=base.parent))
        info = export.read_export_info(base)
        same = info is not None and (
            info.get("source", {}).get("fingerprint"),
            info.get("layer"),
            info.get("dim"),
            info.get("backend"),
        ) == (loaded.info.fingerprint, layer, dim, backend)
        if same:  # replace the earlier export of this very cell instead of piling up copies
            target.rmdir()
            target = base.with_name(f".{base.name}.old")
            shutil.rmtree(target, ignore_errors=True)
            base.rename(target)
            try:
                report = export_submodel(loaded, layer, dim, backend, base, session_factory=session_factory)
            except BaseException:
                target.rename(base)
                raise
            shutil.rmtree(target, ignore_errors=True)
            return f"{report.folder.name}.zip", zip_folder(report.folder), report
    report = export_submodel(loaded, layer, dim, backend, target, session_factory=session_factory)
    return f"{report.folder.name}.zip", zip_folder(report.folder), report
