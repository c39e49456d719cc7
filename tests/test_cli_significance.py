"""``python -m core significance``: the JSON contract, B - A, and equality with an independent implementation
(scipy ``spearmanr`` on swapped within-model ranks, scipy's paired percentile bootstrap) over the stored
per-pair similarities of a real (tiny) evaluated lab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from core import significance, views
from core.cli.main import main
from core.lab.evaluate import evaluate_grid
from storage import db, repository
from tests.pagedata import PAIRS, STS_DATASET, Lab, build_lab_in_own_home

KEYS = {"a", "b", "metric", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_bootstrap",
        "p_randomization", "resamples"}  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    folder = tmp_path_factory.mktemp("siglab")
    return build_lab_in_own_home(folder)


@pytest.fixture(autouse=True)
def _use_lab(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_DATABASE_URL", lab.database_url)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["significance", *args])
    out, err = capsys.readouterr()
    return code, out, err


def stored_similarities(lab: Lab, ckpt: Path, layer: int, dim: int) -> tuple[np.ndarray, float]:
    with db.init_db(lab.database_url)() as s:
        record = repository.get_checkpoint(s, str(ckpt))
        dataset = repository.get_dataset(s, STS_DATASET)
        assert record is not None and dataset is not None
        found = repository.get_item_scores(s, checkpoint_fp=record.fingerprint, dataset_fp=dataset.fingerprint,
                                           split="test", layer=layer, dim=dim, precision="float32",
                                           kind="pair_similarity")  # fmt: skip
        frame = repository.results_frame(s, checkpoint_fp=record.fingerprint, dataset_fp=dataset.fingerprint)
    assert found is not None
    order = np.argsort([int(i) for i in found.ids])
    return np.asarray(found.values, dtype=np.float64)[order], views.cell_value(
        frame, "cosine_spearman", (layer, dim)
    )


def test_json_is_b_minus_a_and_equals_an_independent_implementation(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = lab.checkpoints["tiny-4x64"]
    code, out, err = run(capsys, "--dataset", STS_DATASET, "--a", f"{ckpt}:1:32", "--b", f"{ckpt}:4:64",
                         "--resamples", "700", "--seed", "3", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= KEYS and result["metric"] == "cosine_spearman" and result["resamples"] == 700
    a, stored_a = stored_similarities(lab, ckpt, 1, 32)
    b, stored_b = stored_similarities(lab, ckpt, 4, 64)
    gold = np.array([score for _, _, score in PAIRS])
    assert result["value_a"] == pytest.approx(stored_a, abs=1e-5)  # the stored Spearman of each cell
    assert result["value_b"] == pytest.approx(stored_b, abs=1e-5)
    assert result["delta"] == pytest.approx(result["value_b"] - result["value_a"], abs=1e-12)

    # randomization: swap each pair's within-model ranks with the same swap masks, one spearmanr each
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    rng = np.random.default_rng(3)
    null = []
    for start in range(0, 700, significance.DEFAULT_CHUNK):
        for swap in rng.random((min(significance.DEFAULT_CHUNK, 700 - start), len(a))) < 0.5:
            null.append(stats.spearmanr(np.where(swap, ra, rb), gold).statistic
                        - stats.spearmanr(np.where(swap, rb, ra), gold).statistic)  # fmt: skip
    observed = stats.spearmanr(b, gold).statistic - stats.spearmanr(a, gold).statistic
    values = np.array(null)
    tails = [
        (np.count_nonzero(values <= observed) + 1) / 701,
        (np.count_nonzero(values >= observed) + 1) / 701,
    ]
    assert result["p_randomization"] == pytest.approx(min(1.0, 2 * min(tails)), abs=1e-12)

    # bootstrap: scipy's paired percentile bootstrap of B - A with the same generator and batch
    def gap(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = [stats.spearmanr(xi, zi).statistic - stats.spearmanr(yi, zi).statistic
                for xi, yi, zi in zip(np.atleast_2d(x), np.atleast_2d(y), np.atleast_2d(z), strict=True)]  # fmt: skip
        return np.array(rows) if np.ndim(x) > 1 else rows[0]

    ref = stats.bootstrap((b, a, gold), gap, paired=True, vectorized=True, method="percentile", n_resamples=700,
                          batch=significance.DEFAULT_CHUNK, rng=np.random.default_rng(3))  # fmt: skip
    assert result["ci_low"] == pytest.approx(float(ref.confidence_interval.low), abs=1e-12)
    assert result["ci_high"] == pytest.approx(float(ref.confidence_interval.high), abs=1e-12)
    assert 0 < result["p_bootstrap"] <= 1


def test_table_output_and_swapped_cells_flip_the_sign(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = lab.checkpoints["tiny-3x48"]
    args = ["--dataset", STS_DATASET, "--resamples", "200", "--json"]
    _, forward, _ = run(capsys, *args, "--a", f"{ckpt}:1:32", "--b", f"{ckpt}:3:48")
    _, backward, _ = run(capsys, *args, "--a", f"{ckpt}:3:48", "--b", f"{ckpt}:1:32")
    assert json.loads(forward)["delta"] == pytest.approx(-json.loads(backward)["delta"])
    code, table, _ = run(capsys, "--dataset", STS_DATASET, "--a", f"{ckpt}:1:32", "--b", f"{ckpt}:3:48",
                         "--resamples", "200")  # fmt: skip
    assert code == 0 and "p_randomization" in table and "delta" in table


@pytest.mark.parametrize(
    ("a", "message"),
    [
        ("default:6", "is not of the form CKPT:LAYER:DIM"),
        ("default:6:big", "dim 'big' is not an integer"),
        ("nope:1:32", "no registered checkpoint 'nope'"),
        ("{ckpt}:2:8", "has no stored per-item scores"),
    ],
)
def test_bad_cells_are_one_error_line(
    lab: Lab, capsys: pytest.CaptureFixture[str], a: str, message: str
) -> None:
    ckpt = lab.checkpoints["tiny-3x48"]
    code, out, err = run(capsys, "--dataset", STS_DATASET, "--a", a.format(ckpt=ckpt), "--b", f"{ckpt}:3:48")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_unknown_dataset_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--dataset", "nope", "--a", "default:1:32", "--b", "default:6:384")
    assert code == 2 and "no dataset named 'nope'" in err


@pytest.fixture(scope="module")
def onnx_lab(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """The lab plus tiny-3x48 layers 1 and 3 on onnx at dims 20 and 48 (dim 20 exists on onnx only)."""
    home = tmp_path_factory.mktemp("sighome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(home))
        mp.setenv("MLAB_CACHE_DIR", str(home / "embedding-cache"))
        evaluate_grid(str(lab.checkpoints["tiny-3x48"]), lab.sts_spec, [1, 3], [20, 48],
                      session_factory=db.init_db(lab.database_url), backend="onnx")  # fmt: skip
    return lab


def onnx_similarities(lab: Lab, layer: int, dim: int) -> np.ndarray:
    with db.init_db(lab.database_url)() as s:
        record = repository.get_checkpoint(s, str(lab.checkpoints["tiny-3x48"]))
        dataset = repository.get_dataset(s, STS_DATASET)
        assert record is not None and dataset is not None
        found = repository.get_item_scores(s, checkpoint_fp=record.fingerprint, dataset_fp=dataset.fingerprint,
                                           split="test", layer=layer, dim=dim, precision="float32",
                                           kind="pair_similarity", backend="onnx")  # fmt: skip
    assert found is not None
    return np.asarray(found.values, dtype=np.float64)[np.argsort([int(i) for i in found.ids])]


def test_backend_reads_that_backends_item_scores(onnx_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = onnx_lab.checkpoints["tiny-3x48"]
    args = ["--dataset", STS_DATASET, "--a", f"{ckpt}:1:20", "--b", f"{ckpt}:3:48", "--resamples", "300"]
    code, out, err = run(capsys, *args, "--backend", "onnx", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["backend"] == "onnx" and set(result) >= KEYS
    gold = np.array([score for _, _, score in PAIRS])
    expected = significance.paired_tests(onnx_similarities(onnx_lab, 1, 20), onnx_similarities(onnx_lab, 3, 48),
                                         gold, statistic="spearman", n_resamples=300)  # fmt: skip
    for key, test, field in (("value_a", "bootstrap", "score_a"), ("value_b", "bootstrap", "score_b"),
                             ("ci_low", "bootstrap", "ci_low"), ("ci_high", "bootstrap", "ci_high"),
                             ("p_bootstrap", "bootstrap", "p_value"), ("p_randomization", "randomization", "p_value")):  # fmt: skip
        assert result[key] == pytest.approx(getattr(expected[test], field), abs=1e-12), key
    # dim 20 was evaluated on onnx only: the default (torch) refuses it, naming the cell
    code, _, err = run(capsys, *args)
    assert code == 2 and "(1, 20) has no stored per-item scores" in err
    code, _, err = run(capsys, *args, "--backend", "tpu")
    assert code == 2 and "--backend 'tpu' is not one of torch" in err


def test_json_of_the_default_backend_says_torch(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = lab.checkpoints["tiny-3x48"]
    code, out, _ = run(capsys, "--dataset", STS_DATASET, "--a", f"{ckpt}:1:32", "--b", f"{ckpt}:3:48",
                       "--resamples", "100", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["backend"] == "torch"
