"""Every (layer, dim) sub-model of a checkpoint from one forward pass, and the embedding cache.

A sub-model (k, d, precision) is: the token embeddings that come out of transformer layer k, pushed
through the checkpoint's own post-transformer modules (pooling and any Dense/Normalize after it, as
sentence-transformers' AdaptiveLayerLoss does), cut to the first d dimensions, then L2-normalized when
the similarity is cosine; precision (float16/int8/binary) is applied afterwards by core/quantize.

One forward pass with ``output_hidden_states=True`` yields the pooled full-width matrix of every layer;
every dim is then a free slice. ``forward_all_layers`` is that pass on a tokenized batch (with or
without gradients: training calls it too); ``encode_all_layers`` runs it over a list of texts;
``pooled_embeddings`` adds the on-disk cache and de-duplication the evaluator uses.

Layer 0 is the embedding-layer output (before any transformer layer); layers 1..L are the transformer
layers. The cached model is never modified: truncation is a slice of ``hidden_states``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common import settings
from common.errors import LabError
from core import backends

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from core.checkpoints import LoadedCheckpoint

PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "binary")
CACHE_FORMAT_VERSION = 1
ProgressFn = Callable[[int, int], None]  # (done, total)

# Keys a Hugging Face encoder's forward accepts from a sentence-transformers feature dict.
_MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass(frozen=True, order=True)
class SubModel:
    """One cell of the grid: first ``layer`` layers, first ``dim`` dims, stored at ``precision``."""

    layer: int
    dim: int
    precision: str = "float32"


class SubModelError(LabError):
    """A requested sub-model does not exist in the checkpoint (bad layer, dim or precision)."""


def validate_submodel(sub: SubModel, num_layers: int, width: int, allow_layer_zero: bool = True) -> None:
    """Refuse a cell outside the checkpoint: layer in [0|1, L], dim in [1, width], known precision."""
    low = 0 if allow_layer_zero else 1
    if not low <= sub.layer <= num_layers:
        raise SubModelError(f"layer {sub.layer} is outside this checkpoint's layers {low}..{num_layers}")
    if not 1 <= sub.dim <= width:
        raise SubModelError(f"dim {sub.dim} is outside this checkpoint's dims 1..{width}")
    if sub.precision not in PRECISIONS:
        raise SubModelError(f"unknown precision {sub.precision!r}; choose from {', '.join(PRECISIONS)}")


def default_dims(width: int) -> list[int]:
    """Powers of two from 32 up to the width, plus the full width: 384 -> [32, 64, 128, 256, 384]."""
    dims = [d for d in (2**i for i in range(5, 16)) if d < width]
    return [*dims, width]


def default_diagonal(num_layers: int, width: int, steps: int = 6) -> list[tuple[int, int]]:
    """Starbucks-style fixed pairs scaled to a model, small to full.

    BERT-base (12 x 768) gives the paper's (2,32) (4,64) (6,128) (8,256) (10,512) (12,768);
    a 6 x 384 model gives (1,32) (2,64) (3,128) (4,192) (5,256) (6,384).

    >>> default_diagonal(12, 768)
    [(2, 32), (4, 64), (6, 128), (8, 256), (10, 512), (12, 768)]
    >>> default_diagonal(6, 384)
    [(1, 32), (2, 64), (3, 128), (4, 192), (5, 256), (6, 384)]
    """
    paper_layers = (2, 4, 6, 8, 10, 12)[-steps:]
    dims = sorted({d for d in (32, 64, 128, 256, 512, 768) if d < width} | {width})
    while len(dims) < steps:  # fill the widest gap with its midpoint (a multiple of 32 when possible)
        gap, neg_i = max((dims[j + 1] - dims[j], -j) for j in range(len(dims) - 1))
        i = -neg_i
        if gap < 2:
            break
        mid = dims[i] + gap // 2
        dims.insert(i + 1, mid - mid % 32 if mid % 32 and mid - mid % 32 > dims[i] else mid)
    dims = dims[-steps:]
    layers = [max(1, math.floor(p * num_layers / 12 + 0.5)) for p in paper_layers]
    layers[-1] = num_layers
    return list(zip(layers[-len(dims) :], dims, strict=True))


def default_grid_dims(num_layers: int, width: int) -> list[int]:
    """Dims of the default grid: ``default_dims`` plus the dims of the Starbucks diagonal.

    >>> default_grid_dims(6, 384)
    [32, 64, 128, 192, 256, 384]
    """
    diagonal = {d for _, d in default_diagonal(num_layers, width)}
    return sorted(set(default_dims(width)) | diagonal)


def model_inputs(features: dict[str, Any]) -> dict[str, Any]:
    """The part of a tokenized feature dict that the Hugging Face encoder takes."""
    return {k: features[k] for k in _MODEL_INPUT_KEYS if k in features}


def forward_all_layers(
    model: SentenceTransformer,
    features: dict[str, Any],
    layers: Sequence[int],
    runner: backends.HiddenStatesRunner | None = None,
) -> dict[int, torch.Tensor]:
    """Pooled full-width sentence embeddings of each requested layer from ONE encoder pass.

    Runs with whatever grad mode the caller set (training calls it with gradients). Returns
    ``{layer: (batch, embedding_dim)}``, each through the checkpoint's own post-transformer modules.
    ``runner`` computes the hidden states on a deployment backend (core/backends); default: the model's
    own torch float32 encoder.
    """
    if runner is None:
        transformer: Any = model[0]
        output = transformer.auto_model(**model_inputs(features), output_hidden_states=True, return_dict=True)
        hidden_states = output.hidden_states  # (L + 1) x (batch, seq, hidden); [0] = embedding output
    else:
        hidden_states = runner(features)
    return pool_hidden_states(model, features, hidden_states, layers)


def pool_hidden_states(
    model: SentenceTransformer,
    features: dict[str, Any],
    hidden_states: Sequence[torch.Tensor],
    layers: Sequence[int],
) -> dict[int, torch.Tensor]:
    """``{layer: (batch, width)}``: each layer's token embeddings through the checkpoint's post-modules.

    A model saved with ``truncate_dim`` (an exported sub-model) is cut to it, as its ``encode`` does.
    """
    post_modules = list(model)[1:]
    truncate_dim = getattr(model, "truncate_dim", None)
    pooled: dict[int, torch.Tensor] = {}
    for layer in layers:
        feats = {**features, "token_embeddings": hidden_states[layer]}
        for module in post_modules:
            feats = module(feats)
        emb = feats["sentence_embedding"]
        pooled[layer] = emb[..., :truncate_dim] if truncate_dim else emb
    return pooled


def encode_all_layers(
    model: SentenceTransformer,
    texts: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 32,
    prompt: str | None = None,
    progress: ProgressFn | None = None,
    out: dict[int, np.ndarray] | None = None,
    runner: backends.HiddenStatesRunner | None = None,
) -> dict[int, np.ndarray]:
    """Encode ``texts`` once and return ``{layer: (n_texts, embedding_dim) float32}`` in input order.

    Texts are batched longest-first (as ``SentenceTransformer.encode`` does) to waste little padding;
    each text is cut at the model's ``max_seq_length`` by its tokenizer. ``out`` may supply the
    destination arrays (e.g. memory-mapped cache files), so a large corpus streams batch by batch to
    disk with bounded memory. ``runner`` picks the deployment backend (default torch float32).
    """
    import torch  # heavy: imported on first use

    n = len(texts)
    width = model.get_embedding_dimension() or 0
    if out is None:
        out = {layer: np.empty((n, width), dtype=np.float32) for layer in layers}  # (n_texts, width)
    if n == 0:
        return out
    order = np.argsort([-len(t) for t in texts], kind="stable")
    model.eval()
    done = 0
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = [texts[i] for i in idx]
            features = model.preprocess(batch, prompt=prompt) if prompt else model.preprocess(batch)
            features = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in features.items()}
            pooled = forward_all_layers(model, features, layers, runner)
            for layer, emb in pooled.items():
                out[layer][idx] = emb.float().cpu().numpy()
            done += len(idx)
            if progress:
                progress(done, n)
    return out


def truncated_copy(model: SentenceTransformer, layers: int) -> SentenceTransformer:
    """A deep copy of ``model`` that really has only its first ``layers`` transformer layers.

    For latency measurements and invariant tests; the shared cached ``model`` is left untouched.
    """
    import torch  # heavy: imported on first use

    clone = copy.deepcopy(model)
    encoder: Any = clone[0].auto_model
    total = int(encoder.config.num_hidden_layers)
    if not 0 <= layers <= total:
        raise SubModelError(f"cannot truncate a {total}-layer model to {layers} layers")
    stacks = [m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total]
    if not stacks:
        raise SubModelError(f"cannot find the layer stack of {type(encoder).__name__} to truncate")
    stack = stacks[0]
    for _ in range(total - layers):
        del stack[len(stack) - 1]
    encoder.config.num_hidden_layers = layers
    return clone


def truncate(pooled: np.ndarray, dim: int, normalize: bool = True) -> np.ndarray:
    """First ``dim`` columns of a pooled matrix, L2-normalized per row when ``normalize``.

    Zero rows stay zero (no division by zero).
    """
    cut = np.ascontiguousarray(pooled[:, :dim], dtype=np.float32)  # (n, dim)
    if not normalize:
        return cut
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.where(norms > 0, norms, 1.0)


def normalizes(similarity: str) -> bool:
    """Whether sub-model vectors are L2-normalized for this similarity function."""
    return similarity.lower() in {"cosine", "cos_sim"}


def texts_fingerprint(texts: Sequence[str]) -> str:
    """Content hash of an ordered list of texts."""
    digest = hashlib.sha256(b"mlab-texts-v1")
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:32]


class CacheCorruptError(RuntimeError):
    """An embedding-cache entry failed its checksum or shape check (it is then recomputed)."""


class EmbeddingCache:
    """On-disk cache of pooled full-width matrices, one ``.npy`` per (checkpoint, texts, layer, ...).

    Each entry has a JSON sidecar with the key fields, shape and sha256 of the array bytes; an entry
    whose checksum, shape or key does not match is treated as missing (and replaced), never reused.
    Writes go to a temporary file (``.PID-*.npy.tmp``) and are renamed into place, so a crash leaves no
    half entry; the first cache of a process on a folder deletes the temporary files of writers that
    are gone (a ``kill -9`` while encoding), and an entry path taken by a folder counts as corrupt.
    """

    def __init__(self, root: str | Path | None = None, verify: bool = True) -> None:
        self.root = Path(root) if root is not None else settings.cache_dir()
        self.verify = verify
        if self.root not in _swept_roots:
            _swept_roots.add(self.root)
            remove_stale_temporaries(self.root)

    @staticmethod
    def key(
        checkpoint_fp: str,
        texts_fp: str,
        layer: int,
        max_seq_length: int,
        prompt: str | None,
        backend: str = backends.DEFAULT_BACKEND,
    ) -> dict:
        """The fields that identify an entry (``backend`` only when not torch, so older entries stay valid)."""
        key = {
            "format": CACHE_FORMAT_VERSION,
            "checkpoint": checkpoint_fp,
            "texts": texts_fp,
            "layer": int(layer),
            "max_seq_length": int(max_seq_length),
            "prompt": prompt or "",
        }
        if backend != backends.DEFAULT_BACKEND:
            key["backend"] = backend
        return key

    def _paths(self, key: dict) -> tuple[Path, Path]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
        folder = self.root / key["checkpoint"][:16]
        return folder / f"{digest}.npy", folder / f"{digest}.json"

    def get(self, key: dict) -> np.ndarray | None:
        """The cached matrix (memory-mapped), or None when absent or invalid."""
        array_path, meta_path = self._paths(key)
        _clear_folders(array_path, meta_path)
        if not array_path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("key") != key:
                raise CacheCorruptError("key mismatch")
            array = np.load(array_path, mmap_mode="r", allow_pickle=False)
            if list(array.shape) != meta.get("shape") or array.dtype != np.float32:
                raise CacheCorruptError("shape or dtype mismatch")
            if self.verify and _sha256_file(array_path) != meta.get("sha256"):
                raise CacheCorruptError("checksum mismatch")
        except (OSError, ValueError, EOFError, CacheCorruptError):  # EOFError: an empty .npy
            self._discard(array_path, meta_path)
            return None
        return array

    def writer(self, key: dict, shape: tuple[int, int]) -> tuple[np.ndarray, Path]:
        """A writable memory-mapped temporary ``.npy`` for ``key``; ``commit`` it once filled."""
        array_path, _ = self._paths(key)
        array_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=array_path.parent, prefix=_tmp_prefix(), suffix=".npy.tmp")
        os.close(fd)
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        return array, Path(tmp)

    def commit(self, key: dict, tmp: Path) -> None:
        """Checksum a filled ``writer`` file and move it into place under ``key``."""
        array_path, meta_path = self._paths(key)
        shape = list(np.load(tmp, mmap_mode="r", allow_pickle=False).shape)
        meta = {"key": key, "shape": shape, "sha256": _sha256_file(tmp)}
        _clear_folders(array_path, meta_path)
        os.replace(tmp, array_path)
        _atomic_write_text(meta_path, json.dumps(meta, sort_keys=True))

    def put(self, key: dict, array: np.ndarray) -> None:
        """Store ``array`` atomically under ``key``."""
        array_path, meta_path = self._paths(key)
        array_path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array, dtype=np.float32)
        fd, tmp = tempfile.mkstemp(dir=array_path.parent, prefix=_tmp_prefix(), suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            meta = {"key": key, "shape": list(array.shape), "sha256": _sha256_file(Path(tmp))}
            _clear_folders(array_path, meta_path)
            os.replace(tmp, array_path)
            _atomic_write_text(meta_path, json.dumps(meta, sort_keys=True))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _discard(*paths: Path) -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def _clear_folders(*paths: Path) -> None:
    """Remove folders found where cache files belong (an entry's place taken by a folder is corrupt)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


_swept_roots: set[Path] = set()
LEGACY_TMP_AGE_S = 24 * 3600  # temporaries without a pid in their name are removed after a day


def _tmp_prefix() -> str:
    return f".{os.getpid()}-"


def _writer_alive(name: str) -> bool | None:
    """Whether the process that named a temporary file ``.PID-...`` still runs (None: no pid in it)."""
    head = name[1:].split("-", 1)[0] if name.startswith(".") else ""
    if not head.isdigit():
        return None
    try:
        os.kill(int(head), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(root: Path) -> int:
    """Delete ``*.tmp`` files of cache writers that are gone (killed mid-write); return how many."""
    removed = 0
    if not root.is_dir():
        return 0
    for path in root.glob("*/*.tmp"):
        alive = _writer_alive(path.name)
        if alive is None:
            with contextlib.suppress(OSError):
                alive = time.time() - path.stat().st_mtime < LEGACY_TMP_AGE_S
        if alive is False:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(), suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class PooledTexts:
    """Pooled full-width matrices of a list of texts, per layer, with the de-duplication map.

    ``by_layer[k]`` has one row per UNIQUE text; ``rows[i]`` is the row of the i-th input text.
    ``encoded`` counts the texts that went through the model in this call (0 = all from cache).
    """

    by_layer: dict[int, np.ndarray]
    rows: np.ndarray  # (n_inputs,) int64 index into the unique rows
    unique_texts: list[str]
    encoded: int

    def matrix(self, layer: int) -> np.ndarray:
        """(n_inputs, width) pooled matrix of ``layer`` in input order."""
        return np.asarray(self.by_layer[layer])[self.rows]


def unique_with_rows(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order, and each input's index into them.

    >>> unique_with_rows(["a", "b", "a"])
    (['a', 'b'], array([0, 1, 0]))
    """
    index: dict[str, int] = {}
    rows = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        rows[i] = index.setdefault(text, len(index))
    return list(index), rows


def pooled_embeddings(
    loaded: LoadedCheckpoint,
    texts: Sequence[str],
    layers: Sequence[int],
    cache: EmbeddingCache | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
    backend: str = backends.DEFAULT_BACKEND,
) -> PooledTexts:
    """Pooled matrices for ``layers`` of ``texts``, reusing the cache; one pass encodes all missing layers.

    When any requested layer is missing, every layer 0..L is computed and stored (the pass costs the
    same), so later requests for other layers are cache hits. ``backend`` (core/backends) says what
    runs the encoder; its matrices are cached apart from the other backends'.
    """
    backends.check_backend(backend)
    unique, rows = unique_with_rows(texts)
    info = loaded.info
    texts_fp = texts_fingerprint(unique)
    keys = {
        layer: EmbeddingCache.key(info.fingerprint, texts_fp, layer, info.max_seq_length, prompt, backend)
        for layer in range(info.num_layers + 1)
    }
    by_layer: dict[int, np.ndarray] = {}
    if cache is not None:
        for layer in layers:
            hit = cache.get(keys[layer])
            if hit is not None:
                by_layer[layer] = hit
    missing = [layer for layer in layers if layer not in by_layer]
    encoded = 0
    if missing:
        all_layers = list(range(info.num_layers + 1))
        encoded = len(unique)
        runner = (
            None
            if backend == backends.TORCH
            else backends.runner_for(loaded.model, info.fingerprint, backend)
        )
        if cache is None:
            fresh = encode_all_layers(
                loaded.model, unique, all_layers, batch_size, prompt, progress, runner=runner
            )
            by_layer.update({layer: fresh[layer] for layer in missing})
        else:  # stream every layer straight into memory-mapped cache files
            writers = {
                layer: cache.writer(keys[layer], (len(unique), info.embedding_dim)) for layer in all_layers
            }
            try:
                encode_all_layers(
                    loaded.model,
                    unique,
                    all_layers,
                    batch_size,
                    prompt,
                    progress,
                    out={layer: array for layer, (array, _) in writers.items()},
                    runner=runner,
                )
                for layer, (array, tmp) in writers.items():
                    array.flush()  # type: ignore[attr-defined]
                    del array
                    cache.commit(keys[layer], tmp)
            finally:
                for _, tmp in writers.values():
                    tmp.unlink(missing_ok=True)
            for layer in missing:
                hit = cache.get(keys[layer])
                if hit is None:
                    raise CacheCorruptError(f"cache entry for layer {layer} vanished right after writing")
                by_layer[layer] = hit
    elif progress:
        progress(len(unique), len(unique))
    return PooledTexts(by_layer, rows, unique, encoded)
