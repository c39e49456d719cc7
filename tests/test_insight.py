"""Per-item loss views and paired significance of stored cells: hand-worked stores and a real tiny lab."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from core import datasets, metrics, significance
from core.lab import evaluate, insight
from core.lab.insight import CellRef
from core.submodels import EmbeddingCache
from storage import db, repository
from tests.pagedata import write_sts
from tests.tinymodel import build_tiny_checkpoint

FP_A = "a" * 32
FP_B = "b" * 32


def write_beir(folder: Path) -> Path:
    """A 5-document, 3-query BEIR folder (query q3 has no judgments)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        ("d1", "Wings", "Lift on an aircraft wing comes from pressure differences."),
        ("d2", "Boundary layers", "Viscous flow near a wall forms a boundary layer."),
        ("d3", "Cooking", "Simmer the onions slowly in butter."),
        ("d4", "Shock waves", "Supersonic flow produces shock waves at the nose."),
        ("d5", "Gardening", "Tomatoes need sun and regular watering."),
    ]
    queries = [
        ("q1", "how do wings make lift"),
        ("q2", "supersonic shock waves"),
        ("q3", "an unjudged query"),
    ]
    with (folder / "corpus.jsonl").open("w") as fh:
        for doc_id, title, text in docs:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for qid, text in queries:
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq2\td4\t1\n"
    )
    return folder


def _register(s: Session, spec: datasets.DatasetSpec) -> str:
    fp = datasets.dataset_fingerprint(spec)
    for ckpt in (FP_A, FP_B):
        repository.upsert_checkpoint(
            s, name=f"ckpt-{ckpt[0]}", kind="local", location="/x", revision=None, fingerprint=ckpt, path="/x",
            num_layers=2, hidden_size=8, embedding_dim=8, pooling="mean", similarity="cosine", max_seq_length=16,
        )  # fmt: skip
    repository.upsert_dataset(
        s, name=spec.name, kind=spec.kind, path=str(spec.path), split=spec.split, fingerprint=fp, n_items=4
    )
    return fp


def _store(
    factory: sessionmaker[Session],
    spec: datasets.DatasetSpec,
    cells: dict[CellRef, tuple[list[str], list[float]]],
    kind: str,
) -> str:
    with factory() as s, s.begin():
        fp = _register(s, spec)
        run = repository.start_run(s, "evaluate", FP_A, fp, {}, len(cells), {})
        for cell, (ids, values) in cells.items():
            repository.put_item_scores(
                s, run_id=run.id, checkpoint_fp=cell.checkpoint_fp, dataset_fp=fp, split=spec.split,
                layer=cell.layer, dim=cell.dim, precision=cell.precision, kind=kind, ids=ids,
                values=np.array(values),
            )  # fmt: skip
    return fp


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    return db.init_db(f"sqlite:///{tmp_path / 'lab.sqlite3'}")


@pytest.fixture
def hand_sts(
    tmp_path: Path, factory: sessionmaker[Session]
) -> tuple[datasets.DatasetSpec, str, CellRef, CellRef]:
    path = tmp_path / "hand.tsv"
    path.write_text(
        "sentence1\tsentence2\tscore\nA\ta\t1.0\nB\tb\t2.0\nC\tc\t3.0\nD\td\t4.0\n", encoding="utf-8"
    )
    spec = datasets.DatasetSpec("hand-sts", datasets.STS, path, "test")
    small = CellRef(FP_A, 1, 4, label="small")
    full = CellRef(FP_A, 2, 8, label="full")
    ids = ["0", "1", "2", "3"]
    fp = _store(
        factory,
        spec,
        {small: (ids, [0.9, 0.2, 0.3, 0.4]), full: (ids, [0.1, 0.2, 0.3, 0.4])},
        "pair_similarity",
    )
    return spec, fp, small, full


def test_sts_losses_hand_worked(hand_sts: tuple, factory: sessionmaker[Session]) -> None:
    spec, fp, small, full = hand_sts
    table = insight.item_losses(spec, fp, small, full, session_factory=factory)
    assert list(table.columns) == list(insight.STS_LOSS_COLUMNS)
    # small ranks pairs [4, 1, 2, 3], gold ranks [1, 2, 3, 4]: rank errors [3, 1, 1, 1] / 4; full: all 0
    assert table["pair"].tolist() == [0, 1, 2, 3]
    assert table["rank error"].tolist() == [0.75, 0.25, 0.25, 0.25]
    assert table["baseline rank error"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert table["loss"].tolist() == [0.75, 0.25, 0.25, 0.25]
    assert table.loc[0, ["sentence1", "sentence2", "gold"]].tolist() == ["A", "a", 1.0]
    assert table["similarity"].iloc[0] == pytest.approx(0.9)
    assert len(insight.item_losses(spec, fp, small, full, top=2, session_factory=factory)) == 2
    reverse = insight.item_losses(spec, fp, full, small, session_factory=factory)
    assert reverse["loss"].tolist() == [-0.25, -0.25, -0.25, -0.75]  # the full model never loses here
    csv_text = insight.losses_csv(table)
    assert pd.read_csv(__import__("io").StringIO(csv_text))["loss"].tolist() == [0.75, 0.25, 0.25, 0.25]


def test_sts_significance_hand_worked(hand_sts: tuple, factory: sessionmaker[Session]) -> None:
    spec, fp, small, full = hand_sts
    results = insight.compare_cells(spec, fp, small, full, "cosine_spearman", session_factory=factory)
    randomization = results["randomization"]
    # Spearman of ranks [4, 1, 2, 3] with [1, 2, 3, 4]: 1 - 6 * (9 + 1 + 1 + 1) / (4 * 15) = -0.2
    assert randomization.score_a == pytest.approx(-0.2)
    assert randomization.score_b == pytest.approx(1.0)
    assert randomization.observed == pytest.approx(1.2)  # B (the full model) - A
    assert randomization.exact and randomization.n_resamples == 16
    direct = significance.paired_tests([0.9, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0])
    assert direct["randomization"].delta == pytest.approx(1.2)
    assert randomization.p_value == pytest.approx(direct["randomization"].p_value)
    table = insight.significance_table(results)
    assert table["test"].tolist() == ["bootstrap", "randomization"]
    assert table["B - A"].iloc[0] == pytest.approx(1.2)
    pearson = insight.compare_cells(spec, fp, small, full, "cosine_pearson", 500, session_factory=factory)
    assert pearson["bootstrap"].statistic == "pearson"
    assert pearson["bootstrap"].score_a == pytest.approx(
        metrics.sts_correlations([0.9, 0.2, 0.3, 0.4], [1, 2, 3, 4])["cosine_pearson"], abs=1e-6
    )


def test_retrieval_losses_hand_worked(tmp_path: Path, factory: sessionmaker[Session]) -> None:
    folder = write_beir(tmp_path / "beir")
    spec = datasets.DatasetSpec("hand-beir", datasets.RETRIEVAL, folder, "test")
    cell, base = CellRef(FP_A, 1, 4, label="small"), CellRef(FP_B, 2, 8, label="other")
    fp = _store(
        factory,
        spec,
        {cell: (["q1", "q2"], [0.5, 1.0]), base: (["q1", "q2"], [1.0, 0.75])},
        "query_ndcg_at_10",
    )
    table = insight.item_losses(spec, fp, cell, base, session_factory=factory)
    assert list(table.columns) == list(insight.RETRIEVAL_LOSS_COLUMNS)
    assert table["query_id"].tolist() == ["q1", "q2"]
    assert table["loss"].tolist() == [0.5, -0.25]
    assert table.loc[0, "query"] == "how do wings make lift"
    relevant = table.loc[0, "relevant documents"]
    assert (
        relevant.startswith("d1 (2): Wings Lift on an aircraft wing")
        and "| d2 (1): Boundary layers" in relevant
    )
    results = insight.compare_cells(spec, fp, cell, base, "ndcg_at_10", 100, session_factory=factory)
    assert results["bootstrap"].statistic == "mean"
    assert results["bootstrap"].observed == pytest.approx(0.875 - 0.75)  # B - A
    assert results["randomization"].exact and results["randomization"].n_resamples == 4


def test_missing_scores_and_changed_files_are_explained(
    hand_sts: tuple, factory: sessionmaker[Session]
) -> None:
    spec, fp, small, full = hand_sts
    absent = CellRef(FP_B, 1, 4, label="other")
    with pytest.raises(insight.InsightError, match=r"other \(1, 4\) has no stored per-item scores"):
        insight.item_losses(spec, fp, absent, full, session_factory=factory)
    with pytest.raises(insight.InsightError, match="not an STS metric"):
        insight.compare_cells(spec, fp, small, full, "ndcg_at_10", session_factory=factory)
    Path(spec.path).write_text("sentence1\tsentence2\tscore\nA\ta\t5.0\nB\tb\t2.0\nC\tc\t3.0\nD\td\t4.0\n")
    with pytest.raises(insight.InsightError, match="changed since it was evaluated"):
        insight.item_losses(spec, fp, small, full, session_factory=factory)


def test_diagonal_significance_and_marks(hand_sts: tuple, factory: sessionmaker[Session]) -> None:
    spec, fp, small, full = hand_sts
    columns = {"base": [full, full], "other": [small, CellRef(FP_B, 9, 9, label="gone")]}
    table = insight.diagonal_significance(spec, fp, columns, "base", "cosine_spearman", ["(1, 4)", "(2, 8)"],
                                          n_resamples=100, session_factory=factory)  # fmt: skip
    assert table["size"].tolist() == ["(1, 4)", "(2, 8)"]
    assert table["observed"].iloc[0] == pytest.approx(-1.2)
    # ranks swapped: A's ranks [1, 2, 3, 4], B's [4, 1, 2, 3]; of the 16 swaps, 4 give B - A <= -1.2
    # (-1.2 itself and three of -1.2649, e.g. swapping only pair 3), so p = 2 * 4/16 = 0.5
    assert table["p_value"].iloc[0] == pytest.approx(0.5)
    assert "no stored per-item scores" in table["note"].iloc[1] and math.isnan(table["p_value"].iloc[1])
    assert insight.significance_marks(table) == {}
    fake = table.assign(significant=[True, False])
    assert insight.significance_marks(fake) == {("(1, 4)", "other"): "▼"}
    with pytest.raises(insight.InsightError, match="baseline column"):
        insight.diagonal_significance(
            spec, fp, columns, "nope", "cosine_spearman", ["x"], session_factory=factory
        )


def test_real_tiny_lab_scores_agree_with_stored_metrics(
    tmp_path: Path, factory: sessionmaker[Session]
) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "tiny", layers=2, hidden=32)
    cache = EmbeddingCache(tmp_path / "cache")
    sts = datasets.DatasetSpec("tiny-sts", datasets.STS, write_sts(tmp_path / "tiny.tsv"), "test")
    beir = datasets.DatasetSpec("tiny-beir", datasets.RETRIEVAL, write_beir(tmp_path / "beir"), "test")
    for spec in (sts, beir):
        report = evaluate.evaluate_grid(str(ckpt), spec, dims=[8, 32], session_factory=factory, cache=cache)
        fp = report.checkpoint.fingerprint
        small, full = CellRef(fp, 1, 8, label="tiny"), CellRef(fp, 2, 32, label="tiny")
        main = metrics.MAIN_SCORE[spec.kind]
        stored = report.frame[report.frame["metric"] == main].set_index(["layer", "dim"])["value"]
        results = insight.compare_cells(
            spec, report.dataset_fingerprint, small, full, main, 200, session_factory=factory
        )
        # per-item scores are stored as float32: the recomputed metric matches the stored one closely
        assert results["bootstrap"].score_a == pytest.approx(stored[(1, 8)], abs=1e-5)
        assert results["bootstrap"].score_b == pytest.approx(stored[(2, 32)], abs=1e-5)
        table = insight.item_losses(spec, report.dataset_fingerprint, small, full, session_factory=factory)
        assert len(table) == (len(write_sts.__globals__["PAIRS"]) if spec.kind == "sts" else 2)
        assert table["loss"].is_monotonic_decreasing


def test_marks_appear_in_the_styled_per_size_table() -> None:
    from core import views

    table = pd.DataFrame({"base": [0.5, 0.6], "other": [0.7, math.nan]}, index=["(1, 32)", "mean"])
    marks = {("(1, 32)", "other"): "▲", ("absent", "other"): "▼"}
    html = views.style_best(table, {"(1, 32)": ["other"]}, marks=marks).to_html()
    assert "0.7000 ▲" in html and "0.5000<" in html and "▼" not in html
    assert "0.7000<" not in views.style_best(table, {}, marks=marks).to_html()
