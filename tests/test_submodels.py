"""The two engine invariants, the cache, and de-duplication, on a tiny real checkpoint and the default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import checkpoints, submodels
from tests.tinymodel import build_tiny_checkpoint

TEXTS = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field.",
    "short",
    "A man is playing a guitar.",  # duplicate on purpose
    "The stock market fell sharply on Monday after the announcement of new tariffs on imported steel.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> checkpoints.LoadedCheckpoint:
    folder = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layers=3, hidden=48)
    return checkpoints.load(str(folder))


def test_full_cell_equals_encode(tiny: checkpoints.LoadedCheckpoint) -> None:
    pooled = submodels.encode_all_layers(tiny.model, TEXTS, layers=[3], batch_size=2)
    reference = tiny.model.encode(TEXTS, batch_size=2)
    full = submodels.truncate(pooled[3], tiny.info.embedding_dim)
    np.testing.assert_allclose(full, reference, atol=1e-5)


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize("dim", [8, 17, 48])
def test_cell_equals_truncated_copy(tiny: checkpoints.LoadedCheckpoint, layer: int, dim: int) -> None:
    pooled = submodels.encode_all_layers(tiny.model, TEXTS, layers=[layer])
    cut = submodels.truncated_copy(tiny.model, layer)
    assert len(cut[0].auto_model.encoder.layer) == layer
    reference = submodels.truncate(cut.encode(TEXTS), dim)
    np.testing.assert_allclose(submodels.truncate(pooled[layer], dim), reference, atol=1e-5)


def test_truncated_copy_leaves_shared_model_intact(tiny: checkpoints.LoadedCheckpoint) -> None:
    submodels.truncated_copy(tiny.model, 1)
    assert len(tiny.model[0].auto_model.encoder.layer) == 3
    assert tiny.model[0].auto_model.config.num_hidden_layers == 3


def test_truncate_normalizes_rows_and_keeps_zero_rows() -> None:
    pooled = np.array([[3.0, 4.0, 12.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    out = submodels.truncate(pooled, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(submodels.truncate(pooled, 2, normalize=False), [[3, 4], [0, 0]])


def test_cache_hit_runs_no_forward_pass_and_dedupes(
    tiny: checkpoints.LoadedCheckpoint, tmp_path: Path
) -> None:
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    first = submodels.pooled_embeddings(tiny, TEXTS, layers=[1, 3], cache=cache)
    assert first.encoded == 4  # 5 texts, one duplicate
    assert len(first.unique_texts) == 4
    second = submodels.pooled_embeddings(tiny, TEXTS, layers=[0, 2, 3], cache=cache)
    assert second.encoded == 0  # every layer was stored by the first pass
    for layer in (1, 3):
        np.testing.assert_array_equal(
            first.matrix(layer), second.matrix(layer) if layer == 3 else first.matrix(layer)
        )
    np.testing.assert_array_equal(second.matrix(3)[0], second.matrix(3)[3])


def test_corrupt_cache_entry_is_recomputed(tiny: checkpoints.LoadedCheckpoint, tmp_path: Path) -> None:
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    good = submodels.pooled_embeddings(tiny, TEXTS, layers=[2], cache=cache).matrix(2).copy()
    for npy in (tmp_path / "cache").rglob("*.npy"):
        raw = bytearray(npy.read_bytes())
        raw[-4:] = b"\xff\xff\xff\x7f"
        npy.write_bytes(bytes(raw))
    again = submodels.pooled_embeddings(tiny, TEXTS, layers=[2], cache=cache)
    assert again.encoded == 4
    np.testing.assert_allclose(again.matrix(2), good, atol=1e-6)


def test_cache_is_keyed_by_checkpoint_fingerprint(tmp_path: Path) -> None:
    cache = submodels.EmbeddingCache(tmp_path / "cache")
    a = checkpoints.load(str(build_tiny_checkpoint(tmp_path / "a", seed=1)))
    b = checkpoints.load(str(build_tiny_checkpoint(tmp_path / "b", seed=2)))
    assert a.info.fingerprint != b.info.fingerprint
    submodels.pooled_embeddings(a, TEXTS, layers=[3], cache=cache)
    assert submodels.pooled_embeddings(b, TEXTS, layers=[3], cache=cache).encoded == 4


def test_validate_submodel_refuses_out_of_range() -> None:
    for bad in (
        submodels.SubModel(7, 32),
        submodels.SubModel(1, 0),
        submodels.SubModel(1, 385),
        submodels.SubModel(1, 32, "int4"),
        submodels.SubModel(-1, 32),
    ):
        with pytest.raises(submodels.SubModelError):
            submodels.validate_submodel(bad, num_layers=6, width=384)
    submodels.validate_submodel(submodels.SubModel(0, 384, "binary"), num_layers=6, width=384)


def test_default_dims_and_diagonal() -> None:
    assert submodels.default_dims(384) == [32, 64, 128, 256, 384]
    assert submodels.default_dims(768) == [32, 64, 128, 256, 512, 768]
    assert submodels.default_diagonal(6, 384) == [(1, 32), (2, 64), (3, 128), (4, 192), (5, 256), (6, 384)]


@pytest.mark.slow
def test_default_checkpoint_invariants() -> None:
    loaded = checkpoints.load("default")
    assert (loaded.info.num_layers, loaded.info.embedding_dim, loaded.info.pooling) == (6, 384, "mean")
    pooled = submodels.encode_all_layers(loaded.model, TEXTS, layers=[2, 6])
    np.testing.assert_allclose(submodels.truncate(pooled[6], 384), loaded.model.encode(TEXTS), atol=1e-5)
    cut = submodels.truncated_copy(loaded.model, 2)
    np.testing.assert_allclose(
        submodels.truncate(pooled[2], 64), submodels.truncate(cut.encode(TEXTS), 64), atol=1e-5
    )
