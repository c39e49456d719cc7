"""Names shared by every part of the cost package: column keys, the exact-index kind, its error type."""

from __future__ import annotations

from collections.abc import Callable

from common.errors import LabError

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


class CostError(LabError):
    """A cost measurement or query that cannot be done as asked; the message names the bad input."""
