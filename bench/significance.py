"""Significance benchmark: paired bootstrap + randomization tests at STS and retrieval sizes.

Times ``core.significance.paired_tests`` (both tests, one shared bootstrap) on synthetic scores:
STS Spearman at 1,379 pairs (STS-B test) and 5,000 pairs, and per-query means at 225 queries
(Cranfield) and 5,000 queries, each at 1,000 and 10,000 resamples; and, for contrast, scipy's
``permutation_test`` with a vectorised Spearman statistic (rankdata per resample) on the same STS data.

Usage: ``python bench/significance.py [--quick]``. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import significance


def sts_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 26, n) / 5.0  # STS-like gold with ties
    return gold + rng.normal(0, 1.0, n), gold + rng.normal(0, 1.1, n), gold


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def scipy_spearman_permutation(a: np.ndarray, b: np.ndarray, gold: np.ndarray, resamples: int) -> None:
    from scipy import stats

    rank_gold = stats.rankdata(gold)

    def row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xc, yc = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
        return (xc * yc).sum(-1) / np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return row_pearson(stats.rankdata(x, axis=-1), rank_gold) - row_pearson(
            stats.rankdata(y, axis=-1), rank_gold
        )

    stats.permutation_test((a, b), statistic, permutation_type="samples", vectorized=True,
                           n_resamples=resamples, batch=128, rng=np.random.default_rng(0))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 resamples only")
    args = parser.parse_args()
    resample_list = [1000] if args.quick else [1000, 10_000]
    print(f"{'case':<34} {'resamples':>9} {'seconds':>8}")
    for n in (1379, 5000):
        a, b, gold = sts_data(n)
        for resamples in resample_list:
            seconds = timed(significance.paired_tests, a, b, gold, n_resamples=resamples)
            print(f"{'STS Spearman, ' + format(n, ',') + ' pairs':<34} {resamples:>9,} {seconds:>8.2f}")
    for n in (225, 5000):
        rng = np.random.default_rng(1)
        a, b = rng.random(n), rng.random(n)
        for resamples in resample_list:
            seconds = timed(significance.paired_tests, a, b, n_resamples=resamples)
            print(f"{'per-query mean, ' + format(n, ',') + ' queries':<34} {resamples:>9,} {seconds:>8.2f}")
    a, b, gold = sts_data(1379)
    seconds = timed(scipy_spearman_permutation, a, b, gold, 1000)
    print(f"{'scipy permutation_test, 1,379 pairs':<34} {1000:>9,} {seconds:>8.2f}  (randomization only)")
    seconds = timed(significance.paired_randomization, a, b, gold, n_resamples=1000)
    print(f"{'ours, randomization (+ bootstrap CI)':<34} {1000:>9,} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
