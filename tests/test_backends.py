"""Deployment backends: the engine's all-layer pass on ONNX Runtime and bfloat16 against torch float32.

Real data: the default checkpoint (all-MiniLM-L6-v2) on the first 120 pairs of STS-B test; the ``onnx``
cells equal the ``torch`` cells within 1e-4, and the deviations of ``torch-bf16`` and ``onnx-int8`` are
measured (and bounded loosely, so a broken backend fails, not a slightly lossy one).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core import backends, checkpoints, datasets, scoring, submodels
from core.lab.evaluate import evaluate_grid
from core.submodels import EmbeddingCache
from tests.tinymodel import build_tiny_checkpoint, maskless_checkpoint

TEXTS = ["A man is playing a guitar.", "Stocks fell.", "x", "A much longer sentence " * 6]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> checkpoints.LoadedCheckpoint:
    return checkpoints.load(str(build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")))


@pytest.fixture(scope="module")
def default() -> checkpoints.LoadedCheckpoint:
    return checkpoints.load("default")


@pytest.fixture(scope="module")
def stsb_slice() -> datasets.STSData:
    data = datasets.load_dataset(datasets.resolve_dataset("stsb-test"))
    assert isinstance(data, datasets.STSData)
    n = 120
    return datasets.STSData(data.sentences1[:n], data.sentences2[:n], data.scores[:n])


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One lab home for this module's default-model tests, so its graph is exported once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def graph_root(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLAB_HOME", str(shared_home))
    return backends.graph_dir()


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "torch-bf16"])
def test_hidden_states_of_every_layer_follow_torch(
    tiny: checkpoints.LoadedCheckpoint, graph_root: Path, backend: str
) -> None:
    features = tiny.model.preprocess(TEXTS)
    reference = backends.TorchRunner(tiny.model)(features)
    got = backends.runner_for(tiny.model, tiny.info.fingerprint, backend, root=graph_root)(features)
    assert len(got) == len(reference) == tiny.info.num_layers + 1
    tol = {"onnx": 1e-4, "onnx-int8": 0.5, "torch-bf16": 0.1}[backend]
    for a, b in zip(got, reference, strict=True):
        assert a.dtype == b.dtype  # float32 out of every backend
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=tol)


def _cells(loaded: checkpoints.LoadedCheckpoint, data: datasets.STSData, backend: str) -> dict:
    pooled = scoring.encode_dataset(loaded, data, range(1, 7), cache=None, backend=backend)
    cells = scoring.plan_cells(loaded.info, layers=[1, 3, 6], dims=[32, 128, 384])
    return {c.sub: c for c in scoring.score_cells(loaded.info, data, pooled, cells)}


def test_onnx_cells_equal_torch_cells_on_stsb(
    default: checkpoints.LoadedCheckpoint, stsb_slice: datasets.STSData, graph_root: Path
) -> None:
    torch_cells = _cells(default, stsb_slice, "torch")
    onnx_cells = _cells(default, stsb_slice, "onnx")
    assert torch_cells.keys() == onnx_cells.keys()
    for sub, cell in torch_cells.items():
        for name, value in cell.metrics.items():
            assert abs(onnx_cells[sub].metrics[name] - value) <= 1e-4, (sub, name)
        np.testing.assert_allclose(
            onnx_cells[sub].items["pair_similarity"], cell.items["pair_similarity"], atol=1e-4
        )


@pytest.mark.parametrize(
    ("backend", "max_delta", "min_cosine"), [("torch-bf16", 0.01, 0.999), ("onnx-int8", 0.05, 0.95)]
)
def test_lossy_backends_deviation_is_measured(
    default: checkpoints.LoadedCheckpoint,
    stsb_slice: datasets.STSData,
    graph_root: Path,
    backend: str,
    max_delta: float,
    min_cosine: float,
) -> None:
    texts = [*stsb_slice.sentences1[:40], *stsb_slice.sentences2[:40]]
    ref = submodels.encode_all_layers(default.model, texts, [6])[6]
    runner = backends.runner_for(default.model, default.info.fingerprint, backend)
    got = submodels.encode_all_layers(default.model, texts, [6], runner=runner)[6]
    cosine = (submodels.truncate(ref, 384) * submodels.truncate(got, 384)).sum(axis=1)
    assert np.max(np.abs(ref - got)) > 0  # it is a different computation, not the torch path again
    assert cosine.min() >= min_cosine, f"{backend}: min cosine {cosine.min():.5f}"
    deviation = backends.embedding_deviation(ref, got)
    assert deviation["min_cosine"] == pytest.approx(float(cosine.min()), abs=1e-6)
    assert 0 < deviation["max_abs"] <= max_delta * 10
    print(f"{backend}: {deviation}")  # the measured deviation, in the test log


def test_backend_has_its_own_cache_entries(tiny: checkpoints.LoadedCheckpoint, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    first = submodels.pooled_embeddings(tiny, TEXTS, [2], cache, backend="onnx")
    assert first.encoded == len(TEXTS)
    again = submodels.pooled_embeddings(tiny, TEXTS, [2], cache, backend="onnx")
    assert again.encoded == 0  # an onnx hit
    torch_run = submodels.pooled_embeddings(tiny, TEXTS, [2], cache)
    assert torch_run.encoded == len(TEXTS)  # not served from the onnx entry
    np.testing.assert_allclose(first.matrix(2), torch_run.matrix(2), atol=1e-5)
    torch_key = EmbeddingCache.key("fp", "texts", 1, 128, None)
    assert "backend" not in torch_key  # torch entries keep their old key: caches built before stay valid
    assert EmbeddingCache.key("fp", "texts", 1, 128, None, "onnx")["backend"] == "onnx"
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    assert {m["key"].get("backend", "torch") for m in metas} == {"torch", "onnx"}


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(backends.BackendError, match="unknown backend 'tensorrt'; choose from torch"):
        backends.check_backend("tensorrt")
    with pytest.raises(backends.BackendError, match="unknown backend"):
        backends.parse_backends("torch,gpu")
    assert backends.parse_backends("onnx, torch,onnx") == ["onnx", "torch"]
    assert backends.parse_backends("all") == list(backends.BACKENDS)


def test_missing_onnxruntime_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    with pytest.raises(
        backends.BackendError, match=r"needs the package onnxruntime: pip install onnx==.* onnxruntime=="
    ):
        backends.check_backend("onnx-int8")
    assert backends.check_backend("torch-bf16") == "torch-bf16"  # torch backends need nothing more


def test_encoder_without_attention_mask_cannot_be_exported(tmp_path: Path) -> None:
    folder = maskless_checkpoint(tmp_path / "no-mask")
    loaded = checkpoints.load(str(folder))
    with pytest.raises(backends.BackendError, match="cannot export BertModel to ONNX: its tokenizer gives"):
        backends.runner_for(loaded.model, loaded.info.fingerprint, "onnx", root=tmp_path / "graphs")
    assert not list((tmp_path / "graphs").rglob("*.onnx*"))  # nothing half-written


def test_graph_is_exported_once_and_reused(tiny: checkpoints.LoadedCheckpoint, tmp_path: Path) -> None:
    backends.runner_for(tiny.model, tiny.info.fingerprint, "onnx-int8", root=tmp_path)
    graphs = sorted(p.name for p in tmp_path.rglob("*.onnx"))
    assert graphs == [backends.FLOAT_GRAPH, backends.INT8_GRAPH]
    stamp = next(tmp_path.rglob(backends.FLOAT_GRAPH)).stat().st_mtime_ns
    backends.clear_runners()
    backends.runner_for(tiny.model, tiny.info.fingerprint, "onnx", root=tmp_path)
    assert next(tmp_path.rglob(backends.FLOAT_GRAPH)).stat().st_mtime_ns == stamp


def _sts_file(tmp_path: Path, data: datasets.STSData, n: int = 40) -> Path:
    path = tmp_path / "stsb-slice.tsv"
    lines = ["sentence1\tsentence2\tscore"]
    lines += [
        f"{a}\t{b}\t{s}"
        for a, b, s in zip(data.sentences1[:n], data.sentences2[:n], data.scores[:n], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_backend_is_part_of_a_stored_cell(
    tiny: checkpoints.LoadedCheckpoint, stsb_slice: datasets.STSData, tmp_path: Path
) -> None:
    from storage import db, repository

    factory = db.init_db(f"sqlite:///{tmp_path / 'lab.db'}")
    sts = _sts_file(tmp_path, stsb_slice)
    reference = evaluate_grid(tiny, str(sts), layers=[1, 3], dims=[16, 48], session_factory=factory)
    onnx = evaluate_grid(
        tiny, str(sts), layers=[1, 3], dims=[16, 48], session_factory=factory, backend="onnx"
    )
    assert onnx.computed == reference.computed == 4  # not served from the torch rows
    assert set(onnx.frame["backend"]) == {"onnx"} and set(reference.frame["backend"]) == {"torch"}
    merged = reference.frame.merge(onnx.frame, on=["layer", "dim", "precision", "metric"])
    np.testing.assert_allclose(merged["value_x"], merged["value_y"], atol=1e-4)
    again = evaluate_grid(
        tiny, str(sts), layers=[1, 3], dims=[16, 48], session_factory=factory, backend="onnx"
    )
    assert again.computed == 0 and again.reused == 4
    with factory() as s:
        every = repository.results_frame(s, checkpoint_fp=tiny.info.fingerprint, backend=None)
        torch_only = repository.results_frame(s, checkpoint_fp=tiny.info.fingerprint)
        items = repository.get_item_scores(
            s,
            checkpoint_fp=tiny.info.fingerprint,
            dataset_fp=onnx.dataset_fingerprint,
            split=onnx.dataset.split,
            layer=3,
            dim=48,
            precision="float32",
            kind="pair_similarity",
            backend="onnx",
        )
    assert len(every) == 2 * len(torch_only) and set(torch_only["backend"]) == {"torch"}
    assert items is not None and len(items.ids) == 40
    with pytest.raises(backends.BackendError, match="unknown backend 'gpu'"):
        evaluate_grid(tiny, str(sts), session_factory=factory, backend="gpu")


def test_cli_backend_json_field_and_bad_backend(
    tiny: checkpoints.LoadedCheckpoint, stsb_slice: datasets.STSData, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    sts = _sts_file(tmp_path, stsb_slice, n=10)
    env = {
        **os.environ,
        "MLAB_HOME": str(tmp_path / "home"),
        "MLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
    }
    env["MLAB_CACHE_DIR"] = str(tmp_path / "cache")
    repo = Path(__file__).resolve().parents[1]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-m",
            "core",
            "evaluate",
            "--checkpoint",
            tiny.info.path,
            "--dataset",
            str(sts),
        ]
        return subprocess.run(
            [*command, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )

    out = cli("--layers", "2", "--dims", "16", "--backend", "onnx-int8", "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["backend"] for r in rows} == {"onnx-int8"} and {r["layer"] for r in rows} == {2}
    bad = cli("--backend", "tensorrt")
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().splitlines()[-1].startswith("error: unknown backend 'tensorrt'; choose from torch")
    )


def test_cost_is_measured_and_stored_per_backend(tiny: checkpoints.LoadedCheckpoint, tmp_path: Path) -> None:
    from core.cost import measure_encoding
    from core.lab.cost import measure_checkpoint_cost
    from storage import db

    measured = {
        backend: measure_encoding(
            tiny.model,
            [1, 3],
            repeats=3,
            batch_repeats=2,
            warmup=1,
            backend=backend,
            fingerprint="tiny-fp",
            graph_root=str(tmp_path / "graphs"),
        )
        for backend in backends.BACKENDS
    }
    for backend, rows in measured.items():
        assert [r.backend for r in rows] == [backend, backend]
        assert all(r.latency_ms_p50 > 0 and r.throughput_per_s > 0 for r in rows)
        assert rows[0].model_bytes < rows[1].model_bytes  # 1 layer ships less than 3
    graphs = {p.name for p in (tmp_path / "graphs").rglob("*.onnx")}
    assert graphs == {"layers-1.onnx", "layers-3.onnx", "layers-1-qint8.onnx", "layers-3-qint8.onnx"}
    assert measured["onnx-int8"][1].model_bytes < measured["onnx"][1].model_bytes  # int8 weights
    assert measured["torch"][1].model_bytes == measured["torch-bf16"][1].model_bytes  # autocast: fp32 weights

    factory = db.init_db(f"sqlite:///{tmp_path / 'lab.db'}")
    kwargs = dict(layers=[1, 2], repeats=2, batch_repeats=1, warmup=0, session_factory=factory)
    torch_report = measure_checkpoint_cost(tiny, **kwargs)  # type: ignore[arg-type]
    onnx_report = measure_checkpoint_cost(tiny, backend="onnx", **kwargs)  # type: ignore[arg-type]
    assert onnx_report.measured == torch_report.measured == 2  # not served from the torch rows
    assert set(onnx_report.encoding["backend"]) == {"onnx"}
    assert all(d["model_bytes"] > 0 for d in onnx_report.encoding["details"])
    again = measure_checkpoint_cost(tiny, backend="onnx", **kwargs)  # type: ignore[arg-type]
    assert again.measured == 0 and again.reused == 2
