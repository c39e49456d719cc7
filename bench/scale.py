"""Corpus encoding at scale: documents/s and peak memory, local engine vs Ray, on this machine.

Encodes a synthetic corpus (seeded random passages; 100,000 documents by default) into a fresh
embedding cache with every layer of the checkpoint, once per engine, each engine in its own child
process so its memory is measured alone:

- ``local``: ``core.submodels.pooled_embeddings`` (one process, torch using ``--threads`` threads);
- ``ray``: ``core.ray_engine.fill_cache`` on a local Ray cluster of ``--ray-cpus`` CPUs (one actor
  per CPU, one torch thread each), cluster start-up timed separately.

The parent samples the resident memory (RSS) of the child's whole process tree (for Ray: the driver,
raylet, GCS and the actors) every 0.1 s and reports the peak; the child reports its own peak RSS
(``ru_maxrss``). RSS includes the pages of the memory-mapped cache files being written.

Usage (the full size takes a while on 2 cores; run it when the machine is quiet)::

    python bench/scale.py                      # 100,000 documents, default checkpoint, both engines
    python bench/scale.py --docs 2000          # a quick check
    python bench/scale.py --checkpoint wide    # 100,000 documents through a 1 x 384 random BERT
    python bench/scale.py --checkpoint /path/to/model --engines ray --ray-cpus 8

Results are printed and written to ``bench/results/scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "scale.md"
WIDE = "wide"
_VOCAB_TEXT = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her all she there would their we him been has when who will more no if out so said what up "
    "its about into than them can only other new some could time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years where much your "
    "way well down should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know while last might "
    "embedding layer model sentence retrieval query document vector matrix dimension corpus search index"
)
VOCAB = _VOCAB_TEXT.split()


def synthetic_corpus(n: int, seed: int = 0, min_words: int = 20, max_words: int = 80) -> list[str]:
    """``n`` distinct pseudo-passages of ``min_words``..``max_words`` words (seeded, reproducible)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_words, max_words + 1, size=n)
    words = rng.integers(0, len(VOCAB), size=int(lengths.sum()))
    out, start = [], 0
    for i, length in enumerate(lengths):
        chunk = words[start : start + length]
        start += length
        out.append(f"doc {i}: " + " ".join(VOCAB[w] for w in chunk))
    return out


# ------------------------------------------------------------------------------------------ child


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Encode the corpus with one engine; return timings (runs inside the measured child process)."""
    import torch

    from core import checkpoints, submodels
    from core.submodels import EmbeddingCache

    torch.set_num_threads(args.threads)
    texts = synthetic_corpus(args.docs, args.seed)
    loaded = checkpoints.load(args.checkpoint)
    layers = list(range(loaded.info.num_layers + 1))
    with tempfile.TemporaryDirectory(prefix="mlab-scale-") as folder:
        cache = EmbeddingCache(Path(folder) / "cache")
        startup = 0.0
        if args.child == "ray":
            from core import ray_engine

            t0 = time.perf_counter()
            ray_engine.ensure_ray(num_cpus=args.ray_cpus)
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            encoded = ray_engine.fill_cache(loaded, texts, cache, batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            pooled = submodels.pooled_embeddings(loaded, texts, layers, cache, batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
            encoded = pooled.encoded
        cache_mb = sum(p.stat().st_size for p in Path(folder).rglob("*.npy")) / 2**20
    return {
        "engine": args.child,
        "docs": args.docs,
        "encoded": encoded,
        "seconds": seconds,
        "docs_per_s": encoded / seconds if seconds else float("nan"),
        "startup_s": startup,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cache_mb": cache_mb,
        "layers": len(layers),
        "width": loaded.info.embedding_dim,
    }


# ----------------------------------------------------------------------------------------- parent


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one engine in a child process, sampling its process tree's RSS; return its numbers."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        engine,
        "--docs",
        str(args.docs),
        "--checkpoint",
        args.checkpoint,
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--ray-cpus",
        str(args.ray_cpus),
        "--seed",
        str(args.seed),
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "RAY_ADDRESS": ""}
    load = os.getloadavg()[0]  # other work on the machine skews every number: report it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} child failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_rss_mb"] = peak
    result["process_wall_s"] = wall
    result["load_1min"] = load
    return result


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.is_file():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("torch", "sentence-transformers", "ray"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return {"cpu": cpu, "cores": str(os.cpu_count()), **versions}


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The markdown written to bench/results/scale.md."""
    info = machine()
    lines = [
        "# Corpus encoding at scale: local engine vs Ray",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `python bench/scale.py "
        f"--docs {args.docs} --checkpoint {args.checkpoint_given} --engines {','.join(args.engines)}`.",
        f"Checkpoint: {args.checkpoint_label}.",
        f"Machine: {info['cpu']}, {info['cores']} logical cores; torch {info['torch']}, "
        f"sentence-transformers {info['sentence-transformers']}, ray {info['ray']}.",
        f"Corpus: {args.docs:,} synthetic passages of 20-80 words (seed {args.seed}); every layer "
        f"(0..L) pooled and written to a fresh embedding cache; batch size {args.batch_size}.",
        f"Local: one process, {args.threads} torch threads. Ray: a local cluster of {args.ray_cpus} CPUs, "
        "one actor per CPU (one torch thread each), each actor loading the checkpoint once.",
        "",
        "| engine | documents | encode s | documents/s | cluster start s | peak RSS, process tree (MiB) "
        "| peak RSS, driver (MiB) | cache on disk (MiB) | load avg at start |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['encoded']:,} | {r['seconds']:.1f} | {r['docs_per_s']:.1f} | "
            f"{r['startup_s']:.1f} | {r['tree_peak_rss_mb']:,.0f} | {r['driver_peak_rss_mb']:,.0f} | "
            f"{r['cache_mb']:,.0f} | {r['load_1min']:.1f} |"
        )
    by_engine = {r["engine"]: r for r in results}
    if {"local", "ray"} <= set(by_engine):
        ratio = by_engine["ray"]["docs_per_s"] / by_engine["local"]["docs_per_s"]
        lines += ["", f"Ray / local throughput on this machine: {ratio:.2f}x (cluster start-up excluded)."]
    lines += [
        "",
        "Encode seconds exclude loading the checkpoint and (Ray) starting the cluster; Ray's time includes "
        "starting the actor pool (each actor loads the model). Peak RSS of the tree counts every process "
        "(Ray: driver, raylet, GCS, workers) and the memory-mapped cache pages being written. On one "
        "machine Ray adds overhead; its point is spreading a corpus over many machines (docs/SCALE.md). "
        f"A 1-minute load average above {os.cpu_count()} (the core count) means other work shared the CPUs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the engines and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000, help="corpus size (default 100,000)")
    parser.add_argument(
        "--checkpoint",
        default="default",
        help=f"a checkpoint name or path; {WIDE!r}: a random-weight 1 x 384 BERT (engine overhead and memory)",
    )
    parser.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (local)")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1, help="local Ray cluster CPUs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="markdown report path")
    parser.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "ray":
            args.threads = 1  # one torch thread per actor; the cluster has ray-cpus actors
        print(json.dumps(run_child(args)))
        return 0
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.checkpoint_given = args.checkpoint_label = args.checkpoint
    if args.checkpoint == WIDE:  # children load the folder built here once
        from tests.tinymodel import wide_checkpoint

        args.checkpoint = str(wide_checkpoint(Path(tempfile.mkdtemp(prefix="mlab-scale-model-"))))
        args.checkpoint_label = f"{WIDE} (random-weight 1 layer x 384 BERT, the default model's width)"
    results = []
    for engine in args.engines:
        print(f"measuring {engine} on {args.docs:,} documents ...", file=sys.stderr)
        results.append(measure(engine, args))
        print(json.dumps(results[-1]), file=sys.stderr)
    text = report(results, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
