"""Insight from stored per-item scores: where a sub-model loses, and whether a difference is significant.

Everything here reads the per-item scores grid evaluation stored (``pair_similarity`` per STS pair,
``query_<metric>`` per judged query) plus the dataset's texts and labels; nothing is re-encoded.

- :func:`item_losses`: for a cell against a baseline cell (the full model, or another checkpoint's cell)
  on the same dataset, one row per STS pair or judged query with texts, gold labels, both scores and
  the loss, worst first; :func:`losses_csv` exports it.
- :func:`compare_cells`: paired bootstrap and randomization tests (``core.significance``) of two cells,
  as B - A.
- :func:`diagonal_significance`: those tests for every size row of the Compare per-size table.

**Per-pair loss on STS.** The STS score is a rank correlation, so a pair matters through its rank, not
its raw cosine. Each pair gets a rank error ``|rank(similarity) - rank(gold)| / n`` (average ranks for
ties, so 0 means the pair sits exactly where gold puts it and 0.5 means half the dataset away); the
loss of the cell is its rank error minus the baseline's. Positive: the cell misplaces this pair more
than the baseline does. (Without ties, Spearman = 1 - 6 * sum(d_i^2) / (n (n^2 - 1)) for rank
differences d_i, so pairs with large rank errors are exactly the ones that pull the score down.)

**Per-query loss on retrieval.** The baseline's per-query metric minus the cell's (e.g. nDCG@10):
positive where the cell ranks that query's relevant documents worse.

Out of scope: drawing and widgets (pages), computing missing cells (core.lab.evaluate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy.orm import Session, sessionmaker

from common.errors import LabError
from core import backends, datasets, metrics, significance
from storage import repository

SNIPPET_CHARS = 160
MAX_RELEVANT_SHOWN = 5


class InsightError(LabError):
    """A view that cannot be built: missing per-item scores, changed dataset files, mismatched items."""


@dataclass(frozen=True)
class CellRef:
    """One stored cell of one checkpoint on one deployment backend; ``label`` is what tables show
    (default: the checkpoint fp)."""

    checkpoint_fp: str
    layer: int
    dim: int
    precision: str = "float32"
    label: str = ""
    backend: str = backends.DEFAULT_BACKEND

    @property
    def name(self) -> str:
        """``label (layer, dim[, precision][, backend])``."""
        prec = "" if self.precision == "float32" else f", {self.precision}"
        on = "" if self.backend == backends.DEFAULT_BACKEND else f", {self.backend}"
        return f"{self.label or self.checkpoint_fp[:8]} ({self.layer}, {self.dim}{prec}{on})"


@dataclass(frozen=True)
class PairedScores:
    """Both cells' per-item scores on the items they share, aligned, with gold labels for STS."""

    ids: list[str]
    a: np.ndarray  # (n,)
    b: np.ndarray  # (n,)
    gold: np.ndarray | None  # (n,) STS gold scores; None for retrieval
    statistic: str  # spearman | pearson | mean


def item_kind(dataset_kind: str, metric: str) -> str:
    """The stored per-item score behind a metric: ``pair_similarity`` (STS) or ``query_<metric>``."""
    if dataset_kind == datasets.STS:
        if metric not in metrics.STS_METRICS:
            raise InsightError(f"{metric!r} is not an STS metric ({', '.join(metrics.STS_METRICS)})")
        return "pair_similarity"
    if metric not in metrics.RETRIEVAL_METRICS:
        raise InsightError(f"{metric!r} is not a retrieval metric ({', '.join(metrics.RETRIEVAL_METRICS)})")
    return f"query_{metric}"


def _statistic(dataset_kind: str, metric: str) -> str:
    if dataset_kind != datasets.STS:
        return "mean"
    return "pearson" if metric == "cosine_pearson" else "spearman"


def _load_items(
    factory: sessionmaker[Session], dataset_fp: str, split: str, cell: CellRef, kind: str
) -> tuple[list[str], np.ndarray]:
    with factory() as s:
        found = repository.get_item_scores(
            s,
            checkpoint_fp=cell.checkpoint_fp,
            dataset_fp=dataset_fp,
            split=split,
            layer=cell.layer,
            dim=cell.dim,
            precision=cell.precision,
            kind=kind,
            backend=cell.backend,
        )
    if found is None:
        raise InsightError(
            f"{cell.name} has no stored per-item scores ({kind}) on this dataset: evaluate it first"
        )
    return found.ids, np.asarray(found.values, dtype=np.float64)


def _check_files(spec: datasets.DatasetSpec, dataset_fp: str) -> None:
    current = datasets.dataset_fingerprint(spec)
    if current != dataset_fp:
        raise InsightError(
            f"the files of dataset {spec.name!r} ({spec.path}) changed since it was evaluated: "
            "its stored per-item scores no longer match its texts"
        )


def paired_scores(
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    cell: CellRef,
    baseline: CellRef,
    metric: str,
    *,
    session_factory: sessionmaker[Session],
) -> PairedScores:
    """Both cells' stored per-item scores aligned on shared items (cell's order), with STS gold labels."""
    factory = session_factory
    kind = item_kind(spec.kind, metric)
    ids_a, values_a = _load_items(factory, dataset_fp, spec.split, cell, kind)
    ids_b, values_b = _load_items(factory, dataset_fp, spec.split, baseline, kind)
    position_b = {item: i for i, item in enumerate(ids_b)}
    keep = [i for i, item in enumerate(ids_a) if item in position_b]
    if not keep:
        raise InsightError(f"{cell.name} and {baseline.name} share no scored items")
    ids = [ids_a[i] for i in keep]
    a = values_a[keep]
    b = values_b[[position_b[item] for item in ids]]
    gold = None
    if spec.kind == datasets.STS:
        _check_files(spec, dataset_fp)
        data = datasets.load_dataset(spec)
        gold = np.asarray(data.scores, dtype=np.float64)[[int(item) for item in ids]]  # type: ignore[union-attr]
    return PairedScores(ids, a, b, gold, _statistic(spec.kind, metric))


def compare_cells(
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    a: CellRef,
    b: CellRef,
    metric: str,
    n_resamples: int = significance.DEFAULT_RESAMPLES,
    seed: int = 0,
    *,
    session_factory: sessionmaker[Session],
) -> dict[str, significance.PairedResult]:
    """Paired bootstrap and randomization tests of ``metric(b) - metric(a)`` (B - A) on shared items.

    STS: the statistic is the correlation with gold recomputed on each resample (Spearman for
    ``cosine_spearman``, Pearson for ``cosine_pearson``); retrieval: the mean of per-query ``metric``.
    """
    paired = paired_scores(spec, dataset_fp, a, b, metric, session_factory=session_factory)
    return significance.paired_tests(
        paired.a,
        paired.b,
        paired.gold,
        statistic=paired.statistic,  # type: ignore[arg-type]
        n_resamples=n_resamples,
        seed=seed,
    )


def significance_table(results: Mapping[str, significance.PairedResult]) -> pd.DataFrame:
    """One row per test: observed difference, 95% interval, p-value, resamples, exact, significant."""
    rows = [
        {
            "test": name,
            "A": r.score_a,
            "B": r.score_b,
            "B - A": r.delta,
            "CI low": r.ci_low,
            "CI high": r.ci_high,
            "p-value": r.p_value,
            "resamples": r.n_resamples,
            "exact": r.exact,
            "significant (p < 0.05)": r.significant,
        }
        for name, r in results.items()
    ]
    return pd.DataFrame(rows)


def _rank_error(values: np.ndarray, gold_ranks: np.ndarray) -> np.ndarray:
    n = len(values)
    return np.abs(stats.rankdata(values) - gold_ranks) / n


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(datasets.shown_text(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


STS_LOSS_COLUMNS: tuple[str, ...] = (
    "pair",
    "sentence1",
    "sentence2",
    "gold",
    "similarity",
    "baseline similarity",
    "rank error",
    "baseline rank error",
    "loss",
)
RETRIEVAL_LOSS_COLUMNS: tuple[str, ...] = (
    "query_id",
    "query",
    "relevant documents",
    "score",
    "baseline score",
    "loss",
)


def item_losses(
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    cell: CellRef,
    baseline: CellRef,
    metric: str | None = None,
    top: int | None = None,
    *,
    session_factory: sessionmaker[Session],
) -> pd.DataFrame:
    """Items where ``cell`` loses most against ``baseline``, worst first (see the module docstring).

    STS columns :data:`STS_LOSS_COLUMNS`; retrieval columns :data:`RETRIEVAL_LOSS_COLUMNS` (``score`` is the
    per-query ``metric``, default the main score; ``relevant documents`` lists up to five judged
    documents as ``id (grade): text``). ``top`` keeps the first rows; ties keep item order.
    """
    metric = metric or metrics.MAIN_SCORE[spec.kind]
    paired = paired_scores(spec, dataset_fp, cell, baseline, metric, session_factory=session_factory)
    _check_files(spec, dataset_fp)
    data = datasets.load_dataset(spec)
    if isinstance(data, datasets.STSData):
        gold = paired.gold if paired.gold is not None else np.empty(0)
        gold_ranks = stats.rankdata(gold)
        error_a = _rank_error(paired.a, gold_ranks)
        error_b = _rank_error(paired.b, gold_ranks)
        rows = [int(item) for item in paired.ids]
        frame = pd.DataFrame(
            {
                "pair": rows,
                "sentence1": [data.sentences1[i] for i in rows],
                "sentence2": [data.sentences2[i] for i in rows],
                "gold": gold,
                "similarity": paired.a,
                "baseline similarity": paired.b,
                "rank error": error_a,
                "baseline rank error": error_b,
                "loss": error_a - error_b,
            },
            columns=list(STS_LOSS_COLUMNS),
        )
    else:
        query_text = dict(zip(data.query_ids, data.query_texts, strict=True))
        doc_text = dict(zip(data.corpus_ids, data.corpus_texts, strict=True))

        def relevant(qid: str) -> str:
            judged = sorted(data.qrels.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
            shown = [
                f"{doc} ({grade}): {_snippet(doc_text.get(doc, ''), 80)}"
                for doc, grade in judged
                if grade > 0
            ]
            more = len(shown) - MAX_RELEVANT_SHOWN
            return " | ".join(shown[:MAX_RELEVANT_SHOWN]) + (f" | ... {more} more" if more > 0 else "")

        frame = pd.DataFrame(
            {
                "query_id": paired.ids,
                "query": [query_text.get(q, "") for q in paired.ids],
                "relevant documents": [relevant(q) for q in paired.ids],
                "score": paired.a,
                "baseline score": paired.b,
                "loss": paired.b - paired.a,
            },
            columns=list(RETRIEVAL_LOSS_COLUMNS),
        )
    frame = frame.sort_values("loss", ascending=False, kind="stable").reset_index(drop=True)
    return frame.head(top) if top is not None else frame


def losses_csv(frame: pd.DataFrame) -> str:
    """A loss table as CSV text (UTF-8, header, no index)."""
    return frame.to_csv(index=False)


def diagonal_significance(
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    cells_by_column: Mapping[str, Sequence[CellRef]],
    baseline: str,
    metric: str,
    row_labels: Sequence[str],
    n_resamples: int = 2000,
    seed: int = 0,
    *,
    session_factory: sessionmaker[Session],
) -> pd.DataFrame:
    """Paired randomization test of every column against ``baseline``, row by row of a per-size table.

    ``cells_by_column[name][i]`` is that column's cell at size row ``i`` (labelled ``row_labels[i]``).
    Returns one row per (size, column != baseline) with ``observed`` (column - baseline), the bootstrap
    interval, the randomization ``p_value``, ``significant`` (p < 0.05) and ``note`` (why a test is
    missing, e.g. no per-item scores). No correction for multiple comparisons is applied.
    """
    if baseline not in cells_by_column:
        raise InsightError(f"baseline column {baseline!r} is not among {', '.join(cells_by_column)}")
    rows = []
    base_cells = cells_by_column[baseline]
    for name, cells in cells_by_column.items():
        if name == baseline:
            continue
        for i, label in enumerate(row_labels):
            row: dict[str, object] = {"size": label, "column": name, "observed": math.nan, "ci_low": math.nan,
                                      "ci_high": math.nan, "p_value": math.nan, "significant": False, "note": ""}  # fmt: skip
            if i >= len(cells) or i >= len(base_cells):
                row["note"] = "no cell at this size"
            else:
                try:
                    result = compare_cells(
                        spec,
                        dataset_fp,
                        base_cells[i],
                        cells[i],
                        metric,
                        n_resamples,
                        seed,
                        session_factory=session_factory,
                    )["randomization"]
                except (InsightError, significance.SignificanceError) as exc:
                    row["note"] = str(exc)
                else:
                    row.update(
                        observed=result.observed,
                        ci_low=result.ci_low,
                        ci_high=result.ci_high,
                        p_value=result.p_value,
                        significant=result.significant,
                    )
            rows.append(row)
    return pd.DataFrame(
        rows, columns=["size", "column", "observed", "ci_low", "ci_high", "p_value", "significant", "note"]
    )


def significance_marks(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``{(size label, column): "▲" | "▼"}`` for significant wins / losses against the baseline."""
    marks: dict[tuple[str, str], str] = {}
    for row in table.itertuples(index=False):
        if bool(row.significant):
            marks[(str(row.size), str(row.column))] = "▲" if float(row.observed) > 0 else "▼"
    return marks


def significance_summary(table: pd.DataFrame, baseline: str) -> list[str]:
    """One plain line per compared column of a :func:`diagonal_significance` table.

    >>> t = pd.DataFrame({"size": ["s1", "s2", "s3"], "column": ["B"] * 3, "observed": [0.05, -0.01, 0.0],
    ...                   "p_value": [0.001, 0.2, 1.0], "significant": [True, False, False], "note": ""})
    >>> significance_summary(t, "A")
    ['B vs A: better at 1 of 3 sizes (s1), worse at none, no significant difference at 2 (s2, s3).']
    """
    lines = []
    for column, rows in table.groupby("column", sort=False):
        tested = rows[rows["note"].fillna("") == ""] if "note" in rows else rows
        better = [str(r.size) for r in tested.itertuples() if bool(r.significant) and float(r.observed) > 0]
        worse = [str(r.size) for r in tested.itertuples() if bool(r.significant) and float(r.observed) < 0]
        equal = [str(r.size) for r in tested.itertuples() if not bool(r.significant)]

        def part(labels: list[str]) -> str:
            return f"{len(labels)} ({', '.join(labels)})" if labels else "none"

        untested = len(rows) - len(tested)
        line = (
            f"{column} vs {baseline}: better at {len(better)} of {len(tested)} sizes"
            f"{' (' + ', '.join(better) + ')' if better else ''}, worse at {part(worse)}, "
            f"no significant difference at {part(equal)}"
        )
        lines.append(line + (f"; {untested} sizes not tested." if untested else "."))
    return lines
