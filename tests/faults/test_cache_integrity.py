"""Damaged or foreign embedding-cache entries and changed checkpoint weights: detected, recomputed.

The embedding cache stores one ``.npy`` per (checkpoint fingerprint, texts, layer, max length, prompt)
with a JSON sidecar holding the key, shape and sha256 of the array. These tests damage entries the way
disks and people do (truncation, flipped bytes, a broken sidecar, an entry copied from another
checkpoint, a cache from another format version) and change a checkpoint's weights in place after it
was evaluated; every time the engine must notice, re-encode, and give the numbers of a clean run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from core import checkpoints, submodels
from core.lab import evaluate
from core.lab.store import open_store
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

DIMS = [8, 48]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return build_tiny_checkpoint(tmp_path / "tiny", layers=2, hidden=48)


@pytest.fixture
def sts(tmp_path: Path) -> Path:
    return support.write_sts(tmp_path / "pairs.tsv", 30)


def _values(report: evaluate.GridReport) -> dict[tuple[int, int, str, str], float]:
    return {(int(r.layer), int(r.dim), r.precision, r.metric): r.value for r in report.frame.itertuples()}


def _clean_run(checkpoint: Path, sts: Path, tmp_path: Path) -> evaluate.GridReport:
    """The same grid from scratch: a fresh cache and database (the reference a repaired run must equal)."""
    return evaluate.evaluate_grid(
        str(checkpoint),
        str(sts),
        dims=DIMS,
        cache=EmbeddingCache(tmp_path / "clean"),
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'clean.sqlite3'}"),
    )


def _entries(cache_root: Path) -> list[Path]:
    return sorted(cache_root.rglob("*.npy"))


def _first_run(tiny: Path, sts: Path, cache: EmbeddingCache) -> evaluate.GridReport:
    report = evaluate.evaluate_grid(str(tiny), str(sts), dims=DIMS, cache=cache, session_factory=open_store())
    assert report.encoded_texts > 0
    return report


def _damage_truncate(npy: Path) -> None:
    data = npy.read_bytes()
    npy.write_bytes(data[: len(data) // 2])


def _damage_flip(npy: Path) -> None:
    data = bytearray(npy.read_bytes())
    data[-5] ^= 0xFF  # inside the float payload: same size, same shape, wrong numbers
    npy.write_bytes(bytes(data))


def _damage_sidecar(npy: Path) -> None:
    npy.with_suffix(".json").write_text('{"key": ')


def _damage_sidecar_not_object(npy: Path) -> None:
    npy.with_suffix(".json").write_text("[1, 2]")


def _damage_empty(npy: Path) -> None:
    npy.write_bytes(b"")


def _damage_missing_sidecar(npy: Path) -> None:
    npy.with_suffix(".json").unlink()


def _damage_sidecar_is_folder(npy: Path) -> None:
    sidecar = npy.with_suffix(".json")
    sidecar.unlink()
    sidecar.mkdir()
    (sidecar / "inside.txt").write_text("a folder where the sidecar was")


@pytest.mark.parametrize(
    "damage",
    [
        _damage_truncate,
        _damage_flip,
        _damage_sidecar,
        _damage_sidecar_not_object,
        _damage_empty,
        _damage_missing_sidecar,
        _damage_sidecar_is_folder,
    ],
    ids=[
        "truncated",
        "flipped-byte",
        "broken-sidecar",
        "sidecar-not-object",
        "empty-file",
        "missing-sidecar",
        "sidecar-is-a-folder",
    ],
)
def test_damaged_cache_entry_is_detected_and_recomputed(
    tiny: Path, sts: Path, tmp_path: Path, damage
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    first = _first_run(tiny, sts, cache)
    entries = _entries(cache.root)
    assert len(entries) == 3  # layers 0, 1, 2 of the unique sentences
    for npy in entries:
        damage(npy)
    again = evaluate.evaluate_grid(
        str(tiny), str(sts), dims=DIMS, cache=cache, recompute=True, session_factory=open_store()
    )
    assert again.encoded_texts == first.encoded_texts  # damaged entries were not used: re-encoded
    assert _values(again) == pytest.approx(_values(first), abs=1e-6)
    for npy in _entries(cache.root):  # and replaced by valid entries
        meta = json.loads(npy.with_suffix(".json").read_text())
        assert cache.get(meta["key"]) is not None
    third = evaluate.evaluate_grid(str(tiny), str(sts), dims=[16], cache=cache, session_factory=open_store())
    assert third.encoded_texts == 0  # the repaired cache is used again


def test_entry_copied_from_another_checkpoint_is_refused(tmp_path: Path, sts: Path) -> None:
    first = build_tiny_checkpoint(tmp_path / "a", layers=2, hidden=48, seed=0)
    second = build_tiny_checkpoint(tmp_path / "b", layers=2, hidden=48, seed=1)
    cache = EmbeddingCache(tmp_path / "cache")
    report_a = _first_run(first, sts, cache)
    loaded_b = checkpoints.load(str(second))
    # Forge: put checkpoint a's entries (array and sidecar) where checkpoint b's entries would live.
    texts = _sts_texts(sts)
    unique, _ = submodels.unique_with_rows(texts)
    texts_fp = submodels.texts_fingerprint(unique)
    for layer in range(3):
        length = loaded_b.info.max_seq_length
        key_a = EmbeddingCache.key(report_a.checkpoint.fingerprint, texts_fp, layer, length, None)
        key_b = EmbeddingCache.key(loaded_b.info.fingerprint, texts_fp, layer, length, None)
        src_npy, src_meta = cache._paths(key_a)
        dst_npy, dst_meta = cache._paths(key_b)
        assert src_npy.is_file()
        dst_npy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src_npy, dst_npy)
        shutil.copy(src_meta, dst_meta)
        assert cache.get(key_b) is None  # the sidecar's key names checkpoint a: refused
    report_b = evaluate.evaluate_grid(
        str(second), str(sts), dims=DIMS, cache=cache, session_factory=open_store()
    )
    assert report_b.encoded_texts == report_a.encoded_texts
    clean = _clean_run(second, sts, tmp_path)
    assert _values(report_b) == pytest.approx(_values(clean), abs=1e-6)


def _sts_texts(sts: Path) -> list[str]:
    from core import datasets

    data = datasets.load_sts(sts)
    return [*data.sentences1, *data.sentences2]


def test_cache_of_another_format_version_is_not_reused(
    tiny: Path, sts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    monkeypatch.setattr(submodels, "CACHE_FORMAT_VERSION", 0)  # entries written by an older lab
    old = _first_run(tiny, sts, cache)
    monkeypatch.setattr(submodels, "CACHE_FORMAT_VERSION", 1)
    new = evaluate.evaluate_grid(
        str(tiny), str(sts), dims=DIMS, cache=cache, recompute=True, session_factory=open_store()
    )
    assert new.encoded_texts == old.encoded_texts  # keys differ by format: nothing reused
    assert _values(new) == pytest.approx(_values(old), abs=1e-6)


def test_weights_changed_after_evaluation_give_new_results_never_the_old(
    tiny: Path, sts: Path, tmp_path: Path
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    before = _first_run(tiny, sts, cache)
    weights = tiny / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(
        k for k in tensors if "encoder.layer.0" in k and k.endswith("weight") and tensors[k].ndim == 2
    )
    tensors[name] = tensors[name] * 1.5  # same file size, same shapes, different model
    size = weights.stat().st_size
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert weights.stat().st_size == size

    after = evaluate.evaluate_grid(str(tiny), str(sts), dims=DIMS, cache=cache, session_factory=open_store())
    assert after.checkpoint.fingerprint != before.checkpoint.fingerprint
    assert after.computed == len(after.frame) // 2 and after.reused == 0  # nothing reused
    assert after.encoded_texts > 0  # the old embeddings were not reused either
    assert _values(after) != pytest.approx(_values(before), abs=1e-6)
    clean = _clean_run(tiny, sts, tmp_path)
    assert _values(after) == pytest.approx(_values(clean), abs=1e-6)
    # Both versions stay in the database under their own fingerprints; the old numbers are kept.
    with open_store()() as s:
        fingerprints = {r.fingerprint for r in repository.list_checkpoints(s)}
        old_frame = repository.results_frame(s, checkpoint_fp=before.checkpoint.fingerprint)
    assert fingerprints == {before.checkpoint.fingerprint, after.checkpoint.fingerprint}
    assert len(old_frame) == len(before.frame)


def test_temporary_files_of_a_killed_writer_are_removed_on_the_next_start(
    tiny: Path, sts: Path, tmp_path: Path
) -> None:
    """``kill -9`` while encoding leaves ``.PID-*.npy.tmp``; the next cache on that folder deletes the
    files of writers that are gone and keeps those of live ones (a concurrent encoder)."""
    import os
    import subprocess
    import sys

    root = tmp_path / "cache"
    first = _first_run(tiny, sts, EmbeddingCache(root))
    folder = _entries(root)[0].parent
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(gone.stdout)
    stale = [folder / f".{dead_pid}-abc.npy.tmp", folder / f".{dead_pid}-def.tmp"]
    live = folder / f".{os.getpid()}-xyz.npy.tmp"
    legacy_old, legacy_new = folder / "tmpold.npy.tmp", folder / "tmpnew.npy.tmp"
    for path in [*stale, live, legacy_old, legacy_new]:
        path.write_bytes(b"\x93NUMPY half written")
    os.utime(legacy_old, (0, 0))  # a temporary without a pid, older than a day
    submodels._swept_roots.discard(root)  # a new process starting on this folder
    cache = EmbeddingCache(root)
    assert not any(p.exists() for p in [*stale, legacy_old])
    assert live.exists() and legacy_new.exists()
    again = evaluate.evaluate_grid(
        str(tiny), str(sts), dims=DIMS, cache=cache, recompute=True, session_factory=open_store()
    )
    assert again.encoded_texts == 0 and _values(again) == pytest.approx(_values(first), abs=1e-6)
