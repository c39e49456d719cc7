"""Measured cost of every sub-model: encoding latency and throughput, FLOPs, parameters, bytes, search time.

Scope:

- **Encoding cost per layer k** (:func:`measure_encoding`): a truly k-layer copy of the checkpoint
  (:func:`truncated_sharing_weights`: its own module tree with the first k layers only, sharing the
  read-only weight tensors of the loaded model, so measuring all L layers costs no extra weight memory;
  the loaded model is never modified) encodes a fixed synthetic input of ``seq_len`` tokens.
  Tokenization is excluded (it does not depend on k); pooling and post-pooling modules are included.
  Single-query latency is batch 1, reported as p50/p95 over ``repeats`` timed runs after ``warmup``
  runs; throughput is ``batch_size / median batch time`` over ``batch_repeats`` timed batches. Layers
  are timed round-robin (every round visits every layer, in a rotating order), so a load change on a
  shared machine affects all layers alike instead of skewing the ratio between them.
- **Analytic FLOPs and parameters** (:func:`encoder_shape`, :func:`flops_per_token`,
  :func:`params_used`), read off the module tree, not assumed:
  ``flops_per_token(k, s) = sum over layers i < k of (2 * W_i + 4 * s * A)``, where ``W_i`` is the
  number of weights in the ``nn.Linear`` modules of layer i (Q, K, V, output, FFN up and down: a
  multiply-add is 2 FLOPs) and ``A = heads * head_dim`` is the attention width (``Q K^T`` costs
  ``2 s A`` per token, the weighted sum of values another ``2 s A``). For BERT, ``W_i = 4 h^2 + 2 h i``,
  so a layer costs ``8 h^2 + 4 h i + 4 s h`` FLOPs per token. Excluded: embedding lookups, biases,
  LayerNorm, softmax, activations, pooling and post-pooling Dense layers (all O(h) per token or per
  sentence). ``params_used(k)`` counts the embeddings and any other encoder parameters outside the
  layer stack, the first k layers, and the post-pooling modules; an unused pooler head (BERT's
  ``pooler``) is excluded.
- **Search cost per (dim, precision)** (:func:`measure_search`): bytes per vector and index bytes of the
  dataset's corpus, exact search time with the lab's own indexes (``core.retrieval.build_index``:
  ``IndexFlatIP`` for float32/float16, int8 codes with calibration ranges, ``IndexBinaryFlat`` with
  optional float rescoring), and approximate indexes from ``core.ann`` with their recall@k.
- **Machine fingerprint** (:func:`current_machine`): CPU model, cores, torch threads, torch version and
  architecture; every stored measurement is keyed by it, so curves from different machines (or thread
  counts) are never mixed silently.
- **Budget query** (:func:`best_under_budget`): the best cell within a cost budget, a pure function over
  any (quality higher-better, cost lower-better) pair. The Pareto front is ``core.views.pareto_front``.
- Storage glue (:func:`measure_checkpoint_cost`, :func:`cost_frame`, :func:`cost_columns`) and the
  ``python -m core cost`` subcommand (:func:`add_cost_parser`).

Timing numbers are measurements of this machine at this moment; no unit test asserts on them.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from sqlalchemy.orm import Session, sessionmaker

    from core.ann import AnnSpec
    from core.checkpoints import CheckpointSpec, LoadedCheckpoint

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)

ENCODING_KEYS: tuple[str, ...] = (
    "layer",
    "latency_ms_p50",
    "latency_ms_p95",
    "throughput_per_s",
    "flops_per_token",
    "params",
)
SEARCH_KEYS: tuple[str, ...] = (
    "dim",
    "precision",
    "index_kind",
    "bytes_per_vector",
    "index_bytes",
    "search_ms_per_query",
    "recall_at_k",
)
EXACT = "exact"


class CostError(ValueError):
    """A cost measurement or query that cannot be done as asked; the message names the bad input."""


# ---------------------------------------------------------------- machine fingerprint


@dataclass(frozen=True)
class Machine:
    """What the timings depend on. Two measurements are comparable only with equal fingerprints."""

    cpu_model: str
    logical_cores: int
    physical_cores: int
    torch_threads: int
    torch_version: str
    arch: str

    @property
    def fingerprint(self) -> str:
        """Hash of every field (32 hex chars)."""
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(b"mlab-machine-v1" + payload).hexdigest()[:32]

    @property
    def label(self) -> str:
        """Short human-readable description: ``AMD EPYC, 2 cores, 2 torch threads``."""
        return f"{self.cpu_model}, {self.logical_cores} cores, {self.torch_threads} torch threads"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields plus ``fingerprint``."""
        return {**asdict(self), "fingerprint": self.fingerprint}


def current_machine() -> Machine:
    """This machine as torch will run now (torch's current intra-op thread count)."""
    import psutil
    import torch

    from core.provenance import cpu_model

    logical = os.cpu_count() or 1
    return Machine(
        cpu_model=cpu_model(),
        logical_cores=logical,
        physical_cores=int(psutil.cpu_count(logical=False) or logical),
        torch_threads=int(torch.get_num_threads()),
        torch_version=str(torch.__version__),
        arch=platform.machine() or "unknown",
    )


# ---------------------------------------------------------------- analytic FLOPs and parameters


@dataclass(frozen=True)
class EncoderShape:
    """The sizes FLOPs and parameter counts are computed from, read off a loaded model.

    ``linear_weights[i]`` is the number of ``nn.Linear`` weights in layer i (biases excluded);
    ``layer_params[i]`` all parameters of layer i; ``base_params`` the encoder's parameters outside
    the layer stack (embeddings, a final norm), without an unused ``pooler``; ``post_params`` the
    parameters of the modules after the transformer (Pooling has none, Dense has some).
    """

    num_layers: int
    hidden_size: int
    attention_width: int
    linear_weights: tuple[int, ...]
    layer_params: tuple[int, ...]
    base_params: int
    post_params: int
    pooler_params: int


def _num_params(params: Iterable[torch.nn.Parameter], seen: set[int]) -> int:
    total = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += int(p.numel())
    return total


def layer_stack(encoder: Any) -> torch.nn.ModuleList:
    """The ``ModuleList`` of transformer layers of a Hugging Face encoder (same rule as ``truncated_copy``)."""
    import torch

    total = int(encoder.config.num_hidden_layers)
    stacks = [m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total]
    if not stacks:
        raise CostError(f"cannot find the layer stack of {type(encoder).__name__}")
    return stacks[0]


def encoder_shape(model: SentenceTransformer) -> EncoderShape:
    """Sizes of a sentence-transformers model's encoder, for :func:`flops_per_token` and :func:`params_used`."""
    import torch

    encoder: Any = model[0].auto_model
    config = encoder.config
    stack = layer_stack(encoder)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    linear = tuple(
        sum(int(m.weight.numel()) for m in layer.modules() if isinstance(m, torch.nn.Linear))
        for layer in stack
    )
    if not all(linear):
        raise CostError(f"{type(encoder).__name__} has layers without nn.Linear modules; FLOPs unknown")
    pooler = getattr(encoder, "pooler", None)
    seen: set[int] = set()
    layer_params = tuple(_num_params(layer.parameters(), seen) for layer in stack)
    pooler_params = _num_params(pooler.parameters(), seen) if isinstance(pooler, torch.nn.Module) else 0
    base = _num_params(encoder.parameters(), seen)  # what is left: embeddings, final norms
    post = _num_params(itertools.chain.from_iterable(m.parameters() for m in list(model)[1:]), seen)
    return EncoderShape(
        num_layers=len(stack),
        hidden_size=int(config.hidden_size),
        attention_width=heads * head_dim,
        linear_weights=linear,
        layer_params=layer_params,
        base_params=base,
        post_params=post,
        pooler_params=pooler_params,
    )


def _check_layers(shape: EncoderShape, layers: int) -> None:
    if not 0 <= layers <= shape.num_layers:
        raise CostError(f"layer {layers} is outside this checkpoint's layers 0..{shape.num_layers}")


def flops_per_token(shape: EncoderShape, layers: int, seq_len: int) -> int:
    """FLOPs per token of the first ``layers`` layers at sequence length ``seq_len`` (module docstring).

    >>> s = EncoderShape(1, 48, 48, (18432,), (0,), 0, 0, 0)  # one BERT layer, h=48, i=96
    >>> flops_per_token(s, 1, 32)  # 8*48**2 + 4*48*96 + 4*32*48
    43008
    """
    _check_layers(shape, layers)
    if seq_len < 1:
        raise CostError(f"seq_len must be >= 1, got {seq_len}")
    return sum(2 * w + 4 * seq_len * shape.attention_width for w in shape.linear_weights[:layers])


def params_used(shape: EncoderShape, layers: int) -> int:
    """Parameters a ``layers``-layer sub-model uses: embeddings (+ non-layer encoder parts), k layers, post modules."""
    _check_layers(shape, layers)
    return shape.base_params + sum(shape.layer_params[:layers]) + shape.post_params


# ---------------------------------------------------------------- encoding latency


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

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


def _timed(fn: Callable[[], Any]) -> float:
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
    """
    import torch

    if repeats < 1 or batch_repeats < 1 or warmup < 0:
        raise CostError(f"repeats ({repeats}) and batch repeats ({batch_repeats}) must be >= 1, warmup >= 0")
    shape = encoder_shape(model)
    wanted = sorted(set(layers))
    if not wanted:
        raise CostError("no layers to measure")
    for layer in wanted:
        _check_layers(shape, layer)
    single = synthetic_features(model, 1, seq_len)
    batch = synthetic_features(model, batch_size, seq_len)
    copies = {layer: truncated_sharing_weights(model, layer).eval() for layer in wanted}
    latencies: dict[int, list[float]] = {layer: [] for layer in wanted}
    batch_times: dict[int, list[float]] = {layer: [] for layer in wanted}
    with torch.inference_mode():
        for phase, feats, n_rounds, out in (
            ("latency", single, repeats, latencies),
            ("throughput", batch, batch_repeats, batch_times),
        ):
            for layer in wanted:
                for _ in range(warmup if phase == "latency" else min(warmup, 1)):
                    copies[layer](dict(feats))
            for r in range(n_rounds):
                order = wanted[r % len(wanted) :] + wanted[: r % len(wanted)]  # rotate the visiting order
                for layer in order:
                    out[layer].append(_timed(lambda c=copies[layer], f=feats: c(dict(f))))  # type: ignore[misc]
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
            )
        )
    return results


# ---------------------------------------------------------------- best sub-model under a budget


@dataclass(frozen=True)
class BudgetChoice:
    """The best sub-model within a cost budget."""

    checkpoint: str
    layer: int
    dim: int
    precision: str
    quality: float
    cost: float
    row: dict[str, Any] = field(default_factory=dict)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CostError(
            f"the table has no column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}"
        )


def best_under_budget(
    frame: pd.DataFrame, quality_col: str, cost_col: str, budget: float
) -> BudgetChoice | None:
    """The (checkpoint, layer, dim, precision) scoring highest with ``cost_col <= budget``; None if none fits.

    Ties on quality go to the cheaper cell, then to the first in (checkpoint, layer, dim, precision)
    order, so the answer is deterministic. Rows with NaN quality or cost are ignored. The checkpoint is
    named by the ``checkpoint`` column, else ``checkpoint_fp``.
    """
    name_col = "checkpoint" if "checkpoint" in frame.columns else "checkpoint_fp"
    _require_columns(frame, (quality_col, cost_col, name_col, "layer", "dim", "precision"))
    if budget is None or (isinstance(budget, float) and math.isnan(budget)):
        raise CostError(f"budget must be a number, got {budget!r}")
    quality = pd.to_numeric(frame[quality_col], errors="coerce")
    cost = pd.to_numeric(frame[cost_col], errors="coerce")
    fits = frame[quality.notna() & cost.notna() & (cost <= budget)].copy()
    if fits.empty:
        return None
    fits["_q"] = pd.to_numeric(fits[quality_col], errors="coerce")
    fits["_c"] = pd.to_numeric(fits[cost_col], errors="coerce")
    fits["_name"] = fits[name_col].astype(str)
    fits = fits.sort_values(
        ["_q", "_c", "_name", "layer", "dim", "precision"],
        ascending=[False, True, True, True, True, True],
        kind="stable",
    )
    best = fits.iloc[0]
    row = {k: v for k, v in fits.drop(columns=["_q", "_c", "_name"]).iloc[0].to_dict().items()}
    return BudgetChoice(
        checkpoint=str(best[name_col]),
        layer=int(best["layer"]),
        dim=int(best["dim"]),
        precision=str(best["precision"]),
        quality=float(best["_q"]),
        cost=float(best["_c"]),
        row=row,
    )


# ---------------------------------------------------------------- search cost per (dim, precision)


@dataclass(frozen=True)
class SearchMeasurement:
    """Bytes and search time of one (dim, precision, index kind) over a corpus.

    ``search_ms_per_query`` is the best of ``repeats`` batched searches of all queries divided by their
    number; ``search_ms_p50``/``p95`` time one query per call. ``recall_at_k`` is against exact search at
    the same precision (approximate indexes only, else None); ``recall_vs_float32`` against exact float32
    search at the same dim (so quantization, rescoring and approximation all count).
    """

    dim: int
    precision: str
    index_kind: str
    layer: int
    n_docs: int
    n_queries: int
    k: int
    bytes_per_vector: int
    index_bytes: int
    build_s: float
    search_ms_per_query: float
    search_ms_p50: float
    search_ms_p95: float
    recall_at_k: float | None
    recall_vs_float32: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)


def search_kinds(
    precisions: Sequence[str], rescore: int, ann_specs: Sequence[AnnSpec], n_docs: int
) -> list[tuple[str, str]]:
    """Every (precision, index kind) that :func:`measure_search` measures for these options."""
    kinds = [(p, EXACT) for p in precisions]
    if rescore > 0:
        kinds += [(p, f"{EXACT}+rescore{rescore}") for p in precisions if p in ("int8", "binary")]
    kinds += [(p, spec.label_for(n_docs)) for spec in ann_specs for p in precisions]
    return kinds


def _single_query_ms(search: Callable[[np.ndarray], Any], queries: np.ndarray, n: int) -> tuple[float, float]:
    """p50 and p95 (ms) of one-query searches over the first ``n`` queries (after one untimed call)."""
    sample = queries[: max(1, min(n, len(queries)))]
    search(sample[:1])
    times = [_timed(lambda q=q: search(q[None, :])) * 1e3 for q in sample]  # type: ignore[misc]
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


class _ExactIndexes:
    """Exact indexes of one corpus, built once per precision, with their build times."""

    def __init__(self, corpus: np.ndarray) -> None:
        self.corpus = corpus
        self.indexes: dict[str, Any] = {}
        self.build_s: dict[str, float] = {}

    def __call__(self, precision: str) -> Any:
        from core import retrieval

        if precision not in self.indexes:
            start = time.perf_counter()
            self.indexes[precision] = retrieval.build_index(self.corpus, precision)
            self.build_s[precision] = time.perf_counter() - start
        return self.indexes[precision]


def measure_search(
    corpus_emb: np.ndarray,
    query_emb: np.ndarray,
    dims: Sequence[int],
    precisions: Sequence[str] = ("float32", "float16", "int8", "binary"),
    k: int = 10,
    rescore: int = 0,
    ann_specs: Sequence[AnnSpec] = (),
    normalize: bool = True,
    repeats: int = 3,
    single_queries: int = 50,
    layer: int = 0,
    skip: Iterable[tuple[int, str, str]] = (),
    progress: ProgressFn | None = None,
) -> list[SearchMeasurement]:
    """Index bytes and search time per (dim, precision, index kind) of full-width corpus/query embeddings.

    Each dim is a truncation of the full-width matrices (``core.submodels.truncate``, normalized when
    ``normalize``). Exact indexes are ``core.retrieval.build_index``; with ``rescore > 0`` int8 and
    binary are also measured with float rescoring of the top ``rescore * k``; ``ann_specs`` adds
    approximate indexes (``core.ann``). Cells in ``skip`` ((dim, precision, index kind)) are not measured.

    Args:
        corpus_emb: (n_docs, width) float embeddings.
        query_emb: (n_queries, width) float embeddings.
        dims: dims to measure (each <= width).
        precisions: precisions to measure.
        k: hits per query.
        rescore: candidate multiplier for int8/binary rescoring (0: no rescoring rows).
        ann_specs: approximate indexes to measure at every (dim, precision).
        normalize: L2-normalize truncated vectors (cosine checkpoints).
        repeats: batched searches per cell (the best is kept).
        single_queries: queries timed one per call for p50/p95.
        layer: recorded with the rows (the layer the embeddings came from).
        skip: cells already stored.
        progress: called with ("search", done, total).
    """
    from core import ann, quantize, retrieval, submodels

    for p in precisions:
        quantize.check_precision(p)
    corpus_full = np.asarray(corpus_emb, dtype=np.float32)
    queries_full = np.asarray(query_emb, dtype=np.float32)
    if corpus_full.ndim != 2 or queries_full.ndim != 2 or corpus_full.shape[1] != queries_full.shape[1]:
        raise CostError(
            f"corpus {corpus_full.shape} and queries {queries_full.shape} must be (n, width) alike"
        )
    width = corpus_full.shape[1]
    bad = [d for d in dims if not 1 <= d <= width]
    if bad:
        raise CostError(f"dims {bad} are outside 1..{width}")
    n, nq = corpus_full.shape[0], queries_full.shape[0]
    skipped = set(skip)
    kinds = search_kinds(precisions, rescore, ann_specs, n)
    plan = [(d, p, kind) for d in dims for p, kind in kinds if (d, p, kind) not in skipped]
    total, done = len(plan), 0
    out: list[SearchMeasurement] = []
    for dim in sorted({d for d, _, _ in plan}):
        corpus = submodels.truncate(corpus_full, dim, normalize)  # (n_docs, dim)
        queries = submodels.truncate(queries_full, dim, normalize)  # (n_queries, dim)
        exact = _ExactIndexes(corpus)
        _, truth_idx = ann.plain_search(exact("float32"), queries, k)
        for precision, kind in [(p, kk) for d, p, kk in plan if d == dim]:
            spec = next((s for s in ann_specs if s.label_for(n) == kind), None)
            use_rescore = rescore if kind.startswith(f"{EXACT}+rescore") else 0
            index: retrieval.CorpusIndex | ann.AnnIndex
            if spec is None:  # exact, with or without rescoring: one index, its build time
                index = exact(precision)
                build_s = exact.build_s[precision]
            else:
                start = time.perf_counter()
                index = ann.build_ann_index(corpus, precision, spec)
                build_s = time.perf_counter() - start
            cal = ann.query_calibration(index)  # int8 ranges computed once, as a deployed index would
            best, idx = math.inf, np.empty((0, 0), dtype=np.int64)
            for _ in range(max(1, repeats)):
                elapsed = time.perf_counter()
                _, idx = ann.plain_search(index, queries, k, use_rescore, cal)
                best = min(best, time.perf_counter() - elapsed)
            p50, p95 = _single_query_ms(
                lambda q, index=index, r=use_rescore, c=cal: ann.plain_search(index, q, k, r, c),  # type: ignore[misc]
                queries,
                single_queries,
            )
            recall_same: float | None = None
            if spec is not None:
                _, exact_idx = ann.plain_search(exact(precision), queries, k)
                recall_same = ann.recall_at_k(idx, exact_idx, k)
            out.append(
                SearchMeasurement(
                    dim=dim,
                    precision=precision,
                    index_kind=kind,
                    layer=layer,
                    n_docs=n,
                    n_queries=nq,
                    k=k,
                    bytes_per_vector=quantize.bytes_per_vector(dim, precision),
                    index_bytes=retrieval.index_bytes(n, dim, precision),
                    build_s=build_s,
                    search_ms_per_query=best * 1e3 / max(1, nq),
                    search_ms_p50=p50,
                    search_ms_p95=p95,
                    recall_at_k=recall_same,
                    recall_vs_float32=ann.recall_at_k(idx, truth_idx, k),
                    details={
                        "rescore": use_rescore,
                        "repeats": repeats,
                        "single_queries": min(single_queries, nq),
                        "faiss_threads": retrieval.respect_torch_threads(),
                        **({"ann": spec.to_dict()} if spec is not None else {}),
                    },
                )
            )
            done += 1
            if progress:
                progress("search", done, total)
    return out


# ---------------------------------------------------------------- measure and store a checkpoint


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
    session_factory: sessionmaker[Session] | None = None,
    cache: Any = None,
    progress: ProgressFn | None = None,
) -> CostReport:
    """Measure (or reuse stored) encoding cost per layer and, with ``dataset``, search cost per cell.

    Stored rows are keyed by the machine fingerprint of this process (torch's current thread count
    included): a second call on the same machine reuses them unless ``remeasure``. Search is measured on
    the full layer's embeddings of the dataset's corpus and judged queries (retrieval datasets only).
    """
    from core import checkpoints, datasets, evaluate, provenance, registry, settings, submodels
    from storage import cost_repository, db, repository

    factory = session_factory or db.init_db()
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
            s, info.fingerprint, machine.fingerprint, batch_size, seq_len
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
            run_id = repository.start_run(
                s,
                "cost",
                info.fingerprint,
                dataset_fp,
                params,
                measured,
                {**provenance.collect_provenance(info.to_dict(), dataset_fp), "machine": machine.to_dict()},
            ).id
        try:
            if todo_layers:
                costs = measure_encoding(
                    loaded.model, todo_layers, batch_size, seq_len, repeats, batch_repeats, warmup, progress
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

                pooled = evaluate.encode_dataset(
                    loaded, data, [full], cache or submodels.EmbeddingCache(), report
                )
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
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            with factory() as s, s.begin():
                repository.finish_run(s, run_id, status, error_text=f"{type(exc).__name__}: {exc}")
            raise
        with factory() as s, s.begin():
            repository.finish_run(s, run_id, "completed")
    with factory() as s:
        enc = cost_repository.encoding_costs_frame(
            s, info.fingerprint, machine.fingerprint, batch_size, seq_len
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
) -> pd.DataFrame:
    """Stored costs, one row per (checkpoint_fp, layer, dim, precision), for joining onto result cells.

    Per checkpoint with any stored cost: layers 1..L (and 0 when measured) x dims (``dims``, default
    every dim 1..width, so any evaluated cell joins) x every precision (columns
    :data:`COST_FRAME_COLUMNS`). Never mixes machines: encoding columns all come from one (machine,
    batch size, seq len) - the given one, else the one covering most of the checkpoints (newest on a
    tie); a checkpoint not measured there gets NaN. Search columns come from ``index_kind`` rows on that
    machine for ``dataset_fp`` (default: each checkpoint's most recently measured dataset);
    ``index_bytes`` is ``n_docs * bytes_per_vector`` for every cell once the corpus size is known.
    """
    from core import quantize
    from storage import cost_repository, repository

    fps = (
        [checkpoint_fp]
        if isinstance(checkpoint_fp, str)
        else (list(checkpoint_fp) if checkpoint_fp else None)
    )
    enc = cost_repository.encoding_costs_frame(session, fps, machine_fp, batch_size, seq_len)
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
            "layer",
            "latency_ms_p50",
            "latency_ms_p95",
            "throughput_per_s",
            "flops_per_token",
            "params",
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
    from storage import cost_repository

    fps = list(checkpoint_fps) if checkpoint_fps is not None else None
    columns: list[str] = []
    if not cost_repository.encoding_costs_frame(session, fps).empty:
        columns += ["latency_ms_p50", "latency_ms_p95", "throughput_per_s", "flops_per_token", "params"]
    if not cost_repository.search_costs_frame(session, fps, index_kind=EXACT).empty:
        columns += ["index_bytes", "search_ms_per_query"]
    return [c for c in MEASURED_COLUMNS if c in columns]


# ---------------------------------------------------------------- python -m core cost


def add_cost_parser(subparsers: Any) -> None:
    """Register ``python -m core cost`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "cost",
        help="measure encoding latency, throughput, FLOPs and params per layer (and search cost per cell)",
        description="Measure (or reuse stored) cost of a checkpoint's sub-models on this machine. With --json, "
        "stdout is a JSON list: one object per layer (keys " + ", ".join(ENCODING_KEYS) + ", ...); with "
        "--dataset one object per (layer, dim, precision, index kind), adding the search columns.",
    )
    p.add_argument("--checkpoint", required=True, help="'default', a local folder, or org/name[@revision]")
    p.add_argument("--layers", default="all", help="comma-separated layers or 'all' (default: 1..L)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size for throughput (default 32)")
    p.add_argument("--seq-len", type=int, default=32, help="synthetic input length in tokens (default 32)")
    p.add_argument("--repeats", type=int, default=30, help="timed single-query runs per layer (default 30)")
    p.add_argument("--batch-repeats", type=int, default=5, help="timed batches per layer (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per layer first (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch (and faiss) threads (default: torch's)")
    p.add_argument("--dataset", help="also measure index bytes and search time on this retrieval dataset")
    p.add_argument("--dims", default=None, help="dims for search cost (default: 32, 64, ... full)")
    p.add_argument("--precision", default="float32,float16,int8,binary", help="precisions for search cost")
    p.add_argument("--k", type=int, default=10, help="hits per query for search cost (default 10)")
    p.add_argument(
        "--rescore", type=int, default=0, help="also int8/binary with float rescoring of top rescore*k"
    )
    p.add_argument(
        "--ann", default="", help="approximate indexes too: hnsw,ivf (knobs: hnsw:m=16:ef_search=128)"
    )
    p.add_argument("--remeasure", action="store_true", help="measure again even when stored")
    p.add_argument("--json", action="store_true", help="print a JSON list on stdout (nothing else)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_cost, keys=(*ENCODING_KEYS, "batch_size", "seq_len"))


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def cost_rows(report: CostReport) -> list[dict[str, Any]]:
    """The CLI rows of a report: per layer, or per (layer, dim, precision, index kind) with search costs."""
    layer_rows = []
    for rec in report.encoding.to_dict("records"):
        row = {key: _json_value(rec[key]) for key in ENCODING_KEYS}
        row.update(
            checkpoint=report.checkpoint.name,
            checkpoint_fingerprint=report.checkpoint.fingerprint,
            latency_ms_mean=_json_value(rec["latency_ms_mean"]),
            batch_ms_p50=_json_value(rec["batch_ms_p50"]),
            batch_size=int(rec["batch_size"]),
            seq_len=int(rec["seq_len"]),
            threads=report.machine.torch_threads,
            machine_fingerprint=report.machine.fingerprint,
            machine=report.machine.label,
        )
        layer_rows.append(row)
    if report.dataset_fp is None:
        return layer_rows
    search_keys = (
        *SEARCH_KEYS,
        "recall_vs_float32",
        "search_ms_p50",
        "search_ms_p95",
        "n_docs",
        "n_queries",
        "k",
    )
    search_rows = [
        {key: _json_value(rec[key]) for key in search_keys} for rec in report.search.to_dict("records")
    ]
    rank = {p: i for i, p in enumerate(("float32", "float16", "int8", "binary"))}
    search_rows.sort(
        key=lambda r: (r["index_kind"] != EXACT, r["index_kind"], rank.get(r["precision"], 9), r["dim"])
    )
    return [
        {**layer, **search, "dataset_fingerprint": report.dataset_fp}
        for layer in layer_rows
        for search in search_rows
    ]


def cmd_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``python -m core cost``: measure or reuse, then return the rows to print."""
    from core import ann, evaluate

    if args.threads is not None:
        if args.threads < 1:
            raise CostError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    layers = evaluate.parse_int_list(args.layers, "--layers")
    dims = evaluate.parse_int_list(args.dims, "--dims")
    precisions = evaluate.parse_precisions(args.precision)
    ann_specs = ann.parse_ann(args.ann)
    for name in ("batch_size", "seq_len", "repeats", "batch_repeats", "k"):
        if getattr(args, name) < 1:
            raise CostError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    progress = None
    if not args.quiet:
        from core.cli import _tqdm_progress

        progress = _tqdm_progress(True)
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        report = measure_checkpoint_cost(
            args.checkpoint,
            layers=layers,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            repeats=args.repeats,
            batch_repeats=args.batch_repeats,
            warmup=args.warmup,
            dataset=args.dataset,
            dims=dims,
            precisions=precisions,
            k=args.k,
            rescore=args.rescore,
            ann_specs=ann_specs,
            remeasure=args.remeasure,
            progress=progress,
        )
    print(
        f"{report.checkpoint.name} on {report.machine.label}: {report.measured} measured, {report.reused} reused"
        + (f" (run {report.run_id})" if report.run_id else ""),
        file=sys.stderr,
    )
    if args.dataset and not args.json:
        args.keys = (*ENCODING_KEYS, *SEARCH_KEYS)
    return cost_rows(report)
