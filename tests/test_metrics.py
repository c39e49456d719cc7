"""core.metrics: hand-computed tables, equality with scipy / pytrec_eval and an independent numpy version."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import pytrec_eval
from scipy import stats

from core.metrics import (
    GREATER_IS_BETTER,
    MAIN_SCORE,
    METRICS,
    RETRIEVAL_METRICS,
    MetricError,
    ranking_metrics,
    sts_correlations,
)

# ------------------------------------------------------------------------------------------------ STS


def test_sts_hand_computed() -> None:
    # x = [.1, .5, .9] (mean .5), y = [1, 2, 4] (mean 7/3): sum dx*dy = .4*4/3 + .4*5/3 = 1.2,
    # sum dx^2 = .32, sum dy^2 = 42/9 -> r = 1.2 / sqrt(.32 * 42 / 9) = 0.981980506; ranks agree -> rho = 1.
    result = sts_correlations([0.1, 0.5, 0.9], [1.0, 2.0, 4.0])
    assert result["cosine_spearman"] == pytest.approx(1.0)
    assert result["cosine_pearson"] == pytest.approx(1.2 / math.sqrt(0.32 * 42 / 9), abs=1e-12)


def test_sts_ties_use_average_ranks() -> None:
    # ranks of x = [1.5, 1.5, 3, 4], y = [1, 2, 3, 4]: cov 4.5, var 4.5 and 5 -> 4.5 / sqrt(22.5)
    result = sts_correlations([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert result["cosine_spearman"] == pytest.approx(4.5 / math.sqrt(22.5), abs=1e-12)


def test_sts_equals_scipy_on_random_data() -> None:
    rng = np.random.default_rng(7)
    sims = rng.normal(size=500)
    gold = sims + rng.normal(scale=2.0, size=500)
    result = sts_correlations(sims, gold)
    assert result["cosine_spearman"] == pytest.approx(stats.spearmanr(sims, gold).statistic, abs=1e-12)
    assert result["cosine_pearson"] == pytest.approx(stats.pearsonr(sims, gold).statistic, abs=1e-12)
    assert all(type(v) is float for v in result.values())


def test_sts_constant_input_is_nan_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = sts_correlations([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    assert math.isnan(result["cosine_spearman"]) and math.isnan(result["cosine_pearson"])


def test_sts_nan_similarity_gives_nan() -> None:
    result = sts_correlations([0.1, float("nan"), 0.3], [1.0, 2.0, 3.0])
    assert math.isnan(result["cosine_spearman"]) and math.isnan(result["cosine_pearson"])


@pytest.mark.parametrize(("sims", "gold"), [([0.1, 0.2], [1.0]), ([0.1], [1.0]), ([], [])])
def test_sts_bad_lengths_raise(sims: list[float], gold: list[float]) -> None:
    with pytest.raises(MetricError):
        sts_correlations(sims, gold)


# ------------------------------------------------------------------------------------------ constants


def test_constants() -> None:
    assert MAIN_SCORE == {"sts": "cosine_spearman", "retrieval": "ndcg_at_10"}
    assert METRICS["sts"] == ("cosine_spearman", "cosine_pearson")
    assert METRICS["retrieval"] == ("ndcg_at_10", "mrr_at_10", "recall_at_100", "map_at_100")
    for kind, main in MAIN_SCORE.items():
        assert METRICS[kind][0] == main
    assert set(GREATER_IS_BETTER) == {m for names in METRICS.values() for m in names}
    assert all(GREATER_IS_BETTER.values())


# ------------------------------------------------------------------------------------- hand-computed


def _descending(doc_ids: list[str]) -> dict[str, float]:
    return {doc: float(len(doc_ids) - i) for i, doc in enumerate(doc_ids)}


TOY_QRELS = {
    "q1": {"d1": 3, "d2": 1, "d5": 2},
    "q2": {"d3": 1, "d4": 0},
    "q3": {"d6": 2},
}
TOY_RUN = {
    "q1": _descending(["d2", "d3", "d1", "d4"]),
    "q2": _descending(["d4", "d1", "d3"]),
    "q3": _descending([f"x{i}" for i in range(10)] + ["d6"]),
    "unjudged": _descending(["d1"]),  # not in qrels: ignored
}
LOG2_3 = math.log2(3)
# q1: gains in rank order [1, 0, 3, 0]: DCG = 1/log2(2) + 3/log2(4) = 2.5;
#     ideal [3, 2, 1]: 3 + 2/log2(3) + 1/2 = 4.76186; nDCG = 2.5 / 4.76186.
#     first relevant at rank 1 -> RR 1. d2, d1 of {d1, d2, d5} found -> recall 2/3.
#     AP: P@1 = 1 (d2), P@3 = 2/3 (d1), d5 missing -> (1 + 2/3) / 3 = 5/9.
# q2: d4 is judged 0 = non-relevant (threshold 1). gains [0, 0, 1]: DCG = 1/log2(4) = 0.5, ideal 1.
#     RR 1/3, recall 1, AP (1/3) / 1.
# q3: the only relevant document is at rank 11: nDCG@10 0, MRR@10 0 (cut at 10), recall@100 1, AP 1/11.
TOY_EXPECTED = {
    "q1": {
        "ndcg_at_10": 2.5 / (3 + 2 / LOG2_3 + 0.5),
        "mrr_at_10": 1.0,
        "recall_at_100": 2 / 3,
        "map_at_100": 5 / 9,
    },
    "q2": {"ndcg_at_10": 0.5, "mrr_at_10": 1 / 3, "recall_at_100": 1.0, "map_at_100": 1 / 3},
    "q3": {"ndcg_at_10": 0.0, "mrr_at_10": 0.0, "recall_at_100": 1.0, "map_at_100": 1 / 11},
}


def test_ranking_hand_computed_table() -> None:
    aggregate, per_query = ranking_metrics(TOY_RUN, TOY_QRELS)
    assert set(per_query) == {"q1", "q2", "q3"}
    for qid, expected in TOY_EXPECTED.items():
        assert per_query[qid] == pytest.approx(expected, abs=1e-9), qid
    for name in RETRIEVAL_METRICS:
        assert aggregate[name] == pytest.approx(
            np.mean([TOY_EXPECTED[q][name] for q in TOY_EXPECTED]), abs=1e-9
        )
    assert aggregate["ndcg_at_10"] == pytest.approx((0.5250046 + 0.5) / 3, abs=1e-6)


def test_judged_query_missing_from_run_scores_zero() -> None:
    run = {qid: docs for qid, docs in TOY_RUN.items() if qid != "q2"}
    run["q3"] = {}
    aggregate, per_query = ranking_metrics(run, TOY_QRELS)
    assert per_query["q2"] == dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    assert per_query["q3"] == dict.fromkeys(RETRIEVAL_METRICS, 0.0)
    assert aggregate["mrr_at_10"] == pytest.approx(1.0 / 3)


def test_ties_keep_run_order_not_trec_eval_docno_rule() -> None:
    qrels = {"q": {"a": 1}}
    # Same scores; only the insertion order differs. trec_eval alone would always rank "b" first
    # (ties by docno, reverse order); we keep the order the search produced.
    _, first = ranking_metrics({"q": {"a": 1.0, "b": 1.0}}, qrels)
    _, second = ranking_metrics({"q": {"b": 1.0, "a": 1.0}}, qrels)
    assert first["q"]["mrr_at_10"] == 1.0
    assert second["q"]["mrr_at_10"] == 0.5
    assert second["q"]["ndcg_at_10"] == pytest.approx(1 / LOG2_3)


def test_empty_qrels_raise() -> None:
    with pytest.raises(MetricError):
        ranking_metrics({"q": {"a": 1.0}}, {})


# ------------------------------------------------------------------------- independent implementations


def numpy_metrics(ranked: list[str], judged: dict[str, int]) -> dict[str, float]:
    """Textbook definitions, written independently of pytrec_eval."""
    gains = np.array([max(judged.get(doc, 0), 0) for doc in ranked], dtype=np.float64)
    relevant = np.array([judged.get(doc, 0) >= 1 for doc in ranked])
    n_relevant = sum(1 for r in judged.values() if r >= 1)
    discounts = 1.0 / np.log2(np.arange(2, len(ranked) + 2))
    dcg = float(np.sum(gains[:10] * discounts[:10]))
    ideal_gains = np.sort(np.array([max(r, 0) for r in judged.values()], dtype=np.float64))[::-1][:10]
    idcg = float(np.sum(ideal_gains / np.log2(np.arange(2, len(ideal_gains) + 2))))
    hits10 = np.flatnonzero(relevant[:10])
    hit_ranks = np.flatnonzero(relevant[:100]) + 1
    precisions = np.arange(1, len(hit_ranks) + 1) / hit_ranks
    return {
        "ndcg_at_10": dcg / idcg if idcg > 0 else 0.0,
        "mrr_at_10": 1.0 / (hits10[0] + 1) if hits10.size else 0.0,
        "recall_at_100": len(hit_ranks) / n_relevant if n_relevant else 0.0,
        "map_at_100": float(precisions.sum()) / n_relevant if n_relevant else 0.0,
    }


def random_case(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    rng = np.random.default_rng(seed)
    docs = [f"doc{i}" for i in range(300)]
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(25):
        qid = f"q{q}"
        judged = rng.choice(300, size=int(rng.integers(1, 40)), replace=False)
        qrels[qid] = {docs[i]: int(rng.integers(0, 4)) for i in judged}
        retrieved = rng.choice(300, size=150, replace=False)
        scores = rng.random(150)  # continuous: no ties
        run[qid] = {docs[i]: float(s) for i, s in zip(retrieved, scores, strict=True)}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_independent_numpy_implementation(seed: int) -> None:
    run, qrels = random_case(seed)
    aggregate, per_query = ranking_metrics(run, qrels)
    expected = {}
    for qid, judged in qrels.items():
        ranked = sorted(run[qid], key=lambda d: -run[qid][d])
        expected[qid] = numpy_metrics(ranked, judged)
        assert per_query[qid] == pytest.approx(expected[qid], abs=1e-9), qid
    for name in RETRIEVAL_METRICS:
        assert aggregate[name] == pytest.approx(np.mean([e[name] for e in expected.values()]), abs=1e-9)


def test_equals_raw_pytrec_eval_without_ties() -> None:
    run, qrels = random_case(5)
    _, per_query = ranking_metrics(run, qrels)
    raw = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"}).evaluate(run)
    for qid in qrels:
        assert per_query[qid]["ndcg_at_10"] == pytest.approx(raw[qid]["ndcg_cut_10"], abs=1e-12)
        assert per_query[qid]["recall_at_100"] == pytest.approx(raw[qid]["recall_100"], abs=1e-12)
        assert per_query[qid]["map_at_100"] == pytest.approx(raw[qid]["map_cut_100"], abs=1e-12)
