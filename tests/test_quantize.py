"""core.quantize: bytes per vector, quantization and pair similarity on hand-computed small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.quantize import (
    PRECISIONS,
    PrecisionError,
    bytes_per_vector,
    int8_ranges,
    popcount,
    quantize,
    similarity,
)


@pytest.mark.parametrize(
    ("dim", "precision", "expected"),
    [
        (384, "float32", 1536),
        (384, "float16", 768),
        (384, "int8", 384),
        (384, "binary", 48),
        (10, "binary", 2),
        (1, "binary", 1),
        (33, "float16", 66),
    ],
)
def test_bytes_per_vector(dim: int, precision: str, expected: int) -> None:
    assert bytes_per_vector(dim, precision) == expected


def test_bytes_per_vector_rejects_bad_input() -> None:
    with pytest.raises(PrecisionError, match="int4"):
        bytes_per_vector(8, "int4")
    with pytest.raises(PrecisionError):
        bytes_per_vector(0, "float32")


def test_binary_hand_computed() -> None:
    # bits x > 0: [1, 0, 0, 1] -> 0b10010000 = 144 (0 is not > 0)
    assert quantize(np.array([[0.5, -1.0, 0.0, 2.0]]), "binary").tolist() == [[144]]
    # 10 dims -> 2 bytes, padding bits zero: bits 1111111111 -> [255, 0b11000000]
    packed = quantize(np.ones((1, 10)), "binary")
    assert packed.dtype == np.uint8 and packed.tolist() == [[255, 192]]


def test_int8_hand_computed() -> None:
    # ranges min (0, 0), max (255, 510): step (1, 2) exactly; code = floor((x - min) / step) - 128, clipped
    calibration = np.array([[0.0, 0.0], [255.0, 510.0]], dtype=np.float32)
    emb = np.array([[0.0, 0.0], [255.0, 510.0], [127.5, 255.0], [300.0, -10.0]], dtype=np.float32)
    codes = quantize(emb, "int8", calibration)
    assert codes.dtype == np.int8
    # min -> 0 - 128; max -> 255 - 128; middle -> floor(127.5) - 128 = -1; out of range clipped
    assert codes.tolist() == [[-128, -128], [127, 127], [-1, -1], [127, -128]]
    assert int8_ranges(calibration).tolist() == [[0.0, 0.0], [255.0, 510.0]]


def test_int8_default_calibration_is_the_input_and_matches_formula() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(40, 16)).astype(np.float32)
    lo, hi = emb.min(axis=0), emb.max(axis=0)
    steps = (hi - lo) / np.float32(255)
    expected = (np.clip(np.floor((emb - lo) / steps), 0, 255) - 128).astype(np.int8)
    np.testing.assert_array_equal(quantize(emb, "int8"), expected)
    np.testing.assert_array_equal(quantize(emb, "int8", emb), expected)


def test_float_precisions() -> None:
    emb = np.array([[1.0001, -2.5]], dtype=np.float64)
    assert quantize(emb, "float32").dtype == np.float32
    half = quantize(emb, "float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, emb.astype(np.float16))


def test_quantize_rejects_bad_input() -> None:
    with pytest.raises(PrecisionError):
        quantize(np.zeros(4), "int8")  # 1-D
    with pytest.raises(PrecisionError):
        quantize(np.zeros((2, 4)), "int8", np.zeros((2, 3)))
    with pytest.raises(PrecisionError):
        quantize(np.zeros((2, 4)), "bfloat16")


def test_popcount() -> None:
    assert popcount(np.array([[255, 1], [0, 0], [3, 128]], dtype=np.uint8)).tolist() == [9, 0, 3]


def test_similarity_float_hand_computed() -> None:
    a = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[4.0, 3.0], [-2.0, 0.0], [1.0, 1.0]])
    # 24/25; opposite directions -1; zero vector -> 0
    for precision in ("float32", "float16"):
        np.testing.assert_allclose(similarity(a, b, precision), [0.96, -1.0, 0.0], atol=1e-12)


def test_similarity_binary_hand_computed() -> None:
    a = np.array([[1.0, -1.0, 1.0, -1.0], [0.3, 0.3, 0.3, 0.3]])
    b = np.array([[1.0, 1.0, -1.0, -1.0], [0.1, 0.2, 0.3, 0.4]])
    # row 0: bits 1010 vs 1100 -> hamming 2 -> 1 - 2/4; row 1: identical bits -> 1
    np.testing.assert_allclose(similarity(a, b, "binary"), [0.5, 1.0])


def test_similarity_binary_odd_dim_ignores_padding() -> None:
    a = np.array([[1.0, 1.0, 1.0, 1.0, 1.0]])
    b = np.array([[1.0, -1.0, 1.0, 1.0, 1.0]])
    assert similarity(a, b, "binary").tolist() == [1.0 - 1 / 5]


def test_similarity_int8_hand_computed() -> None:
    calibration = np.array([[0.0, 0.0], [255.0, 255.0]])  # step 1
    a = np.array([[255.0, 0.0]])  # codes (127, -128)
    b = np.array([[0.0, 255.0]])  # codes (-128, 127)
    # cosine of codes: (127 * -128 + -128 * 127) / (127^2 + 128^2) = -32512 / 32513
    assert similarity(a, b, "int8", calibration)[0] == pytest.approx(-32512 / 32513, abs=1e-15)


def test_similarity_int8_default_calibration_is_both_sides() -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(size=(30, 8))
    b = rng.normal(size=(30, 8))
    both = np.vstack((a, b))
    qa = quantize(a, "int8", both).astype(np.float64)
    qb = quantize(b, "int8", both).astype(np.float64)
    expected = np.sum(qa * qb, axis=1) / (np.linalg.norm(qa, axis=1) * np.linalg.norm(qb, axis=1))
    np.testing.assert_allclose(similarity(a, b, "int8"), expected, atol=1e-12)


def test_similarity_tracks_float_cosine_on_random_vectors() -> None:
    # A loose sanity check (measured here: float16 1.0000, int8 0.93, binary 0.61 at dim 64).
    rng = np.random.default_rng(5)
    a = rng.normal(size=(200, 64))
    b = a + rng.normal(scale=1.0, size=(200, 64))
    float_sim = similarity(a, b, "float32")
    for precision in PRECISIONS:
        sim = similarity(a, b, precision)
        assert sim.shape == (200,) and np.isfinite(sim).all()
        floor = {"float32": 0.999999, "float16": 0.9999, "int8": 0.85, "binary": 0.5}[precision]
        assert np.corrcoef(sim, float_sim)[0, 1] > floor


def test_similarity_shape_mismatch() -> None:
    with pytest.raises(PrecisionError):
        similarity(np.zeros((2, 4)), np.zeros((3, 4)), "float32")
    assert math.isfinite(similarity(np.ones((1, 3)), np.ones((1, 3)), "float32")[0])
