"""``--engine ray``: corpus encoding on a local Ray cluster (started here) equals the local engine.

The Ray engine must write the SAME per-layer embedding-cache entries as the local engine: same keys,
same matrices (to 1e-5: different batch compositions pad differently), so evaluation reads them with no
forward pass and a local run afterwards reuses them. Grid results through ``evaluate_grid`` and the CLI
with ``--engine ray`` equal the local engine's.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data] (requirements pin it)")

from core import checkpoints, ray_engine, scoring, submodels  # noqa: E402
from core.cli import main as cli  # noqa: E402
from core.lab import evaluate  # noqa: E402
from core.lab.store import open_store  # noqa: E402
from core.submodels import EmbeddingCache  # noqa: E402
from storage import db  # noqa: E402
from tests.faults import support  # noqa: E402
from tests.tinymodel import build_tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local 2-CPU Ray cluster for this module (shut down afterwards)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ray") / "tiny", layers=3, hidden=48)


def _corpus(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    words = support.WORDS
    texts = [f"{i} " + " ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for i in range(n)]
    return [*texts, *texts[:25]]  # repeated texts are encoded once, as locally


def test_ray_cache_entries_equal_local_engine(ray_cluster: None, tiny: Path, tmp_path: Path) -> None:
    loaded = checkpoints.load(str(tiny))
    texts = _corpus(600)
    ray_cache = EmbeddingCache(tmp_path / "ray-cache")
    progress: list[tuple[int, int]] = []
    encoded = ray_engine.fill_cache(
        loaded,
        texts,
        ray_cache,
        prompt="passage: ",
        batch_size=16,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert encoded == 600 and progress[-1] == (600, 600)
    assert ray_engine.fill_cache(loaded, texts, ray_cache, prompt="passage: ") == 0  # all cached now

    layers = list(range(loaded.info.num_layers + 1))
    from_cache = submodels.pooled_embeddings(loaded, texts, layers, ray_cache, prompt="passage: ")
    assert from_cache.encoded == 0  # evaluation reads Ray's entries with no forward pass
    local_cache = EmbeddingCache(tmp_path / "local-cache")
    local = submodels.pooled_embeddings(loaded, texts, layers, local_cache, prompt="passage: ")
    assert local.encoded == 600
    ray_files = sorted(p.relative_to(ray_cache.root) for p in ray_cache.root.rglob("*.npy"))
    local_files = sorted(p.relative_to(local_cache.root) for p in local_cache.root.rglob("*.npy"))
    assert ray_files == local_files and len(ray_files) == len(layers)  # the same keys
    for layer in layers:
        np.testing.assert_allclose(from_cache.matrix(layer), local.matrix(layer), atol=1e-5)


def test_evaluate_grid_with_ray_equals_local(ray_cluster: None, tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = _corpus(300)[:300]
    with (folder / "corpus.jsonl").open("w") as fh:
        for i, text in enumerate(docs):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for i in range(20):
            fh.write(json.dumps({"_id": f"q{i}", "text": docs[i * 7][:30]}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i * 7}\t1\n" for i in range(20))
    )
    dims = [8, 24, 48]
    ray_report = evaluate.evaluate_grid(
        str(tiny),
        str(folder),
        dims=dims,
        engine="ray",
        cache=EmbeddingCache(tmp_path / "ray-cache"),
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'ray.sqlite3'}"),
    )
    local_report = evaluate.evaluate_grid(
        str(tiny),
        str(folder),
        dims=dims,
        cache=EmbeddingCache(tmp_path / "local-cache"),
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'local.sqlite3'}"),
    )
    assert ray_report.encoded_texts == local_report.encoded_texts == 300 + 20
    key = ["layer", "dim", "precision", "metric"]
    a = ray_report.frame.sort_values(key).reset_index(drop=True)
    b = local_report.frame.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key]) and len(a) == 3 * 3 * 4
    np.testing.assert_allclose(a["value"], b["value"], atol=1e-5)
    # A local run on the Ray-filled cache encodes nothing: the entries are the local engine's.
    reuse = evaluate.evaluate_grid(
        str(tiny),
        str(folder),
        dims=[16],
        cache=EmbeddingCache(tmp_path / "ray-cache"),
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'ray.sqlite3'}"),
    )
    assert reuse.encoded_texts == 0 and reuse.computed == 3


def test_cli_engine_ray_json_equals_local(
    ray_cluster: None, tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 40)

    def run(*extra: str) -> list[dict]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(
                ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), "--json", "--quiet", *extra]
            )
        assert code == 0, err.getvalue()
        return json.loads(out.getvalue())

    by_ray = run("--engine", "ray")
    db.dispose_engines()
    (lab_env / "lab.sqlite3").unlink()
    import shutil

    shutil.rmtree(lab_env / "embedding-cache")
    by_local = run()
    assert [(r["layer"], r["dim"], r["metric"]) for r in by_ray] == [
        (r["layer"], r["dim"], r["metric"]) for r in by_local
    ]
    np.testing.assert_allclose([r["value"] for r in by_ray], [r["value"] for r in by_local], atol=1e-5)


def test_unknown_engine_is_refused_before_anything_is_stored(
    tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    sts = support.write_sts(tmp_path / "pairs.tsv", 10)
    with pytest.raises(scoring.EvaluationError, match="unknown engine 'spark'"):
        evaluate.evaluate_grid(str(tiny), str(sts), engine="spark", session_factory=open_store())
    assert support.query(lab_env / "lab.sqlite3", "SELECT COUNT(*) FROM runs") in ([], [(0,)])


def test_cli_subprocess_starts_its_own_cluster_and_keeps_stdout_json(tiny: Path, tmp_path: Path) -> None:
    """``python -m core evaluate --engine ray --json`` with no cluster running: it starts a local one
    (workers import the lab from this checkout), and stdout still carries only the JSON document."""
    import subprocess
    import sys

    sts = support.write_sts(tmp_path / "pairs.tsv", 30)
    env = support.lab_env(tmp_path / "home")
    env.pop("RAY_ADDRESS", None)
    args = ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), "--dims", "16,48", "--json"]
    by_ray = subprocess.run(
        [sys.executable, "-m", "core", *args, "--engine", "ray"],
        cwd=support.REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert by_ray.returncode == 0, by_ray.stderr[-3000:]
    rows = json.loads(by_ray.stdout)
    local = evaluate.evaluate_grid(
        str(tiny),
        str(sts),
        dims=[16, 48],
        cache=EmbeddingCache(tmp_path / "local-cache"),
        session_factory=db.init_db(f"sqlite:///{tmp_path / 'local.sqlite3'}"),
    )
    expected = {(int(r.layer), int(r.dim), r.metric): r.value for r in local.frame.itertuples()}
    got = {(r["layer"], r["dim"], r["metric"]): r["value"] for r in rows}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in sorted(got)], [expected[k] for k in sorted(got)], atol=1e-5)
