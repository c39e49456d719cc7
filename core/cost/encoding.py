"""Encoding latency and throughput of a truly k-layer copy of a checkpoint, layers timed round-robin."""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core import backends, submodels
from core.cost.flops import check_layers, encoder_shape, flops_per_token, layer_stack, params_used
from core.cost.keys import CostError, ProgressFn

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer


def truncated_sharing_weights(model: SentenceTransformer, layers: int) -> SentenceTransformer:
    """A copy of ``model`` whose module tree really has only its first ``layers`` layers.

    Unlike ``core.submodels.truncated_copy`` the parameter and buffer tensors are shared with ``model``
    (the copy's modules are new objects, the weights are not copied), so L truncated models fit in the
    memory of one. ``model`` itself is not modified. For inference only: training the copy would train
    ``model``.
    """
    encoder: Any = model[0].auto_model
    total = int(encoder.config.num_hidden_layers)
    if not 0 <= layers <= total:
        raise CostError(f"cannot truncate a {total}-layer model to {layers} layers")
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    clone = copy.deepcopy(model, memo)
    clone_encoder: Any = clone[0].auto_model
    stack = layer_stack(clone_encoder)
    for _ in range(total - layers):
        del stack[len(stack) - 1]
    clone_encoder.config.num_hidden_layers = layers
    return clone


def synthetic_features(model: SentenceTransformer, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """A tokenized batch of ``batch_size`` identical inputs of exactly ``seq_len`` tokens (specials included)."""
    if batch_size < 1:
        raise CostError(f"batch size must be >= 1, got {batch_size}")
    encoder: Any = model[0].auto_model
    limit = int(getattr(encoder.config, "max_position_embeddings", 0) or 0)
    if seq_len < 2 or (limit and seq_len > limit):
        raise CostError(f"seq_len {seq_len} must be between 2 and the model's position limit {limit or '?'}")
    tokenizer = model.tokenizer
    encoded = tokenizer(
        ["lab " * seq_len],
        truncation=True,
        max_length=seq_len,
        padding="max_length",
        return_tensors="pt",
    )
    names = set(getattr(tokenizer, "model_input_names", None) or ("input_ids", "attention_mask"))
    features = {k: v.repeat(batch_size, 1) for k, v in encoded.items() if k in names}
    if features["input_ids"].shape != (batch_size, seq_len):  # pragma: no cover - tokenizer contract
        raise CostError(
            f"tokenizer gave shape {tuple(features['input_ids'].shape)}, wanted {(batch_size, seq_len)}"
        )
    return features


def encode_fn(
    truncated: SentenceTransformer, fingerprint: str, backend: str, graph_root: str | None = None
) -> tuple[Callable[[dict[str, Any]], Any], int]:
    """``(features -> sentence embeddings, model bytes)`` of a truncated copy on ``backend``: what a
    deployment of that sub-model runs per batch (its encoder and the checkpoint's pooling/post-modules).

    Model bytes: the float32 weights for the torch backends (bf16 autocast keeps float32 weights), the
    graph file for the ONNX ones (``core.backends.layer_graph``, exported once per layer count).
    """
    import torch  # heavy: imported on first use

    backends.check_backend(backend)
    if backend in (backends.TORCH, backends.TORCH_BF16):
        weights = sum(t.numel() * t.element_size() for t in truncated.state_dict().values())
        if backend == backends.TORCH:
            return (lambda features: truncated(dict(features))), weights

        def bf16(features: dict[str, Any]) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return truncated(dict(features))

        return bf16, weights
    graph = backends.layer_graph(truncated, fingerprint, backend, graph_root)
    runner = backends.OnnxRunner(graph, backend)

    def run(features: dict[str, Any]) -> Any:
        return submodels.pool_hidden_states(truncated, features, runner(features), [0])[0]

    return run, graph.stat().st_size


@dataclass(frozen=True)
class EncodingCost:
    """Measured and analytic encoding cost of the first ``layer`` layers (one batch size, one seq length)."""

    layer: int
    batch_size: int
    seq_len: int
    latency_ms_p50: float  # single query (batch 1)
    latency_ms_p95: float
    latency_ms_mean: float
    throughput_per_s: float  # sentences/s at batch_size
    batch_ms_p50: float
    flops_per_token: int
    params: int
    repeats: int
    batch_repeats: int
    threads: int
    latency_ms_min: float = math.nan  # fastest single query (least disturbed by other load)
    batch_ms_min: float = math.nan  # fastest batch
    backend: str = backends.DEFAULT_BACKEND
    model_bytes: int = 0  # what the sub-model ships: k-layer float32 weights, or its ONNX graph file
    batch_ms_p95: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_encoding(
    model: SentenceTransformer,
    layers: Sequence[int],
    batch_size: int = 32,
    seq_len: int = 32,
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    progress: ProgressFn | None = None,
    backend: str = backends.DEFAULT_BACKEND,
    fingerprint: str = "unregistered",
    graph_root: str | None = None,
) -> list[EncodingCost]:
    """Latency (batch 1) and throughput (``batch_size``) of a truly truncated copy per layer, round-robin.

    Args:
        model: the loaded sentence-transformers model (left untouched).
        layers: layers to measure (0 = embeddings only).
        batch_size: sentences per batch for the throughput measurement.
        seq_len: tokens per input (specials included), fixed.
        repeats: timed single-query runs per layer.
        batch_repeats: timed batches per layer.
        warmup: untimed runs per layer before timing (each of single and batch).
        progress: called with ("latency", done, total) and ("throughput", done, total).
        backend: what runs the sub-model (core/backends); ONNX graphs of each k-layer copy are exported
            once per (``fingerprint``, k) into ``graph_root`` (default: the lab's graph folder).
    """
    import torch  # heavy: imported on first use

    if repeats < 1 or batch_repeats < 1 or warmup < 0:
        raise CostError(f"repeats ({repeats}) and batch repeats ({batch_repeats}) must be >= 1, warmup >= 0")
    shape = encoder_shape(model)
    wanted = sorted(set(layers))
    if not wanted:
        raise CostError("no layers to measure")
    for layer in wanted:
        check_layers(shape, layer)
    single = synthetic_features(model, 1, seq_len)
    batch = synthetic_features(model, batch_size, seq_len)
    copies = {layer: truncated_sharing_weights(model, layer).eval() for layer in wanted}
    try:
        runs = {
            layer: encode_fn(copies[layer], fingerprint, backend, graph_root) for layer in wanted
        }  # layer -> (callable, model bytes)
    except backends.BackendError as exc:
        raise CostError(str(exc)) from None
    latencies: dict[int, list[float]] = {layer: [] for layer in wanted}
    batch_times: dict[int, list[float]] = {layer: [] for layer in wanted}
    with torch.inference_mode():
        for phase, feats, n_rounds, out in (
            ("latency", single, repeats, latencies),
            ("throughput", batch, batch_repeats, batch_times),
        ):
            for layer in wanted:
                for _ in range(warmup if phase == "latency" else min(warmup, 1)):
                    runs[layer][0](feats)
            for r in range(n_rounds):
                order = wanted[r % len(wanted) :] + wanted[: r % len(wanted)]  # rotate the visiting order
                for layer in order:
                    out[layer].append(timed(lambda c=runs[layer][0], f=feats: c(f)))  # type: ignore[misc]
                if progress:
                    progress(phase, r + 1, n_rounds)
    threads = int(torch.get_num_threads())
    results = []
    for layer in wanted:
        lat_ms = np.array(latencies[layer]) * 1e3
        batch_ms = float(np.median(batch_times[layer]) * 1e3)
        results.append(
            EncodingCost(
                layer=layer,
                batch_size=batch_size,
                seq_len=seq_len,
                latency_ms_p50=float(np.percentile(lat_ms, 50)),
                latency_ms_p95=float(np.percentile(lat_ms, 95)),
                latency_ms_mean=float(lat_ms.mean()),
                throughput_per_s=float(batch_size / (batch_ms / 1e3)),
                batch_ms_p50=batch_ms,
                flops_per_token=flops_per_token(shape, layer, seq_len),
                params=params_used(shape, layer),
                repeats=repeats,
                batch_repeats=batch_repeats,
                threads=threads,
                latency_ms_min=float(lat_ms.min()),
                batch_ms_min=float(np.min(batch_times[layer]) * 1e3),
                backend=backend,
                model_bytes=int(runs[layer][1]),
                batch_ms_p95=float(np.percentile(batch_times[layer], 95) * 1e3),
            )
        )
    return results
