"""Export one sub-model (layer k, dim d, backend) as a standalone sentence-transformers folder.

The folder holds the first k transformer layers only (a truncated copy, the shared model untouched),
the checkpoint's own pooling and normalization, ``truncate_dim = d`` in
``config_sentence_transformers.json``, and for the ONNX backends the graph of that truncated encoder in
sentence-transformers' folder convention (``onnx/model.onnx``; ``onnx/model_qint8_avx512_vnni.onnx``
for int8, which is ``quantize_dynamic`` with int8 per-channel weights). A stock
``SentenceTransformer(folder)`` loads it with remote code off; its embeddings are the lab's (k, d) cell.
``export_info.json`` records what was exported and from what; ``README.md`` is the model card the
caller renders with ``model_card``.

Everything is written into a hidden temporary folder beside the target and renamed at the end, so a
failure leaves nothing behind. Storage (the measured scores and cost the card shows, registering the
folder) is the orchestration layer's job; this module only computes and writes files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import LabError
from core import backends, submodels

if TYPE_CHECKING:
    from core.checkpoints import LoadedCheckpoint

EXPORT_INFO = "export_info.json"
EXPORT_FORMAT_VERSION = 1
ONNX_FOLDER = "onnx"
ONNX_FILES = {backends.ONNX: "model.onnx", backends.ONNX_INT8: "model_qint8_avx512_vnni.onnx"}


class ExportError(LabError):
    """A sub-model that cannot be exported as asked (bad layer/dim/backend, output folder in use, ...)."""


@dataclass(frozen=True)
class ExportedModel:
    """What ``write_submodel`` wrote: the folder and the files that matter."""

    folder: Path
    layer: int
    dim: int
    backend: str
    onnx_file: str | None  # relative path of the ONNX graph, for ONNX backends
    files_bytes: int  # bytes of every file in the folder


@dataclass(frozen=True)
class CardFacts:
    """Plain facts the model card shows (gathered by the caller from the lab's results)."""

    source_name: str
    source_fingerprint: str
    source_label: str = ""
    source_revision: str | None = None
    scores: Sequence[Mapping[str, Any]] = ()  # rows: dataset, split, metric, value
    cost: Mapping[str, Any] = field(default_factory=dict)  # e.g. latency_ms_b32_p50, throughput, bytes
    provenance: Mapping[str, Any] = field(default_factory=dict)  # lab git revision, versions, ...


def check_output(output: str | Path) -> Path:
    """The target folder, refused when it exists and is not an empty folder."""
    path = Path(output).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExportError(f"output folder {str(path)!r} already exists and is not empty; choose another")
    if not path.parent.exists():
        raise ExportError(f"the parent folder of {str(path)!r} does not exist")
    return path


def check_cell(loaded: LoadedCheckpoint, layer: int, dim: int, backend: str) -> None:
    """Refuse a layer, dim or backend the checkpoint cannot export."""
    info = loaded.info
    if not 1 <= layer <= info.num_layers:
        raise ExportError(f"layer {layer} is outside this checkpoint's layers 1..{info.num_layers}")
    if not 1 <= dim <= info.embedding_dim:
        raise ExportError(f"dim {dim} is outside this checkpoint's dims 1..{info.embedding_dim}")
    try:
        backends.check_backend(backend)
    except backends.BackendError as exc:
        raise ExportError(str(exc)) from None


def default_output(root: str | Path, loaded: LoadedCheckpoint, layer: int, dim: int, backend: str) -> Path:
    """``root/<label>-L<k>-D<d>-<backend>``: the folder name when the caller gives none."""
    label = (loaded.info.label or Path(loaded.info.path).name or "model").replace("/", "-").replace(" ", "-")
    return Path(root) / f"{label}-L{layer}-D{dim}-{backend}"


def write_submodel(
    loaded: LoadedCheckpoint,
    layer: int,
    dim: int,
    output: str | Path,
    backend: str = backends.DEFAULT_BACKEND,
    card: str = "",
    info_extra: Mapping[str, Any] | None = None,
) -> ExportedModel:
    """Write the (layer, dim) sub-model of ``loaded`` to ``output`` for ``backend``; return what was written.

    ``card`` becomes README.md (see ``model_card``). Raises ExportError (or BackendError for an encoder
    the ONNX exporter cannot trace) and then leaves no files behind.
    """
    check_cell(loaded, layer, dim, backend)
    target = check_output(output)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        clone = submodels.truncated_copy(loaded.model, layer)
        clone.truncate_dim = dim
        clone.save(str(work), create_model_card=False)
        onnx_file = None
        if backend in backends.ONNX_BACKENDS:
            float_graph = work / ONNX_FOLDER / ONNX_FILES[backends.ONNX]
            backends.export_all_layers(clone, float_graph, outputs="last")
            if backend == backends.ONNX_INT8:
                backends.quantize_int8(float_graph, work / ONNX_FOLDER / ONNX_FILES[backend])
                float_graph.unlink()
            onnx_file = f"{ONNX_FOLDER}/{ONNX_FILES[backend]}"
        info = {
            "format": EXPORT_FORMAT_VERSION,
            "source": {
                "name": loaded.info.name,
                "fingerprint": loaded.info.fingerprint,
                "revision": loaded.info.revision,
                "label": loaded.info.label,
            },
            "layer": layer,
            "dim": dim,
            "backend": backend,
            "onnx_file": onnx_file,
            "similarity": loaded.info.similarity,
            "max_seq_length": loaded.info.max_seq_length,
            "normalize_after_truncation": submodels.normalizes(loaded.info.similarity),
            **dict(info_extra or {}),
        }
        (work / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (work / "README.md").write_text(card or f"# {target.name}\n")
        _share(work)
        if target.exists():
            target.rmdir()  # an empty folder the user made for it
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return ExportedModel(target, layer, dim, backend, onnx_file, size)


def _share(folder: Path) -> None:
    """Ordinary permissions (as the umask allows) on a folder made private by ``mkdtemp``."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def read_export_info(folder: str | Path) -> dict[str, Any] | None:
    """The ``export_info.json`` of an exported folder, or None for any other folder."""
    path = Path(folder) / EXPORT_INFO
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def model_card(name: str, layer: int, dim: int, backend: str, facts: CardFacts, onnx_file: str | None) -> str:
    """The README.md of an exported sub-model: what it is, its measured scores and cost, how to load it."""
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, matryoshka, 2d-matryoshka, matryoshka-lab]",
        "---",
        "",
        f"# {name}",
        "",
        f"The sub-model (layer {layer}, dim {dim}) of `{facts.source_name}`"
        + (f" ({facts.source_label})" if facts.source_label else "")
        + f", exported by Matryoshka Lab for the `{backend}` backend: the first {layer} transformer "
        f"layers, the checkpoint's own pooling and normalization, embeddings cut to the first {dim} "
        "dimensions (`truncate_dim` in `config_sentence_transformers.json`).",
        "",
        "## Measured scores",
        "",
    ]
    if facts.scores:
        lines += ["| dataset | split | metric | value |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {row['dataset']} | {row['split']} | {row['metric']} | {_fmt(row['value'])} |"
            for row in facts.scores
        ]
        lines += ["", f"Scores are the lab's stored results of this cell on the `{backend}` backend."]
    else:
        lines.append("No dataset has been evaluated for this cell yet (run `python -m core evaluate`).")
    lines += ["", "## Measured cost", ""]
    if facts.cost:
        lines += ["| measure | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in facts.cost.items()]
    else:
        lines.append("No cost run of this cell yet (run `python -m core cost`).")
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/folder")  # remote code stays off',
        'embeddings = model.encode(["A sentence to embed."])  # shape (1, ' + str(dim) + ")",
        "```",
        "",
    ]
    if backend == backends.TORCH_BF16:
        lines += [
            "The scores above were measured with the encoder under CPU bfloat16 autocast:",
            "",
            "```python",
            "import torch",
            "",
            'with torch.autocast("cpu", dtype=torch.bfloat16):',
            '    embeddings = model.encode(["A sentence to embed."])',
            "```",
            "",
        ]
    if onnx_file:
        lines += [
            f"The ONNX graph `{onnx_file}` (the tokenizer's inputs; output `last_hidden_state`) follows "
            "sentence-transformers' folder convention, so with `optimum` installed",
            "",
            "```python",
            f'model = SentenceTransformer("path/to/this/folder", backend="onnx", '
            f'model_kwargs={{"file_name": "{onnx_file}"}})',
            "```",
            "",
            "runs it on ONNX Runtime; without optimum, run the graph with `onnxruntime.InferenceSession`, "
            "pool `last_hidden_state` as `1_Pooling/config.json` says, and keep the first "
            f"{dim} dimensions (L2-normalized for cosine similarity).",
            "",
        ]
    lines += ["## Provenance", "", f"- source checkpoint: `{facts.source_name}`"]
    if facts.source_revision:
        lines.append(f"- source revision: `{facts.source_revision}`")
    lines.append(f"- source fingerprint: `{facts.source_fingerprint}`")
    lines += [f"- {k}: `{v}`" for k, v in facts.provenance.items()]
    lines.append("")
    return "\n".join(lines)
