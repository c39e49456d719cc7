"""Exported sub-models: a stock SentenceTransformer loads them and they are the lab's cell.

The tiny random BERT checks the folder's shape and every bad input; the default checkpoint checks, on
the first 100 pairs of STS-B test, that the exported (3, 128) folder evaluated in the lab reproduces the
cell's scores within 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from core import backends, checkpoints, datasets, export, scoring, submodels
from core.submodels import SubModel
from tests.tinymodel import build_tiny_checkpoint, maskless_checkpoint, run_core

TEXTS = ["A man is playing a guitar.", "Stocks fell sharply on Monday.", "x", "A long sentence " * 8]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> checkpoints.LoadedCheckpoint:
    return checkpoints.load(str(build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layers=3)))


def _cell(loaded: checkpoints.LoadedCheckpoint, layer: int, dim: int, backend: str = "torch") -> np.ndarray:
    runner = (
        None if backend == "torch" else backends.runner_for(loaded.model, loaded.info.fingerprint, backend)
    )
    pooled = submodels.encode_all_layers(loaded.model, TEXTS, [layer], runner=runner)[layer]
    return submodels.truncate(pooled, dim)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_torch_export_loads_stock_and_equals_the_cell(
    tiny: checkpoints.LoadedCheckpoint, tmp_path: Path
) -> None:
    card = export.model_card(
        "tiny-L2-D16",
        2,
        16,
        "torch",
        export.CardFacts(
            "tiny",
            tiny.info.fingerprint,
            scores=[{"dataset": "stsb-test", "split": "test", "metric": "cosine_spearman", "value": 0.5}],
        ),
        None,
    )
    written = export.write_submodel(tiny, 2, 16, tmp_path / "out", card=card)
    assert written.folder == tmp_path / "out" and written.onnx_file is None
    model = SentenceTransformer(str(written.folder), device="cpu", trust_remote_code=False)
    assert model.truncate_dim == 16 and model.get_embedding_dimension() == 16
    assert model[0].auto_model.config.num_hidden_layers == 2  # the first 2 layers only, not 3 with a cut
    stock = model.encode(TEXTS, convert_to_numpy=True)
    assert stock.shape == (len(TEXTS), 16)
    assert _cosines(stock, _cell(tiny, 2, 16)).min() >= 0.9999
    assert "| stsb-test | test | cosine_spearman | 0.5000 |" in (written.folder / "README.md").read_text()
    info = export.read_export_info(written.folder)
    assert info is not None and (info["layer"], info["dim"], info["backend"]) == (2, 16, "torch")
    assert info["source"]["fingerprint"] == tiny.info.fingerprint
    assert tiny.model[0].auto_model.config.num_hidden_layers == 3  # the shared model is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_export_follows_the_folder_convention(
    tiny: checkpoints.LoadedCheckpoint, tmp_path: Path, backend: str
) -> None:
    import onnxruntime as ort
    import torch

    written = export.write_submodel(tiny, 3, 32, tmp_path / backend, backend=backend)
    expected = {"onnx": "onnx/model.onnx", "onnx-int8": "onnx/model_qint8_avx512_vnni.onnx"}[backend]
    assert written.onnx_file == expected
    assert sorted(p.name for p in (written.folder / "onnx").iterdir()) == [Path(expected).name]
    session = ort.InferenceSession(str(written.folder / expected), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    stock = SentenceTransformer(str(written.folder), device="cpu")
    features = stock.preprocess(TEXTS)
    feeds = {i.name: features[i.name].numpy() for i in session.get_inputs()}
    (last,) = session.run(None, feeds)
    pooled = submodels.pool_hidden_states(stock, features, [torch.from_numpy(last)], [0])[0].numpy()
    cosine = _cosines(pooled, _cell(tiny, 3, 32, backend))
    assert cosine.min() >= 0.9999  # the shipped graph is the lab's cell on that backend
    if backend == "onnx":
        assert _cosines(pooled, _cell(tiny, 3, 32)).min() >= 0.9999  # and float32 equals torch


def test_bad_requests_leave_nothing_behind(tiny: checkpoints.LoadedCheckpoint, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    cases = [
        (dict(layer=4, dim=16, output=tmp_path / "a"), "layer 4 is outside this checkpoint's layers 1..3"),
        (dict(layer=0, dim=16, output=tmp_path / "a"), "layer 0 is outside"),
        (dict(layer=2, dim=49, output=tmp_path / "a"), "dim 49 is outside this checkpoint's dims 1..48"),
        (dict(layer=2, dim=16, output=busy), "already exists and is not empty"),
        (dict(layer=2, dim=16, output=tmp_path / "a", backend="tflite"), "unknown backend 'tflite'"),
        (dict(layer=2, dim=16, output=tmp_path / "no" / "such" / "a"), "parent folder"),
    ]
    for kwargs, message in cases:
        with pytest.raises(export.ExportError, match=message):
            export.write_submodel(tiny, **kwargs)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    assert (busy / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export.write_submodel(tiny, 1, 8, empty).folder == empty  # an empty folder is fine


def test_failed_onnx_export_leaves_no_folder(tmp_path: Path) -> None:
    folder = maskless_checkpoint(tmp_path / "no-mask")
    loaded = checkpoints.load(str(folder))
    out = tmp_path / "exports"
    out.mkdir()
    with pytest.raises(backends.BackendError, match="cannot export BertModel to ONNX"):
        export.write_submodel(loaded, 2, 16, out / "m", backend="onnx")
    assert list(out.iterdir()) == []


def test_exported_folder_reproduces_the_cell_scores_in_the_lab(tmp_path: Path) -> None:
    loaded = checkpoints.load("default")
    data = datasets.load_dataset(datasets.resolve_dataset("stsb-test"))
    assert isinstance(data, datasets.STSData)
    data = datasets.STSData(data.sentences1[:100], data.sentences2[:100], data.scores[:100])
    written = export.write_submodel(loaded, 3, 128, tmp_path / "minilm-3-128")
    exported = checkpoints.load(str(written.folder))
    assert (exported.info.num_layers, exported.info.embedding_dim) == (3, 128)
    original = next(
        scoring.score_cells(
            loaded.info, data, scoring.encode_dataset(loaded, data, [3], None), [SubModel(3, 128)]
        )
    )
    again = next(
        scoring.score_cells(
            exported.info, data, scoring.encode_dataset(exported, data, [3], None), [SubModel(3, 128)]
        )
    )
    for name, value in original.metrics.items():
        assert abs(again.metrics[name] - value) <= 1e-4, name
    stock = SentenceTransformer(str(written.folder), device="cpu").encode(data.sentences1[:20])
    lab = submodels.truncate(submodels.encode_all_layers(loaded.model, data.sentences1[:20], [3])[3], 128)
    assert _cosines(stock, lab).min() >= 0.9999


def test_cli_export_prints_the_folder_registers_it_and_cards_the_scores(tmp_path: Path) -> None:
    import os
    import subprocess

    folder = build_tiny_checkpoint(tmp_path / "tiny", layers=3)
    sts = tmp_path / "pairs.tsv"
    rows = ["sentence1\tsentence2\tscore"]
    rows += [f"{a}\t{b}\t{s}" for a, b, s in zip(TEXTS, reversed(TEXTS), [1.0, 2.5, 4.0, 0.5], strict=True)]
    sts.write_text("\n".join(rows) + "\n")
    home = tmp_path / "home"
    env = {**os.environ, "MLAB_HOME": str(home), "MLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'lab.db'}"}
    env["MLAB_CACHE_DIR"] = str(tmp_path / "cache")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_core(list(args), env)

    evaluated = cli(
        "evaluate",
        "--checkpoint",
        str(folder),
        "--dataset",
        str(sts),
        "--dims",
        "16",
        "--backend",
        "onnx",
        "--json",
    )
    assert evaluated.returncode == 0, evaluated.stderr
    stored = {
        r["metric"]: r["value"] for r in json.loads(evaluated.stdout) if (r["layer"], r["dim"]) == (2, 16)
    }
    out = cli("export", "--checkpoint", str(folder), "--layer", "2", "--dim", "16", "--backend", "onnx")
    assert out.returncode == 0, out.stderr
    exported = Path(out.stdout.strip().splitlines()[-1])
    assert exported.parent == home / "exports" and (exported / "onnx" / "model.onnx").is_file()
    card = (exported / "README.md").read_text()
    assert f"| cosine_spearman | {stored['cosine_spearman']:.4f} |" in card
    listed = cli("checkpoints", "--json")
    assert str(exported) in {r["name"] for r in json.loads(listed.stdout)}  # registered: on every page
    again = cli("export", "--checkpoint", str(folder), "--layer", "2", "--dim", "16", "--backend", "onnx")
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"error: output folder {str(exported)!r} already exists and is not empty; choose another"
    ]
    for args, message in (
        (("--layer", "4", "--dim", "16"), "error: layer 4 is outside this checkpoint's layers 1..3"),
        (("--layer", "2", "--dim", "64"), "error: dim 64 is outside this checkpoint's dims 1..48"),
        (("--layer", "2", "--dim", "16", "--backend", "coreml"), "error: unknown backend 'coreml'"),
    ):
        bad = cli("export", "--checkpoint", str(folder), "--output", str(tmp_path / "x"), *args)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(message), bad.stderr
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in (home / "exports").iterdir()) == [exported.name]
