"""Paired significance of the difference between two systems scored on the same items.

Two systems A and B (two cells, or two checkpoints) scored on the same STS pairs or the same judged
queries. The statistic is ``score(B) - score(A)`` (one convention everywhere: A is the baseline, a
positive difference means B is better):

- STS (``gold`` given): the correlation of each system's per-pair similarities with the gold scores,
  ``spearman`` (the main score; average ranks for ties, as scipy) or ``pearson``;
- retrieval (``gold`` None): the ``mean`` of per-query scores (e.g. nDCG@10 of each judged query).

Two tests, both two-sided, seeded (same seed, same answer) and vectorised in numpy:

- :func:`paired_bootstrap`: resample the items with replacement ``n_resamples`` times (pairs keep both
  systems' scores and the gold label together) and recompute the statistic on each resample; the 95%
  interval is the percentile interval of those differences, exactly what
  ``scipy.stats.bootstrap(..., paired=True, method='percentile')`` gives with the same generator and
  ``batch``. Its p-value tests "no difference" with the shifted bootstrap distribution (Efron &
  Tibshirani 1993, sec. 16.4; Berg-Kirkpatrick et al. 2012): ``(1 + #{|d*_b - d| >= |d|}) / (B + 1)``.
- :func:`paired_randomization`: under "A and B are exchangeable", each item's two values are swapped
  with probability 1/2; the p-value is scipy's ``permutation_test(..., permutation_type='samples')``
  definition (two-sided = twice the smaller tail, +1 correction when sampled; exact enumeration of all
  ``2**n`` swaps when that is no more than ``n_resamples``). A permutation test has no interval of its
  own for a correlation difference, so its result carries the paired-bootstrap percentile interval.

  **The swapped values are scale-free.** Two models' raw cosine similarities live on different scales
  (one model's pairs around 0.6, the other's around 0.75), so swapping raw similarities mixes the
  scales and the null is not "A and B are exchangeable" (on STS-B, a real difference got p = 0.34
  from a raw swap against the bootstrap's 0.045). What is swapped is what the statistic sees:
  Spearman: each pair's *within-model rank* (A's rank of the pair among A's similarities, B's among
  B's; ties averaged), then Spearman is recomputed on the swapped vectors; Pearson: each pair's
  within-model z-score; retrieval: the per-query scores themselves (the sign of each query's
  difference flips). None of these transforms changes the observed statistic.

Speed: Spearman needs the ranks of every resample. Instead of sorting each resample, every vector is
sorted once into groups of equal values; a resample is a vector of integer weights over those values
(bootstrap: how often each item was drawn; randomization: which of the pair's two values is kept), and
the average rank of a group is its cumulative weight minus half its own extra weight. So each resample
costs O(n) with no sort; 5,000 pairs x 10,000 resamples takes seconds on one core.

Out of scope: loading stored scores (core.lab.insight does that) and multiple-comparison corrections (a
table of many marks is uncorrected; say so where shown).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from common.errors import LabError

ArrayLike = Any  # a sequence of floats or a 1-D numpy array
Statistic = Literal["spearman", "pearson", "mean"]
STATISTICS: tuple[str, ...] = ("spearman", "pearson", "mean")
DEFAULT_RESAMPLES = 10_000
DEFAULT_CHUNK = 128  # resamples per vectorised block: memory O(chunk * n)
ALPHA = 0.05


class SignificanceError(LabError):
    """Scores that cannot be compared (different lengths, too few items, unknown statistic)."""


@dataclass(frozen=True)
class PairedResult:
    """One paired test of ``score(B) - score(A)`` (``observed``; ``delta`` is the same number).

    ``n_resamples`` is the number actually used (``2**n`` for an exact randomization test);
    ``n_valid`` excludes resamples whose statistic is undefined (a constant resample has no correlation).
    """

    test: str  # "bootstrap" | "randomization"
    statistic: str  # "spearman" | "pearson" | "mean"
    score_a: float
    score_b: float
    observed: float  # score_b - score_a (B - A)
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float
    n_items: int
    n_resamples: int
    n_valid: int
    exact: bool
    seed: int

    @property
    def delta(self) -> float:
        """``score_b - score_a``: positive when B scores higher than A."""
        return self.observed

    @property
    def significant(self) -> bool:
        """True when ``p_value < 0.05``."""
        return bool(self.p_value < ALPHA)

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain dict (for tables and JSON)."""
        out: dict[str, float | int | str | bool] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["significant"] = self.significant
        return out


# ----------------------------------------------------------------------------------- rank machinery


@dataclass(frozen=True)
class _TieGroups:
    """A vector sorted once into groups of equal values: ``order`` sorts it, ``starts`` opens each group
    in sorted order, ``group_of[i]`` is the group of element i."""

    order: np.ndarray  # (m,)
    starts: np.ndarray  # (G,)
    group_of: np.ndarray  # (m,)


def _tie_groups(values: np.ndarray) -> _TieGroups:
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new_group = np.empty(len(values), dtype=bool)
    new_group[:1] = True
    new_group[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new_group)
    group_sorted = np.cumsum(new_group) - 1
    group_of = np.empty(len(values), dtype=np.int64)
    group_of[order] = group_sorted
    return _TieGroups(order, starts, group_of)


def _weighted_ranks(groups: _TieGroups, weights: np.ndarray) -> np.ndarray:
    """Average 1-based ranks of each element in the multiset where element i appears ``weights[:, i]`` times.

    ``weights`` is (B, m); the answer is (B, m) (elements of weight 0 get the rank they would share).

    >>> g = _tie_groups(np.array([3.0, 1.0, 3.0]))
    >>> _weighted_ranks(g, np.array([[1, 1, 1], [0, 2, 1]]))
    array([[2.5, 1. , 2.5],
           [3. , 1.5, 3. ]])
    """
    per_group = np.add.reduceat(weights[:, groups.order], groups.starts, axis=1).astype(np.float64)  # (B, G)
    group_rank = np.cumsum(per_group, axis=1) - (per_group - 1.0) / 2.0  # (B, G)
    return group_rank[:, groups.group_of]


def _centred(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row minus its weighted mean, and each row's weighted sum of squared deviations (0 if constant)."""
    if weights is None:
        total = np.full(x.shape[0], float(x.shape[1]))
        mean = x.mean(axis=1)
        xc = x - mean[:, None]
        var = np.einsum("ij,ij->i", xc, xc)
    else:
        total = weights.sum(axis=1)
        mean = np.einsum("ij,ij->i", weights, x) / total
        xc = x - mean[:, None]
        var = np.einsum("ij,ij,ij->i", weights, xc, xc)
    # Rounding-level variance (a constant row centred with a rounded mean) is zero: NaN, as scipy gives.
    var[var <= 1e-20 * (var + total * mean * mean)] = 0.0
    return xc, var


def _correlation_gap(xa: np.ndarray, xb: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Row-wise ``pearson(xa, y) - pearson(xb, y)`` with item weights (B, n) or equal weights; NaN if undefined."""
    yc, var_y = _centred(y, weights)
    wyc = yc if weights is None else weights * yc
    gap = np.zeros(len(var_y))
    for sign, x in ((1.0, xa), (-1.0, xb)):
        xc, var_x = _centred(x, weights)
        cov = np.einsum("ij,ij->i", wyc, xc)
        denom = np.sqrt(var_x * var_y)
        corr = np.full(len(cov), np.nan)
        np.divide(cov, denom, out=corr, where=denom > 0)
        gap += sign * np.clip(corr, -1.0, 1.0)
    return gap


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two vectors (NaN when one is constant)."""
    xc, var_x = _centred(x[None, :], None)
    yc, var_y = _centred(y[None, :], None)
    denom = float(np.sqrt(var_x[0] * var_y[0]))
    return float(np.clip(np.dot(xc[0], yc[0]) / denom, -1.0, 1.0)) if denom > 0 else math.nan


# ----------------------------------------------------------------------------------- inputs


def _check(
    a: ArrayLike, b: ArrayLike, gold: ArrayLike | None, statistic: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    left = np.asarray(a, dtype=np.float64).ravel()
    right = np.asarray(b, dtype=np.float64).ravel()
    if left.shape != right.shape:
        raise SignificanceError(f"system A has {left.size} scores, system B has {right.size}: not paired")
    ref = None if gold is None else np.asarray(gold, dtype=np.float64).ravel()
    if ref is not None and ref.shape != left.shape:
        raise SignificanceError(f"{left.size} paired scores but {ref.size} gold labels")
    stat = statistic or ("mean" if ref is None else "spearman")
    if stat not in STATISTICS:
        raise SignificanceError(f"unknown statistic {stat!r}; choose from {', '.join(STATISTICS)}")
    if stat == "mean" and ref is not None:
        raise SignificanceError("the 'mean' statistic takes per-item scores without gold labels")
    if stat != "mean" and ref is None:
        raise SignificanceError(f"the {stat!r} statistic needs gold labels")
    need = 2 if stat == "mean" else 3
    if left.size < need:
        raise SignificanceError(f"a paired test of {stat!r} needs at least {need} items, got {left.size}")
    for name, arr in (("A", left), ("B", right), ("gold", ref)):
        if arr is not None and not np.isfinite(arr).all():
            raise SignificanceError(f"scores of {name} contain NaN or infinity")
    return left, right, ref, stat


def _check_knobs(n_resamples: int, confidence: float, chunk: int) -> None:
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise SignificanceError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise SignificanceError(f"confidence must be between 0 and 1, got {confidence!r}")
    if chunk < 1:
        raise SignificanceError(f"chunk must be >= 1, got {chunk!r}")


def _gold(ref: np.ndarray | None) -> np.ndarray:
    if ref is None:  # _check guarantees gold for correlations; this keeps the types honest
        raise SignificanceError("a correlation statistic needs gold labels")
    return ref


def _scores(x: np.ndarray, ref: np.ndarray | None, stat: str) -> float:
    """The statistic of one system on all items (equals scipy's spearmanr / pearsonr / numpy mean)."""
    if stat == "mean":
        return float(np.mean(x))
    gold = _gold(ref)
    if stat == "pearson":
        return _pearson(x, gold)
    ones = np.ones((1, len(x)), dtype=np.int64)
    return _pearson(_weighted_ranks(_tie_groups(x), ones)[0], _weighted_ranks(_tie_groups(gold), ones)[0])


def _chunks(total: int, chunk: int) -> Iterator[int]:
    for start in range(0, total, chunk):
        yield min(chunk, total - start)


# ----------------------------------------------------------------------------------- bootstrap


def _bootstrap(
    left: np.ndarray,
    right: np.ndarray,
    ref: np.ndarray | None,
    stat: str,
    n_resamples: int,
    seed: int,
    chunk: int,
) -> np.ndarray:
    n = left.size
    rng = np.random.default_rng(seed)
    if stat == "spearman":
        groups = [_tie_groups(v) for v in (left, right, _gold(ref))]
    out = np.empty(n_resamples, dtype=np.float64)
    done = 0
    for rows in _chunks(n_resamples, chunk):
        drawn = rng.integers(0, n, (rows, n))  # (rows, n) item indices, as scipy.stats.bootstrap draws them
        offsets = (np.arange(rows, dtype=np.int64) * n)[:, None]
        counts = (
            np.bincount((drawn + offsets).ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        )
        if stat == "mean":
            means = counts @ np.column_stack((left, right)) / n  # (rows, 2)
            out[done : done + rows] = means[:, 0] - means[:, 1]
        else:
            if stat == "spearman":
                xa, xb, xg = (_weighted_ranks(g, counts) for g in groups)  # (rows, n) each
            else:
                xa, xb, xg = (np.broadcast_to(v, (rows, n)) for v in (left, right, _gold(ref)))
            out[done : done + rows] = _correlation_gap(xa, xb, xg, counts)
        done += rows
    return out


def bootstrap_distribution(
    a: ArrayLike,
    b: ArrayLike,
    gold: ArrayLike | None = None,
    *,
    statistic: Statistic | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """``score(B) - score(A)`` on each of ``n_resamples`` paired resamples, shape (n_resamples,).

    Resamples are drawn as ``rng.integers(0, n, (rows, n))`` in blocks of ``chunk`` rows, as
    ``scipy.stats.bootstrap(..., batch=chunk)`` draws them, so both see the same resamples for a seed.
    """
    left, right, ref, stat = _check(a, b, gold, statistic)
    _check_knobs(n_resamples, 0.5, chunk)
    return _bootstrap(right, left, ref, stat, n_resamples, seed, chunk)


def _bootstrap_summary(
    distribution: np.ndarray, observed: float, confidence: float
) -> tuple[float, float, float, int]:
    """(ci_low, ci_high, p_value, n_valid) of a bootstrap distribution of differences."""
    valid = distribution[np.isfinite(distribution)]
    if valid.size == 0:
        return math.nan, math.nan, math.nan, 0
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(valid, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    if not math.isfinite(observed):
        return float(low), float(high), math.nan, int(valid.size)
    tolerance = np.finfo(np.float64).eps * 100 * abs(observed)  # scipy's tolerance for equal statistics
    extreme = np.count_nonzero(np.abs(valid - observed) >= abs(observed) - tolerance)
    p_value = (extreme + 1.0) / (valid.size + 1.0)
    return float(low), float(high), float(min(1.0, p_value)), int(valid.size)


def paired_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    gold: ArrayLike | None = None,
    *,
    statistic: Statistic | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = DEFAULT_CHUNK,
) -> PairedResult:
    """Paired bootstrap of ``score(B) - score(A)``: percentile interval and shifted-null p-value.

    Args:
        a: per-item scores of system A (STS: per-pair similarities; retrieval: a per-query metric).
        b: the same items scored by system B.
        gold: STS gold scores (the statistic is then a correlation with them); None for per-query means.
        statistic: ``spearman`` (default with gold), ``pearson``, or ``mean`` (default without gold).
        n_resamples: bootstrap resamples.
        seed: seed of ``numpy.random.default_rng``.
        confidence: level of the two-sided percentile interval.
        chunk: resamples per vectorised block (memory about 5 * chunk * n * 8 bytes).

    >>> r = paired_bootstrap([0.4, 0.6, 0.5, 0.7], [0.5, 0.6, 0.7, 0.9], n_resamples=2000, seed=1)
    >>> round(r.delta, 3), r.ci_low >= 0.0  # B - A: B is better
    (0.125, True)
    """
    left, right, ref, stat = _check(a, b, gold, statistic)
    _check_knobs(n_resamples, confidence, chunk)
    score_a, score_b = _scores(left, ref, stat), _scores(right, ref, stat)
    dist = _bootstrap(right, left, ref, stat, n_resamples, seed, chunk)
    low, high, p_value, n_valid = _bootstrap_summary(dist, score_b - score_a, confidence)
    return PairedResult(
        "bootstrap", stat, score_a, score_b, score_b - score_a, p_value, low, high, confidence,
        left.size, n_resamples, n_valid, False, seed,
    )  # fmt: skip


# ----------------------------------------------------------------------------------- randomization


def exchangeable_values(scores: ArrayLike, statistic: str) -> np.ndarray:
    """What the randomization test swaps between two systems: values the statistic sees, on one scale.

    Spearman: the within-system average ranks (1..n); Pearson: the within-system z-scores (a constant
    system is left as is); mean (retrieval): the per-query scores. The statistic of the returned vector
    equals the statistic of ``scores``.

    >>> exchangeable_values([0.61, 0.92, 0.75, 0.75], "spearman").tolist()
    [1.0, 4.0, 2.5, 2.5]
    """
    x = np.asarray(scores, dtype=np.float64).ravel()
    if statistic == "spearman":
        return _weighted_ranks(_tie_groups(x), np.ones((1, x.size), dtype=np.int64))[0]
    if statistic == "pearson":
        spread = float(np.std(x))
        return (x - float(np.mean(x))) / spread if spread > 0 else x
    return x


def _swap_blocks(n: int, n_resamples: int, seed: int, chunk: int) -> tuple[Iterator[np.ndarray], int, bool]:
    """Blocks of boolean swap masks (rows, n): all 2**n when that is <= n_resamples, else random ones."""
    if n < 63 and 2**n <= n_resamples:

        def exact() -> Iterator[np.ndarray]:
            patterns = itertools.product((False, True), repeat=n)
            while block := list(itertools.islice(patterns, chunk)):
                yield np.array(block, dtype=bool).reshape(len(block), n)

        return exact(), 2**n, True
    rng = np.random.default_rng(seed)

    def sampled() -> Iterator[np.ndarray]:
        for rows in _chunks(n_resamples, chunk):
            yield rng.random((rows, n)) < 0.5

    return sampled(), n_resamples, False


def _null_block(
    left: np.ndarray,
    right: np.ndarray,
    ref: np.ndarray | None,
    stat: str,
    swap: np.ndarray,
    rank_groups: _TieGroups | None,
    gold_rank: np.ndarray | None,
) -> np.ndarray:
    """``score(left') - score(right')`` for each row of ``swap`` (rows, n): True where item i's values trade."""
    rows, n = swap.shape
    if stat == "mean":
        diff = left - right  # a swap flips the sign of the item's difference
        return np.asarray(np.where(swap, -diff, diff).mean(axis=1))
    if stat == "pearson":
        xa, xb = np.where(swap, right, left), np.where(swap, left, right)
        return _correlation_gap(xa, xb, np.broadcast_to(_gold(ref), (rows, n)), None)
    if rank_groups is None or gold_rank is None:
        raise SignificanceError("spearman needs rank groups")  # unreachable: _randomization passes them
    taken = swap.astype(np.int64)
    weights_a = np.concatenate((1 - taken, taken), axis=1)  # (rows, 2n): which values A holds
    ranks_a = _weighted_ranks(rank_groups, weights_a)  # (rows, 2n)
    ranks_b = _weighted_ranks(rank_groups, 1 - weights_a)
    ra = np.where(swap, ranks_a[:, n:], ranks_a[:, :n])  # rank of the value A holds for item i
    rb = np.where(swap, ranks_b[:, :n], ranks_b[:, n:])
    return _correlation_gap(ra, rb, np.broadcast_to(gold_rank, (rows, n)), None)


def _randomization(
    left: np.ndarray,
    right: np.ndarray,
    ref: np.ndarray | None,
    stat: str,
    n_resamples: int,
    seed: int,
    chunk: int,
) -> tuple[np.ndarray, bool, float]:
    """Null distribution, whether it is exact, and the unswapped statistic computed the same way (so
    the identity swap always counts as "as extreme as observed", whatever the rounding)."""
    n = left.size
    blocks, total, exact = _swap_blocks(n, n_resamples, seed, chunk)
    out = np.empty(total, dtype=np.float64)
    groups = gold_rank = None
    if stat == "spearman":
        groups = _tie_groups(np.concatenate((left, right)))  # the 2n values a system's ranks come from
        gold_rank = _weighted_ranks(_tie_groups(_gold(ref)), np.ones((1, n), dtype=np.int64))  # (1, n)
    identity = float(_null_block(left, right, ref, stat, np.zeros((1, n), dtype=bool), groups, gold_rank)[0])
    done = 0
    for swap in blocks:
        rows = swap.shape[0]
        out[done : done + rows] = _null_block(left, right, ref, stat, swap, groups, gold_rank)
        done += rows
    return out, exact, identity


def randomization_distribution(
    a: ArrayLike,
    b: ArrayLike,
    gold: ArrayLike | None = None,
    *,
    statistic: Statistic | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, bool]:
    """Null distribution of ``score(B) - score(A)`` under random within-item swaps of the scale-free values
    (:func:`exchangeable_values`), and whether it is exact."""
    left, right, ref, stat = _check(a, b, gold, statistic)
    _check_knobs(n_resamples, 0.5, chunk)
    null, exact, _ = _randomization(
        exchangeable_values(right, stat), exchangeable_values(left, stat), ref, stat, n_resamples, seed, chunk
    )
    return null, exact


def _randomization_p_value(null: np.ndarray, observed: float, exact: bool) -> tuple[float, int]:
    """scipy ``permutation_test`` two-sided p-value (and the number of finite null values)."""
    valid = null[np.isfinite(null)]
    if valid.size == 0 or not math.isfinite(observed):
        return math.nan, int(valid.size)
    adjustment = 0 if exact else 1
    gamma = abs(np.finfo(np.float64).eps * 100 * observed)
    less = (np.count_nonzero(valid <= observed + gamma) + adjustment) / (valid.size + adjustment)
    greater = (np.count_nonzero(valid >= observed - gamma) + adjustment) / (valid.size + adjustment)
    return float(min(1.0, 2.0 * min(less, greater))), int(valid.size)


def paired_randomization(
    a: ArrayLike,
    b: ArrayLike,
    gold: ArrayLike | None = None,
    *,
    statistic: Statistic | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = DEFAULT_CHUNK,
) -> PairedResult:
    """Paired randomization (swap / sign-flip) test of ``score(B) - score(A)``.

    Same arguments as :func:`paired_bootstrap`. The p-value follows
    ``scipy.stats.permutation_test(..., permutation_type='samples')``; the interval is the paired
    bootstrap's percentile interval with the same seed (a permutation test has no interval of its own).

    >>> r = paired_randomization([0.4, 0.6, 0.5, 0.7], [0.5, 0.6, 0.7, 0.9])
    >>> r.exact, r.n_resamples, r.p_value  # all 16 swaps; 2 give a mean difference >= 0.125, 2 give <= -0.125
    (True, 16, 0.25)
    """
    return paired_tests(
        a,
        b,
        gold,
        statistic=statistic,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        chunk=chunk,
    )["randomization"]


def paired_tests(
    a: ArrayLike,
    b: ArrayLike,
    gold: ArrayLike | None = None,
    *,
    statistic: Statistic | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, PairedResult]:
    """Both tests, ``{"bootstrap": ..., "randomization": ...}``, sharing one bootstrap (same seed, same interval)."""
    left, right, ref, stat = _check(a, b, gold, statistic)
    _check_knobs(n_resamples, confidence, chunk)
    score_a, score_b = _scores(left, ref, stat), _scores(right, ref, stat)
    observed = score_b - score_a
    boot = _bootstrap(right, left, ref, stat, n_resamples, seed, chunk)
    low, high, boot_p, boot_valid = _bootstrap_summary(boot, observed, confidence)
    null, exact, unswapped = _randomization(
        exchangeable_values(right, stat), exchangeable_values(left, stat), ref, stat, n_resamples, seed, chunk
    )
    perm_p, perm_valid = _randomization_p_value(
        null, unswapped if math.isfinite(observed) else observed, exact
    )
    bootstrap = PairedResult(
        "bootstrap", stat, score_a, score_b, observed, boot_p, low, high, confidence,
        int(left.size), n_resamples, boot_valid, False, seed,
    )  # fmt: skip
    randomization = replace(
        bootstrap,
        test="randomization",
        p_value=perm_p,
        n_resamples=int(null.size),
        n_valid=perm_valid,
        exact=exact,
    )
    return {"bootstrap": bootstrap, "randomization": randomization}
