"""Embedding precision: bytes per vector, quantization (float16, int8, binary) and pairwise similarity.

Quantization follows sentence-transformers' ``quantize_embeddings``:

- ``float32``: unchanged (a float32 copy); ``float16``: a numpy cast.
- ``int8``: per dimension, the calibration set's [min, max] is cut into 255 equal steps and a value
  becomes ``floor((x - min) / step) - 128`` (clipped to [-128, 127]). The calibration set is the corpus
  by default (retrieval; queries use the corpus ranges) or both sides of the pairs (STS).
- ``binary``: one bit per dimension, ``x > 0``, packed with ``np.packbits`` (sentence-transformers'
  ``ubinary``): ``ceil(dim / 8)`` uint8 bytes, padding bits zero.

Similarity of row pairs at a precision (:func:`similarity`), the one used for STS scores:

- float32 / float16: cosine, i.e. the dot product of L2-normalized vectors (float16 values first cast).
- int8: cosine of the int8 code vectors, computed exactly in int64 then normalized. This is the
  arithmetic an int8 index does (integer inner products of codes), not a dequantized approximation
  of the float cosine, so STS and retrieval measure the same deployed representation.
- binary: ``1 - hamming / dim`` (the fraction of agreeing sign bits).

A zero vector has cosine 0 with anything. This module does no search (see ``core.retrieval``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from common.errors import LabError

PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "binary")


class PrecisionError(LabError):
    """An unknown precision or embeddings that cannot be quantized."""


def check_precision(precision: str) -> None:
    """Raise PrecisionError unless ``precision`` is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")


def bytes_per_vector(dim: int, precision: str) -> int:
    """Storage of one vector: float32 4*d, float16 2*d, int8 d, binary ceil(d/8) bytes."""
    check_precision(precision)
    if dim < 1:
        raise PrecisionError(f"dim must be >= 1, got {dim}")
    return {"float32": 4 * dim, "float16": 2 * dim, "int8": dim, "binary": math.ceil(dim / 8)}[precision]


def _as_matrix(emb: Any, what: str) -> np.ndarray:
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise PrecisionError(f"{what} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise PrecisionError(f"{what} must be numeric, got dtype {arr.dtype}")
    return arr


def int8_ranges(calibration: np.ndarray) -> np.ndarray:
    """Per-dimension (min, max) of the calibration embeddings, shape (2, dim), as used for int8."""
    cal = _as_matrix(calibration, "calibration embeddings").astype(np.float32, copy=False)
    if cal.shape[0] == 0:
        raise PrecisionError("calibration embeddings are empty")
    return np.vstack((cal.min(axis=0), cal.max(axis=0)))


def quantize(emb: np.ndarray, precision: str, calibration: np.ndarray | None = None) -> np.ndarray:
    """Embeddings (n, dim) at ``precision``: float32/float16 (n, dim), int8 (n, dim), binary (n, ceil(dim/8)) uint8.

    Args:
        emb: float embeddings, one row per text.
        precision: one of PRECISIONS.
        calibration: int8 only - embeddings whose per-dimension min/max set the buckets (default ``emb``).

    >>> quantize(np.array([[0.5, -1.0, 0.0, 2.0]]), "binary")
    array([[144]], dtype=uint8)
    """
    check_precision(precision)
    arr = _as_matrix(emb, "embeddings").astype(np.float32, copy=False)
    if precision == "float32":
        return arr.copy()
    if precision == "float16":
        return arr.astype(np.float16)
    from sentence_transformers.util.quantization import quantize_embeddings  # heavy: imported on first use

    if precision == "binary":
        return np.asarray(quantize_embeddings(arr, precision="ubinary"), dtype=np.uint8)
    cal = arr if calibration is None else _as_matrix(calibration, "calibration embeddings").astype(np.float32)
    if cal.shape[1] != arr.shape[1]:
        raise PrecisionError(f"calibration has dim {cal.shape[1]}, embeddings have dim {arr.shape[1]}")
    if cal.shape[0] == 0:
        raise PrecisionError("calibration embeddings are empty")
    if arr.shape[0] == 0:
        return np.zeros(arr.shape, dtype=np.int8)
    return np.asarray(quantize_embeddings(arr, precision="int8", calibration_embeddings=cal), dtype=np.int8)


def popcount(packed: np.ndarray) -> np.ndarray:
    """Number of set bits per row of a packed uint8 matrix, as int64."""
    return np.unpackbits(np.ascontiguousarray(packed, dtype=np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dots = np.einsum("ij,ij->i", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out = np.zeros(len(a), dtype=np.float64)
    np.divide(dots, norms, out=out, where=norms > 0)
    return out


def similarity(
    a: np.ndarray, b: np.ndarray, precision: str, calibration: np.ndarray | None = None
) -> np.ndarray:
    """Row-wise similarity of pairs (a[i], b[i]) at ``precision``, shape (n,) float64 (module docstring).

    Args:
        a, b: float embeddings (n, dim) of the two sides of each pair.
        precision: one of PRECISIONS.
        calibration: int8 only - calibration embeddings (default: a and b stacked).
    """
    check_precision(precision)
    left, right = _as_matrix(a, "a"), _as_matrix(b, "b")
    if left.shape != right.shape:
        raise PrecisionError(f"a has shape {left.shape}, b has shape {right.shape}")
    dim = left.shape[1]
    if precision in ("float32", "float16"):
        dtype = np.float32 if precision == "float32" else np.float16
        return _row_cosine(left.astype(dtype).astype(np.float64), right.astype(dtype).astype(np.float64))
    if precision == "int8":
        cal = np.vstack((left, right)) if calibration is None else calibration
        qa = quantize(left, "int8", cal).astype(np.int64)
        qb = quantize(right, "int8", cal).astype(np.int64)
        dots = np.einsum("ij,ij->i", qa, qb).astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", qa, qa).astype(np.float64) * np.einsum("ij,ij->i", qb, qb))
        out = np.zeros(len(qa), dtype=np.float64)
        np.divide(dots, norms, out=out, where=norms > 0)
        return out
    hamming = popcount(np.bitwise_xor(quantize(left, "binary"), quantize(right, "binary")))
    return 1.0 - hamming.astype(np.float64) / dim
