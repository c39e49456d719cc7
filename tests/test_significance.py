"""Paired significance tests: hand-worked answers and equality with scipy.stats on small arrays.

Convention: every difference is ``score(B) - score(A)``. The randomization test swaps scale-free values
(within-system ranks for Spearman, z-scores for Pearson, per-query scores for a mean), so the scipy
references below are fed ``scipy.stats.rankdata`` / ``scipy.stats.zscore`` of each system.
"""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from core import significance as sg


@pytest.fixture(autouse=True)
def _quiet_scipy() -> None:
    warnings.simplefilter("ignore", stats.ConstantInputWarning)


def _sts_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 6, n).astype(float)  # many ties, as STS gold scores have
    a = gold + rng.normal(0, 1.0, n)
    b = gold + rng.normal(0, 2.0, n)
    b[:2] = a[:2]  # a tie across systems too
    return a, b, gold


def _like(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One value per row for 2-D input, a scalar for 1-D input (as scipy's statistic protocol wants)."""
    return rows if np.ndim(x) > 1 else rows[0]


def _spearman_gap(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
    """scipy reference: spearman(x, z) - spearman(y, z), per row of 2-D inputs."""
    x2, y2, z2 = (np.atleast_2d(v) for v in (x, y, z))
    return _like(
        x,
        np.array(
            [
                stats.spearmanr(xi, zi).statistic - stats.spearmanr(yi, zi).statistic
                for xi, yi, zi in zip(x2, y2, z2, strict=True)
            ]
        ),
    )


def _pearson_gap(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
    x2, y2, z2 = (np.atleast_2d(v) for v in (x, y, z))
    return _like(
        x,
        np.array(
            [
                stats.pearsonr(xi, zi).statistic - stats.pearsonr(yi, zi).statistic
                for xi, yi, zi in zip(x2, y2, z2, strict=True)
            ]
        ),
    )


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    return (xc * yc).sum(axis=-1) / np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))


def _mean_gap(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def test_doctests() -> None:
    assert doctest.testmod(sg, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_hand_worked_sign_flip() -> None:
    # differences [0.1, 0, 0.2, 0.2], mean 0.125; of the 16 sign patterns, only "all non-negative"
    # (2 patterns: the zero's sign does not matter) reaches 0.125, so each tail is 2/16 and p = 0.25.
    result = sg.paired_randomization([0.4, 0.6, 0.5, 0.7], [0.5, 0.6, 0.7, 0.9])
    assert result.exact and result.n_resamples == 16
    assert result.observed == pytest.approx(0.125) and result.delta == result.observed  # B - A
    assert result.p_value == pytest.approx(0.25)
    assert not result.significant


def test_hand_worked_weighted_ranks_equal_rankdata_of_the_multiset() -> None:
    values = np.array([0.3, 0.1, 0.3, 0.2])
    counts = np.array([[2.0, 0.0, 1.0, 1.0]])  # multiset {0.3, 0.3, 0.3, 0.2}
    ranks = sg._weighted_ranks(sg._tie_groups(values), counts)[0]
    # 0.2 is rank 1; the three 0.3 share ranks 2..4 -> 3
    assert ranks[[0, 2, 3]].tolist() == [3.0, 3.0, 1.0]
    multiset = np.repeat(values, counts[0].astype(int))
    assert sorted(stats.rankdata(multiset).tolist()) == sorted(
        np.repeat(ranks, counts[0].astype(int)).tolist()
    )


@pytest.mark.parametrize("statistic", ["spearman", "pearson"])
def test_observed_scores_equal_scipy(statistic: str) -> None:
    a, b, gold = _sts_data(40, seed=1)
    result = sg.paired_bootstrap(a, b, gold, statistic=statistic, n_resamples=10)  # type: ignore[arg-type]
    ref = stats.spearmanr if statistic == "spearman" else stats.pearsonr
    assert result.score_a == pytest.approx(ref(a, gold).statistic, abs=1e-12)
    assert result.score_b == pytest.approx(ref(b, gold).statistic, abs=1e-12)
    assert result.observed == pytest.approx(result.score_b - result.score_a, abs=1e-15)


@pytest.mark.parametrize(
    ("statistic", "reference", "n"),
    [("mean", _mean_gap, 9), ("spearman", _spearman_gap, 8), ("pearson", _pearson_gap, 7)],
)
def test_exact_randomization_equals_scipy_permutation_test(statistic: str, reference: object, n: int) -> None:
    a, b, gold = _sts_data(n, seed=2)
    scale_free = {"mean": lambda v: v, "spearman": stats.rankdata, "pearson": lambda v: stats.zscore(v)}
    data = (scale_free[statistic](b), scale_free[statistic](a))  # B - A, on the swapped values
    mine = sg.paired_randomization(a, b, None if statistic == "mean" else gold, statistic=statistic)  # type: ignore[arg-type]
    if statistic == "mean":
        ref = stats.permutation_test(
            data, reference, permutation_type="samples", vectorized=True, n_resamples=np.inf
        )
    else:  # gold rides along as a constant third "sample" of its own: swap only a and b

        def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return reference(x, y, np.broadcast_to(gold, np.shape(x)))  # type: ignore[operator]

        ref = stats.permutation_test(
            data, stat, permutation_type="samples", vectorized=True, n_resamples=np.inf
        )
    assert mine.exact and mine.n_resamples == 2**n
    assert mine.observed == pytest.approx(float(ref.statistic), abs=1e-12)
    assert mine.p_value == pytest.approx(float(ref.pvalue), abs=1e-12)
    null, exact = sg.randomization_distribution(
        a, b, None if statistic == "mean" else gold, statistic=statistic
    )  # type: ignore[arg-type]
    assert exact
    np.testing.assert_allclose(np.sort(null), np.sort(ref.null_distribution), atol=1e-12)


@pytest.mark.parametrize(
    ("statistic", "reference"), [("mean", _mean_gap), ("spearman", _spearman_gap), ("pearson", _pearson_gap)]
)
def test_bootstrap_equals_scipy_paired_bootstrap(statistic: str, reference: object) -> None:
    a, b, gold = _sts_data(25, seed=3)
    samples = (b, a) if statistic == "mean" else (b, a, gold)  # B - A
    gold_arg = None if statistic == "mean" else gold
    ref = stats.bootstrap(
        samples,
        reference,  # type: ignore[arg-type]
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=600,
        batch=200,
        rng=np.random.default_rng(7),
    )
    dist = sg.bootstrap_distribution(a, b, gold_arg, statistic=statistic, n_resamples=600, seed=7, chunk=200)  # type: ignore[arg-type]
    np.testing.assert_allclose(dist, ref.bootstrap_distribution, atol=1e-12)
    result = sg.paired_bootstrap(a, b, gold_arg, statistic=statistic, n_resamples=600, seed=7, chunk=200)  # type: ignore[arg-type]
    assert result.ci_low == pytest.approx(float(ref.confidence_interval.low), abs=1e-12)
    assert result.ci_high == pytest.approx(float(ref.confidence_interval.high), abs=1e-12)


def test_bootstrap_p_value_is_the_shifted_null_count() -> None:
    a, b, gold = _sts_data(30, seed=4)
    dist = sg.bootstrap_distribution(a, b, gold, n_resamples=500, seed=5)
    result = sg.paired_bootstrap(a, b, gold, n_resamples=500, seed=5)
    extreme = np.count_nonzero(np.abs(dist - result.observed) >= abs(result.observed))
    assert result.p_value == pytest.approx((extreme + 1) / 501)


@pytest.mark.parametrize("statistic", ["mean", "spearman"])
def test_sampled_randomization_agrees_with_scipy_within_sampling_error(statistic: str) -> None:
    rng = np.random.default_rng(11)
    n = 30
    gold = rng.normal(size=n)
    a = gold + rng.normal(0, 0.8, n)
    b = gold + rng.normal(0, 1.0, n)
    gold_arg = None if statistic == "mean" else gold
    mine = sg.paired_randomization(a, b, gold_arg, statistic=statistic, n_resamples=20_000, seed=1)  # type: ignore[arg-type]
    assert not mine.exact and mine.n_resamples == 20_000

    def stat(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        if statistic == "mean":
            return _mean_gap(x, y, axis)
        # vectorised reference: scipy's rankdata per row, then Pearson of ranks (= Spearman)
        rank_gold = stats.rankdata(gold)
        gaps = [_row_pearson(stats.rankdata(v, axis=-1), rank_gold) for v in (x, y)]
        return gaps[0] - gaps[1]

    ref = stats.permutation_test(
        (stats.rankdata(b), stats.rankdata(a)) if statistic == "spearman" else (b, a),
        stat,
        permutation_type="samples",
        vectorized=True,
        n_resamples=20_000,
        rng=np.random.default_rng(2),
    )
    # two independent Monte Carlo estimates of the same p-value: sd about sqrt(p(1-p)/20000) each
    assert abs(mine.p_value - float(ref.pvalue)) < 0.02


def test_seeded_and_reproducible() -> None:
    a, b, gold = _sts_data(50, seed=6)
    first = sg.paired_tests(a, b, gold, n_resamples=300, seed=3)
    again = sg.paired_tests(a, b, gold, n_resamples=300, seed=3)
    other = sg.paired_tests(a, b, gold, n_resamples=300, seed=4)
    assert first == again
    assert first["bootstrap"].ci_low != other["bootstrap"].ci_low
    # both tests report the same observed difference and the same (bootstrap) interval
    assert first["bootstrap"].observed == first["randomization"].observed
    assert (first["bootstrap"].ci_low, first["bootstrap"].ci_high) == (
        first["randomization"].ci_low,
        first["randomization"].ci_high,
    )


def test_identical_systems_are_not_different() -> None:
    a, _, gold = _sts_data(40, seed=8)
    for result in sg.paired_tests(a, a.copy(), gold, n_resamples=200).values():
        assert result.observed == 0.0
        assert result.p_value == 1.0
        assert result.ci_low == result.ci_high == 0.0


def test_a_clear_win_on_many_pairs_is_significant() -> None:
    rng = np.random.default_rng(9)
    n = 5000  # the size of STS-B test: must run in seconds with vectorised resampling
    gold = rng.integers(0, 26, n) / 5.0
    good = gold + rng.normal(0, 1.0, n)
    poor = gold + rng.normal(0, 3.0, n)
    results = sg.paired_tests(poor, good, gold, n_resamples=1000, seed=0)  # B (good) - A (poor) > 0
    for result in results.values():
        assert result.observed > 0.1
        assert result.p_value < 0.01 and result.significant
        assert 0 < result.ci_low < result.observed < result.ci_high
    flipped = sg.paired_bootstrap(good, poor, gold, n_resamples=1000, seed=0)
    assert flipped.observed == pytest.approx(-results["bootstrap"].observed)
    assert flipped.ci_high < 0


def test_retrieval_per_query_means() -> None:
    ndcg_a = np.array([1.0, 0.5, 0.0, 0.8, 0.6, 0.9])
    ndcg_b = np.array([0.9, 0.5, 0.1, 0.4, 0.6, 0.7])
    result = sg.paired_bootstrap(ndcg_b, ndcg_a, n_resamples=1000)  # B = ndcg_a is better by 0.1
    assert result.statistic == "mean"
    assert result.score_b == pytest.approx(ndcg_a.mean())
    assert result.observed == pytest.approx(0.1)
    exact = sg.paired_randomization(ndcg_b, ndcg_a)
    # 2**6 = 64 sign patterns over the differences [0.1, 0, -0.1, 0.4, 0, 0.2]
    diffs = ndcg_a - ndcg_b
    signs = np.array(np.meshgrid(*[[1, -1]] * 6)).reshape(6, -1).T
    null = (signs * diffs).mean(axis=1)
    tail = min(np.mean(null >= 0.1 - 1e-12), np.mean(null <= 0.1 + 1e-12))
    assert exact.p_value == pytest.approx(min(1.0, 2 * tail))


def test_constant_resamples_are_dropped_not_crashing() -> None:
    a = np.array([0.1, 0.2, 0.3])
    b = np.array([0.3, 0.1, 0.2])
    gold = np.array([1.0, 2.0, 3.0])
    result = sg.paired_bootstrap(a, b, gold, n_resamples=200, seed=0)
    assert 0 < result.n_valid < 200  # resamples of one repeated pair have no correlation
    assert math.isfinite(result.ci_low) and math.isfinite(result.p_value)


@pytest.mark.parametrize(
    ("a", "b", "gold", "statistic", "message"),
    [
        ([0.1, 0.2], [0.1], None, None, "not paired"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 2.0], None, "gold labels"),
        ([0.1], [0.2], None, None, "at least 2"),
        ([0.1, 0.2], [0.2, 0.1], [1.0, 2.0], None, "at least 3"),
        ([0.1, float("nan"), 0.3], [0.1, 0.2, 0.3], None, None, "NaN"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], None, "kendall", "unknown statistic"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], None, "spearman", "needs gold"),
        ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], "mean", "without gold"),
    ],
)
def test_bad_inputs_are_refused(
    a: list[float], b: list[float], gold: list[float] | None, statistic: str | None, message: str
) -> None:
    with pytest.raises(sg.SignificanceError, match=message):
        sg.paired_bootstrap(a, b, gold, statistic=statistic)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n_resamples": 0}, "n_resamples"), ({"confidence": 1.0}, "confidence")]
)
def test_bad_knobs_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(sg.SignificanceError, match=message):
        sg.paired_randomization([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- scale-free swaps


def _scaled_systems(seed: int, n: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two models whose cosine similarities live on different scales (A around 0.61, B around 0.74,
    wider), B ranking the pairs a little better: the situation of issue 14 (default vs trained)."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 26, n) / 5.0
    latent = gold + rng.normal(0, 1.2, n)
    a = 0.61 + 0.08 * np.tanh((latent + rng.normal(0, 0.8, n) - 2.5) / 2)
    b = 0.74 + 0.2 * np.tanh((latent + rng.normal(0, 0.6, n) - 2.5) / 2)
    return a, b, gold


def _swap_reference(
    a: np.ndarray, b: np.ndarray, gold: np.ndarray, n_resamples: int, seed: int, transform: object
) -> float:
    """An independent randomization test, one scipy ``spearmanr`` per resample: swap each pair's
    ``transform``-ed values (ranks, or the raw similarities) with the lab's swap masks (same draws)."""
    ta, tb = transform(a), transform(b)  # type: ignore[operator]
    rng = np.random.default_rng(seed)
    observed = stats.spearmanr(b, gold).statistic - stats.spearmanr(a, gold).statistic
    null = []
    for start in range(0, n_resamples, sg.DEFAULT_CHUNK):
        for swap in rng.random((min(sg.DEFAULT_CHUNK, n_resamples - start), len(a))) < 0.5:
            xb, xa = np.where(swap, ta, tb), np.where(swap, tb, ta)
            null.append(stats.spearmanr(xb, gold).statistic - stats.spearmanr(xa, gold).statistic)
    values = np.array(null)
    less = (np.count_nonzero(values <= observed) + 1) / (n_resamples + 1)
    greater = (np.count_nonzero(values >= observed) + 1) / (n_resamples + 1)
    return float(min(1.0, 2 * min(less, greater)))


def test_rank_swap_equals_an_independent_scipy_loop() -> None:
    a, b, gold = _scaled_systems(0, n=300)
    mine = sg.paired_randomization(a, b, gold, n_resamples=600, seed=5)
    assert not mine.exact
    assert mine.p_value == pytest.approx(_swap_reference(a, b, gold, 600, 5, stats.rankdata), abs=1e-12)


def test_randomization_agrees_with_the_bootstrap_where_a_raw_swap_does_not() -> None:
    """Issue 14: a raw-similarity swap mixes the two scales and calls a clear win noise (p ~ 0.3)."""
    a, b, gold = _scaled_systems(0)
    results = sg.paired_tests(a, b, gold, n_resamples=2000, seed=0)
    boot, rand = results["bootstrap"], results["randomization"]
    assert boot.delta > 0.02 and boot.ci_low > 0  # B is better and the interval says so
    assert boot.p_value < 0.02 and rand.p_value < 0.02  # both tests agree: significant
    raw = _swap_reference(a, b, gold, 500, 0, lambda v: v)
    assert raw > 0.2  # the old, scale-dependent swap disagreed
    a, b, gold = _scaled_systems(1)  # a small difference: neither test calls it
    results = sg.paired_tests(a, b, gold, n_resamples=2000, seed=0)
    assert results["bootstrap"].p_value > 0.2 and results["randomization"].p_value > 0.2


@pytest.mark.parametrize("statistic", ["spearman", "pearson"])
def test_randomization_does_not_depend_on_either_models_scale(statistic: str) -> None:
    a, b, gold = _sts_data(200, seed=12)
    base = sg.paired_randomization(a, b, gold, statistic=statistic, n_resamples=500, seed=1)  # type: ignore[arg-type]
    if statistic == "spearman":  # any increasing map of either model's similarities
        moved = sg.paired_randomization(
            np.exp(a), 0.3 * b + 0.6, gold, statistic="spearman", n_resamples=500, seed=1
        )
    else:  # any positive affine map
        moved = sg.paired_randomization(
            5 * a - 2, 0.3 * b + 0.6, gold, statistic="pearson", n_resamples=500, seed=1
        )
    assert moved.observed == pytest.approx(base.observed, abs=1e-12)
    assert moved.p_value == pytest.approx(base.p_value, abs=1e-12)
