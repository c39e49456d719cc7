"""Batched int8 exact search (blockwise float32 GEMM over the codes) against float32, interleaved.

``python bench/int8_search.py [--n 1000000] [--queries 100] [--dims 32,128,256,384] [--rounds 5]``

Each round times, one right after the other, faiss's exact float32 search and the lab's int8 search of the
same queries (``core.retrieval.search``, int8 codes of the same corpus), so drifts in the machine's speed hit
both alike; medians over the rounds, in ms per query. Also single-query p50 for both. Random vectors: times
and bytes carry over to real data of the same shape, recall does not (see bench/cost.py section 3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import retrieval


def timed_ms(fn, per: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000 / per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dims", default="32,128,256,384")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--singles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        "| dim | float32 ms/q | int8 batched ms/q | int8 / float32 | float32 1 query p50 | int8 1 query p50 |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for dim in (int(d) for d in args.dims.split(",")):
        corpus = rng.standard_normal((args.n, dim), dtype=np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = corpus[rng.integers(0, args.n, args.queries)] + 0.3 * rng.standard_normal(
            (args.queries, dim), dtype=np.float32
        )
        f32 = retrieval.build_index(corpus, "float32")
        int8 = retrieval.build_index(corpus, "int8")
        batch: dict[str, list[float]] = {"float32": [], "int8": []}
        for _ in range(args.rounds):
            for name, index in (("float32", f32), ("int8", int8)):
                batch[name].append(
                    timed_ms(lambda index=index, q=queries: index.search(q, args.k), args.queries)
                )
        single: dict[str, list[float]] = {"float32": [], "int8": []}
        for i in range(args.singles):
            for name, index in (("float32", f32), ("int8", int8)):
                q = queries[i % args.queries : i % args.queries + 1]
                single[name].append(timed_ms(lambda index=index, q=q: index.search(q, args.k), 1))
        b = {name: statistics.median(v) for name, v in batch.items()}
        s = {name: statistics.median(v) for name, v in single.items()}
        print(
            f"| {dim} | {b['float32']:.2f} | {b['int8']:.2f} | {b['int8'] / b['float32']:.2f}x "
            f"| {s['float32']:.1f} | {s['int8']:.1f} |",
            flush=True,
        )
        del corpus, f32, int8


if __name__ == "__main__":
    main()
