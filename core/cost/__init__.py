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
Storing measurements is the orchestration layer's job (``core.lab.cost``); the command line is
``core.cli.cost``.

Timing numbers are measurements of this machine at this moment; no unit test asserts on them.
"""

from __future__ import annotations

from core.cost.budget import BudgetChoice, best_under_budget
from core.cost.encoding import EncodingCost, measure_encoding, synthetic_features, truncated_sharing_weights
from core.cost.flops import EncoderShape, encoder_shape, flops_per_token, layer_stack, params_used
from core.cost.keys import ENCODING_KEYS, EXACT, SEARCH_KEYS, CostError, ProgressFn
from core.cost.machine import Machine, current_machine
from core.cost.search import SearchMeasurement, measure_search, search_kinds

__all__ = [
    "ENCODING_KEYS",
    "EXACT",
    "SEARCH_KEYS",
    "BudgetChoice",
    "CostError",
    "EncoderShape",
    "EncodingCost",
    "Machine",
    "ProgressFn",
    "SearchMeasurement",
    "best_under_budget",
    "current_machine",
    "encoder_shape",
    "flops_per_token",
    "layer_stack",
    "measure_encoding",
    "measure_search",
    "params_used",
    "search_kinds",
    "synthetic_features",
    "truncated_sharing_weights",
]
