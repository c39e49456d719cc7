"""Metrics as pure functions of raw per-item scores: STS correlations and ranking metrics.

STS: Spearman and Pearson correlation of the model's similarity with the gold score (scipy.stats). A
constant input has no correlation: the value is NaN (stored as such), never an exception.

Retrieval: computed with pytrec_eval (trec_eval), as MTEB does, with relevance threshold 1 (a qrels
score >= 1 is relevant, 0 or below is judged non-relevant). The trec_eval semantics relied on:

- ``ndcg_at_10`` = ``ndcg_cut.10``: gain = the graded qrels score (linear, not 2**rel - 1), discount
  ``1 / log2(rank + 1)``; the ideal ranking sorts every judged document by its score.
- ``mrr_at_10`` = ``recip_rank`` on the run cut to its top 10: 1 / rank of the first relevant document
  within the top 10, else 0 (MTEB cuts the run the same way).
- ``recall_at_100`` = ``recall.100``: relevant documents in the top 100 / all relevant documents.
- ``map_at_100`` = ``map_cut.100``: sum of precision@rank at each relevant document within the top
  100, divided by the number of relevant documents (all of them, not min(R, 100)).

Ordering: trec_eval sorts a run by score and breaks ties by document id in reverse string order. We
do not let that rule apply: each query's run is ordered by descending score, ties keeping the run's
insertion order (``core.retrieval.run_from_search`` inserts in rank order, i.e. (-score, doc index)),
and pytrec_eval receives rank-encoded scores, so metrics always describe the ranking the search made.

Averages are over the queries in ``qrels`` (judged queries). A judged query absent from the run (or with
an empty run) scores 0 on every metric (trec_eval ``-c``); run entries for unjudged queries are ignored.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pytrec_eval

from common.errors import LabError

STS_METRICS: tuple[str, ...] = ("cosine_spearman", "cosine_pearson")
RETRIEVAL_METRICS: tuple[str, ...] = ("ndcg_at_10", "mrr_at_10", "recall_at_100", "map_at_100")
MAIN_SCORE: dict[str, str] = {"sts": "cosine_spearman", "retrieval": "ndcg_at_10"}
METRICS: dict[str, tuple[str, ...]] = {"sts": STS_METRICS, "retrieval": RETRIEVAL_METRICS}
GREATER_IS_BETTER: dict[str, bool] = {name: True for names in METRICS.values() for name in names}
RELEVANCE_LEVEL = 1

# our key -> (trec_eval measure asked for, key pytrec_eval answers with)
_TREC_MEASURES: dict[str, tuple[str, str]] = {
    "ndcg_at_10": ("ndcg_cut.10", "ndcg_cut_10"),
    "recall_at_100": ("recall.100", "recall_100"),
    "map_at_100": ("map_cut.100", "map_cut_100"),
}
_MRR_CUTOFF = 10

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


class MetricError(LabError):
    """Inputs that cannot be scored (mismatched lengths, too few items)."""


def sts_correlations(
    similarities: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Spearman and Pearson correlation of per-pair similarities with gold scores.

    >>> sts_correlations([0.1, 0.5, 0.9], [1.0, 2.0, 4.0])
    {'cosine_spearman': 1.0, 'cosine_pearson': 0.9819805060619655}
    """
    sims = np.asarray(similarities, dtype=np.float64).ravel()
    ref = np.asarray(gold, dtype=np.float64).ravel()
    if sims.shape != ref.shape:
        raise MetricError(f"{sims.size} similarities but {ref.size} gold scores")
    if sims.size < 2:
        raise MetricError(f"a correlation needs at least 2 pairs, got {sims.size}")
    from scipy import stats  # heavy: ~0.8 s to import, which light commands (references, import-mteb) skip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning / NearConstantInputWarning: NaN says it
        spearman = float(stats.spearmanr(sims, ref).statistic)
        pearson = float(stats.pearsonr(sims, ref).statistic) if np.isfinite(sims).all() else math.nan
    return {"cosine_spearman": spearman, "cosine_pearson": pearson}


def _rank_encoded(scores: Mapping[str, float], cutoff: int | None = None) -> dict[str, float]:
    """Scores replaced by n - rank, rank from descending score with insertion order on ties."""
    order = sorted(range(len(scores)), key=list(-float(v) for v in scores.values()).__getitem__)
    doc_ids = list(scores)
    if cutoff is not None:
        order = order[:cutoff]
    n = len(order)
    return {doc_ids[i]: float(n - r) for r, i in enumerate(order)}


def ranking_metrics(run: Run, qrels: Qrels) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """nDCG@10, MRR@10, recall@100 and MAP@100 of a run against qrels (see the module docstring).

    Args:
        run: query id -> doc id -> score (higher is better; insertion order breaks ties).
        qrels: query id -> doc id -> graded relevance (>= 1 relevant).

    Returns:
        (mean over judged queries, per judged query) with keys ``RETRIEVAL_METRICS``.
    """
    if not qrels:
        raise MetricError("no judged queries in qrels")
    trec_qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    full_run: dict[str, dict[str, float]] = {}
    cut_run: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        if qid in trec_qrels and docs:
            full_run[qid] = _rank_encoded(docs)
            cut_run[qid] = _rank_encoded(docs, _MRR_CUTOFF)
    measures = {measure for measure, _ in _TREC_MEASURES.values()}
    full = pytrec_eval.RelevanceEvaluator(trec_qrels, measures, relevance_level=RELEVANCE_LEVEL).evaluate(
        full_run
    )
    cut = pytrec_eval.RelevanceEvaluator(
        trec_qrels, {"recip_rank"}, relevance_level=RELEVANCE_LEVEL
    ).evaluate(cut_run)
    per_query: dict[str, dict[str, float]] = {}
    for qid in trec_qrels:
        values = {name: 0.0 for name in RETRIEVAL_METRICS}
        if qid in full:
            for name, (_, answer_key) in _TREC_MEASURES.items():
                values[name] = float(full[qid][answer_key])
        if qid in cut:
            values["mrr_at_10"] = float(cut[qid]["recip_rank"])
        per_query[qid] = values
    aggregate = {name: float(np.mean([v[name] for v in per_query.values()])) for name in RETRIEVAL_METRICS}
    return aggregate, per_query
