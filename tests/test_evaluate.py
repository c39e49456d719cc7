"""Grid evaluation end to end on a tiny real checkpoint: scores, storage, upsert, resume, cache, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from core import checkpoints, datasets, metrics, scoring, submodels
from core.lab import evaluate
from core.lab.store import open_store
from storage import db, repository
from tests.conftest import write_sts_pairs
from tests.pagedata import PAIRS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sts_file(tmp_path: Path) -> Path:
    return write_sts_pairs(tmp_path / "mini-sts.tsv", PAIRS)


@pytest.fixture
def beir_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mini-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "Guitars", "A man plays the guitar on stage."),
        ("d2", "Onions", "Cutting onions makes people cry."),
        ("d3", "Markets", "Stocks fell sharply on Monday."),
        ("d4", "Aviation", "The airplane departed the runway at noon."),
        ("d5", "", "A child rides a bicycle in the park."),
    ]
    with (folder / "corpus.jsonl").open("w") as fh:
        for doc_id, title, text in docs:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    queries = [("q1", "who plays guitar"), ("q2", "stock market news"), ("q3", "unjudged query")]
    with (folder / "queries.jsonl").open("w") as fh:
        for qid, text in queries:
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td3\t1\nq2\td4\t1\n"
    )
    return folder


def test_sts_grid_equals_scipy_on_engine_embeddings(tiny_folder: Path, sts_file: Path) -> None:
    factory = open_store()
    report = evaluate.evaluate_grid(str(tiny_folder), str(sts_file), dims=[16, 48], session_factory=factory)
    assert report.computed == 6 and report.reused == 0
    loaded = checkpoints.load(str(tiny_folder))
    pooled = submodels.encode_all_layers(loaded.model, [p[0] for p in PAIRS] + [p[1] for p in PAIRS], [2])
    emb = submodels.truncate(pooled[2], 16)
    n = len(PAIRS)
    sims = (emb[:n] * emb[n:]).sum(1)
    gold = np.array([p[2] for p in PAIRS])
    cell = report.frame[(report.frame.layer == 2) & (report.frame.dim == 16)].set_index("metric")["value"]
    assert cell["cosine_spearman"] == pytest.approx(spearmanr(sims, gold).statistic, abs=1e-6)
    assert cell["cosine_pearson"] == pytest.approx(pearsonr(sims, gold).statistic, abs=1e-5)
    with factory() as s:
        stored = repository.get_item_scores(
            s,
            checkpoint_fp=loaded.info.fingerprint,
            dataset_fp=report.dataset_fingerprint,
            split=report.dataset.split,
            layer=2,
            dim=16,
            precision="float32",
            kind="pair_similarity",
        )
    assert stored is not None
    np.testing.assert_allclose(stored.values, sims, atol=1e-6)


def test_second_evaluation_reuses_everything(tiny_folder: Path, sts_file: Path) -> None:
    factory = open_store()
    first = evaluate.evaluate_grid(str(tiny_folder), str(sts_file), session_factory=factory)
    assert first.encoded_texts == len({text for pair in PAIRS for text in pair[:2]})  # unique sentences, once
    second = evaluate.evaluate_grid(str(tiny_folder), str(sts_file), session_factory=factory)
    assert second.computed == 0 and second.run_id is None and second.encoded_texts == 0
    assert second.frame.sort_values(["layer", "dim", "metric"]).value.tolist() == pytest.approx(
        first.frame.sort_values(["layer", "dim", "metric"]).value.tolist()
    )
    # New cells of layers already encoded come from the embedding cache: no forward pass either.
    third = evaluate.evaluate_grid(str(tiny_folder), str(sts_file), dims=[7], session_factory=factory)
    assert third.computed == 3 and third.encoded_texts == 0


def test_recompute_upserts_without_duplicates(tiny_folder: Path, sts_file: Path) -> None:
    factory = open_store()
    evaluate.evaluate_grid(str(tiny_folder), str(sts_file), dims=[48], session_factory=factory)
    evaluate.evaluate_grid(
        str(tiny_folder), str(sts_file), dims=[48], session_factory=factory, recompute=True
    )
    with factory() as s:
        frame = repository.results_frame(s)
    assert len(frame) == 3 * 2  # 3 layers x 1 dim x 2 metrics, once each
    assert not frame.duplicated(
        ["checkpoint_fp", "dataset_fp", "split", "layer", "dim", "precision", "metric"]
    ).any()


def test_interrupted_run_resumes_and_equals_uninterrupted(
    tiny_folder: Path, sts_file: Path, tmp_path: Path
) -> None:
    factory = open_store()

    def crash_after_two(phase: str, done: int, total: int) -> None:
        if phase == "score" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_grid(
            str(tiny_folder), str(sts_file), dims=[16, 48], session_factory=factory, progress=crash_after_two
        )
    with factory() as s:
        runs = repository.list_runs(s)
        assert [(r.status, r.cells_done, r.cells_total) for r in runs] == [("interrupted", 2, 6)]
        assert len(repository.results_frame(s)) == 2 * 2
    resumed = evaluate.evaluate_grid(str(tiny_folder), str(sts_file), dims=[16, 48], session_factory=factory)
    assert resumed.computed == 4 and resumed.reused == 2 and resumed.run_id == runs[0].id
    with factory() as s:
        run = repository.get_run(s, runs[0].id)
        assert run is not None and (run.status, run.cells_done) == ("completed", 6)

    clean_factory = db.init_db(f"sqlite:///{tmp_path / 'clean.sqlite3'}")
    clean = evaluate.evaluate_grid(
        str(tiny_folder), str(sts_file), dims=[16, 48], session_factory=clean_factory
    )
    key = ["layer", "dim", "metric"]
    a = resumed.frame.sort_values(key).value.to_numpy()
    b = clean.frame.sort_values(key).value.to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-7)


def test_retrieval_grid_matches_metrics_on_brute_force(tiny_folder: Path, beir_folder: Path) -> None:
    report = evaluate.evaluate_grid(
        str(tiny_folder), str(beir_folder), layers=[3], dims=[48], session_factory=open_store()
    )
    data = datasets.load_dataset(datasets.resolve_dataset(str(beir_folder)))
    assert isinstance(data, datasets.RetrievalData)
    loaded = checkpoints.load(str(tiny_folder))
    corpus = submodels.truncate(submodels.encode_all_layers(loaded.model, data.corpus_texts, [3])[3], 48)
    queries = submodels.truncate(
        submodels.encode_all_layers(loaded.model, ["who plays guitar", "stock market news"], [3])[3], 48
    )
    scores = queries @ corpus.T  # (2, 5) brute force
    run = {q: {data.corpus_ids[j]: float(scores[i, j]) for j in range(5)} for i, q in enumerate(["q1", "q2"])}
    expected, _ = metrics.ranking_metrics(run, data.qrels)
    got = report.frame.set_index("metric")["value"]
    for name in metrics.METRICS["retrieval"]:
        assert got[name] == pytest.approx(expected[name], abs=1e-6)


def test_precision_cells_are_evaluated_and_keyed(tiny_folder: Path, sts_file: Path) -> None:
    report = evaluate.evaluate_grid(
        str(tiny_folder),
        str(sts_file),
        layers=[3],
        dims=[48],
        precisions=["float32", "int8", "binary"],
        session_factory=open_store(),
    )
    assert sorted(set(report.frame.precision)) == ["binary", "float32", "int8"]


def test_out_of_range_knobs_store_nothing(tiny_folder: Path, sts_file: Path) -> None:
    factory = open_store()
    for kwargs in ({"layers": [4]}, {"dims": [49]}, {"dims": [0]}, {"precisions": ["int4"]}):
        with pytest.raises(scoring.EvaluationError):
            evaluate.evaluate_grid(str(tiny_folder), str(sts_file), session_factory=factory, **kwargs)
    with factory() as s:
        assert repository.results_frame(s).empty and not repository.list_runs(s)


def test_parse_helpers() -> None:
    assert scoring.parse_int_list("6, 1,2,2", "--layers") == [1, 2, 6]
    assert scoring.parse_int_list("all", "--layers") is None
    with pytest.raises(scoring.EvaluationError):
        scoring.parse_int_list("1,x", "--dims")
    assert scoring.parse_precisions("int8,float32") == ["int8", "float32"]


def _cli(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {
        **os.environ,
        "MLAB_HOME": str(env_home),
        "MLAB_DATABASE_URL": f"sqlite:///{env_home / 'cli.sqlite3'}",
        "MLAB_CACHE_DIR": str(env_home / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_cli_evaluate_json_contract_and_results(tiny_folder: Path, sts_file: Path, tmp_path: Path) -> None:
    out = _cli(
        "evaluate",
        "--checkpoint",
        str(tiny_folder),
        "--dataset",
        str(sts_file),
        "--layers",
        "1,3",
        "--dims",
        "16,48",
        "--json",
        env_home=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)  # nothing but JSON on stdout
    assert len(rows) == 2 * 2 * 2
    assert all(
        set(r) == {"checkpoint", "dataset", "layer", "dim", "precision", "metric", "value", "backend"}
        for r in rows
    )
    assert {r["metric"] for r in rows} == {"cosine_spearman", "cosine_pearson"}
    listed = _cli("results", "--format", "json", env_home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    stored = json.loads(listed.stdout)
    key = lambda r: (r["layer"], r["dim"], r["metric"])  # noqa: E731
    assert sorted((key(r), r["value"]) for r in stored) == sorted((key(r), r["value"]) for r in rows)
    csv_out = _cli("results", "--format", "csv", env_home=tmp_path)
    assert csv_out.stdout.splitlines()[0] == "checkpoint,dataset,layer,dim,precision,metric,value,backend"


def test_cli_user_errors_are_one_line(tmp_path: Path, sts_file: Path) -> None:
    cases = [
        ("evaluate", "--checkpoint", "default", "--dataset", str(sts_file), "--layers", "9"),
        ("evaluate", "--checkpoint", str(tmp_path / "missing"), "--dataset", "stsb-test"),
        ("evaluate", "--checkpoint", "default", "--dataset", str(tmp_path / "nope.tsv")),
        ("evaluate", "--checkpoint", "default", "--dataset", str(sts_file), "--precision", "int4"),
        ("results", "--checkpoint", "never-evaluated", "--format", "json"),
    ]
    for args in cases:
        out = _cli(*args, env_home=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == ""
        assert out.stderr.strip().startswith("error: ") and "Traceback" not in out.stderr, out.stderr


def test_cli_unreachable_hub_fails_fast(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    out = _cli(
        "evaluate",
        "--checkpoint",
        "sentence-transformers/all-MiniLM-L6-v2",
        "--dataset",
        "stsb-test",
        env_home=tmp_path,
    )
    elapsed = time.perf_counter() - start
    assert out.returncode == 2 and "hub" in out.stderr
    print(f"unreachable hub reported in {elapsed:.1f} s")


@pytest.mark.slow
def test_default_full_size_matches_mteb() -> None:
    report = evaluate.evaluate_grid(
        "default", "stsb-test", layers=[6], dims=[384], session_factory=open_store()
    )
    value = report.frame.set_index("metric")["value"]["cosine_spearman"]
    assert value == pytest.approx(0.8203, abs=0.002)
