"""Reproduce the Starbucks paper's STS comparison on CPU: full, 2DMSE, separate and Starbucks, same budget.

Every method starts from the same base checkpoint (``default`` = all-MiniLM-L6-v2) and trains on STS-B
train with CoSENT under one budget (default: 1 epoch, batch 16, lr 5e-5, 10% warmup, seed 42 - the
paper's low-resource STS setting, but 1 epoch instead of 4 to fit one hour on 2 CPU cores). Pairs are
the paper's diagonal scaled to the base model (6 x 384: (1,32) (2,64) (3,128) (4,192) (5,256) (6,384)).

- ``full`` and ``starbucks`` and ``2dmse`` train one model each; ``separate`` trains one model per pair,
  truncated to k layers and trained at dim d (six smaller models).
- Each method is evaluated at every pair on STS-B test, SICK-R test and BIOSSES (those present:
  SICK-R and BIOSSES come from ``../shared/data``); ``base`` (the untrained checkpoint) is shown too.
  ``separate`` is evaluated at (k, d) of the model trained for that pair.
- For each size, a paired bootstrap (``core.significance.paired_bootstrap``, Spearman against gold,
  resampling the test pairs) compares Starbucks with each other method: ``*`` marks p < 0.05.

Output: a Markdown table per dataset (rows: sizes and the mean; columns: methods; Spearman x 100), a
summary of means, the budget and wall times - on stdout and in ``--out``
(default ``bench/results/reproduce_starbucks.md``). Models go to ``--workdir`` (default: a new temp
folder, with its own lab home and database, so the user's lab is untouched).

Smoke run (seconds per method): ``python bench/reproduce_starbucks.py --max-steps 5 --out /tmp/r.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
METHODS = ("full", "2dmse", "separate", "starbucks")
EVAL_DATASETS = ("stsb-test", "sickr-test", "biosses")


def train_all(args: argparse.Namespace, root: Path, log: list[str]) -> dict[str, dict[tuple[int, int], str]]:
    """Train every method; return method -> pair -> checkpoint folder to evaluate that pair with."""
    from core import checkpoints
    from core.lab import training as lab_training
    from core.lab.store import open_store
    from core.training import LossConfig, TrainConfig, loop

    info = checkpoints.load(args.base).info
    pairs = loop.resolve_pairs(loop.parse_pairs(args.pairs), info.num_layers, info.embedding_dim)
    folders: dict[str, dict[tuple[int, int], str]] = {"base": {p: args.base for p in pairs}}
    for method in args.methods:
        config = TrainConfig(
            output_dir=str(root / method),
            base=args.base,
            method=method,
            dataset=args.dataset,
            pairs=pairs,
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_ratio=args.warmup_ratio,
            seed=args.seed,
            limit=args.limit,
            loss=LossConfig(kl_weight=args.kl_weight, kl_mode=args.kl_mode),
        )
        bar = _bar(f"train {method}")
        t0 = time.perf_counter()
        result = lab_training.train(
            config,
            progress=lambda step, total, loss, bar=bar: _tick(bar, step, total, loss),
            session_factory=open_store(),
        )
        bar.close()
        wall = time.perf_counter() - t0
        steps = len(result.loss_curve)
        log.append(f"| train {method} | {wall:.0f} | {steps} steps ({len(result.models)} model(s)) |")
        print(f"trained {method} in {wall:.0f} s -> {result.output_dir}", file=sys.stderr)
        if method == "separate":
            folders[method] = {m.pair: str(m.path) for m in result.models if m.pair is not None}
        else:
            folders[method] = {p: str(result.output_dir) for p in pairs}
    return folders


def _bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=0, desc=desc, unit="step", file=sys.stderr, leave=False)


def _tick(bar: Any, step: int, total: int, loss: float) -> None:
    bar.total = total
    bar.update(step - bar.n)
    bar.set_postfix(loss=f"{loss:.3f}")


def evaluate_all(
    folders: dict[str, dict[tuple[int, int], str]], dataset_names: list[str], log: list[str]
) -> dict[str, dict[str, dict[tuple[int, int], Any]]]:
    """dataset -> method -> pair -> per-pair similarities (float64), with the gold scores under ``_gold``."""
    import numpy as np

    from core import checkpoints, datasets, scoring, submodels
    from core.submodels import SubModel

    cache = submodels.EmbeddingCache()
    out: dict[str, dict[str, dict[tuple[int, int], Any]]] = {}
    for name in dataset_names:
        spec = datasets.resolve_dataset(name)
        data = datasets.load_dataset(spec)
        if not isinstance(data, datasets.STSData):
            raise SystemExit(f"error: {name} is not an STS dataset; --eval takes STS datasets only")
        per_method: dict[str, dict[tuple[int, int], Any]] = {"_gold": {(0, 0): np.asarray(data.scores)}}
        t0 = time.perf_counter()
        for method, by_pair in folders.items():
            per_method[method] = {}
            by_folder: dict[str, list[tuple[int, int]]] = {}
            for pair, folder in by_pair.items():
                by_folder.setdefault(folder, []).append(pair)
            for folder, pairs in by_folder.items():
                loaded = checkpoints.load(folder)
                pooled = scoring.encode_dataset(loaded, data, sorted({k for k, _ in pairs}), cache)
                cells = [SubModel(k, d) for k, d in pairs]
                for scored in scoring.score_cells(loaded.info, data, pooled, cells):
                    pair = (scored.sub.layer, scored.sub.dim)
                    per_method[method][pair] = np.asarray(scored.items["pair_similarity"], dtype=np.float64)
        log.append(f"| evaluate {name} | {time.perf_counter() - t0:.0f} | {len(data)} pairs |")
        out[name] = per_method
    return out


def tables(
    scores: dict[str, dict[str, dict[tuple[int, int], Any]]], methods: list[str], n_resamples: int, seed: int
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Markdown lines of one table per dataset, and dataset -> method -> mean Spearman."""
    from scipy import stats

    from core.significance import paired_bootstrap

    lines: list[str] = []
    means: dict[str, dict[str, float]] = {}
    columns = ["base", *methods]
    for name, per_method in scores.items():
        gold = per_method["_gold"][(0, 0)]
        pairs = list(per_method["base"])
        lines += [
            f"### {name} (Spearman x 100; * = Starbucks differs from that method, paired bootstrap p < 0.05)",
            "",
            "| size (layer, dim) | " + " | ".join(columns) + " |",
            "| --- | " + " | ".join("---:" for _ in columns) + " |",
        ]
        rho = {
            m: {p: float(stats.spearmanr(per_method[m][p], gold).statistic) for p in pairs} for m in columns
        }
        for pair in pairs:
            cells = []
            for method in columns:
                mark = ""
                if "starbucks" in per_method and method not in {"starbucks", "base"}:
                    test = paired_bootstrap(
                        per_method["starbucks"][pair],
                        per_method[method][pair],
                        gold,
                        statistic="spearman",
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                    mark = "*" if test.significant else ""
                cells.append(f"{100 * rho[method][pair]:.2f}{mark}")
            lines.append(f"| ({pair[0]}, {pair[1]}) | " + " | ".join(cells) + " |")
        means[name] = {m: statistics.fmean(rho[m].values()) for m in columns}
        lines += ["| **mean** | " + " | ".join(f"**{100 * means[name][m]:.2f}**" for m in columns) + " |", ""]
    return lines, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="default")
    parser.add_argument("--dataset", default="stsb-train")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--eval", default=",".join(EVAL_DATASETS), help="STS datasets to evaluate on")
    parser.add_argument("--pairs", default=None, help="LAYER:DIM list (default: the scaled paper diagonal)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="per model (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--kl-weight", type=float, default=0.3)
    parser.add_argument("--kl-mode", choices=("embedding", "similarity"), default="embedding")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N pairs only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resamples", type=int, default=5000, help="paired bootstrap resamples")
    parser.add_argument("--workdir", default=None, help="folder for models, lab home and database")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "reproduce_starbucks.md"))
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    root = Path(args.workdir or tempfile.mkdtemp(prefix="mlab-reproduce-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["MLAB_HOME"] = str(root / "home")
    os.environ["MLAB_DATABASE_URL"] = f"sqlite:///{root / 'home' / 'lab.sqlite3'}"
    os.environ["MLAB_CACHE_DIR"] = str(root / "home" / "cache")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import torch

    from core import checkpoints, datasets, provenance

    torch.set_num_threads(args.threads)
    available = set(datasets.builtin_datasets())
    eval_names = [n.strip() for n in args.eval.split(",") if n.strip() in available]
    missing = [n.strip() for n in args.eval.split(",") if n.strip() and n.strip() not in available]
    t_start = time.perf_counter()
    log: list[str] = []
    folders = train_all(args, root, log)
    scores = evaluate_all(folders, eval_names, log)
    lines, means = tables(scores, args.methods, args.resamples, args.seed)
    total = time.perf_counter() - t_start

    info = checkpoints.load(args.base).info
    versions = provenance.package_versions()
    budget = (f"{args.max_steps} steps" if args.max_steps else f"{args.epochs} epoch(s)") + (
        f", batch {args.batch_size}, lr {args.lr:g}, warmup {args.warmup_ratio:g}, seed {args.seed}, CoSENT on "
        f"{args.dataset}"
        + (f" (first {args.limit} pairs)" if args.limit else "")
        + f"; starbucks KL weight {args.kl_weight:g} ({args.kl_mode}, teacher detached)"
    )
    header = [
        "# Starbucks reproduction on CPU",
        "",
        f"Base: {info.label or info.name} ({info.num_layers} layers x {info.embedding_dim}), fingerprint "
        f"`{info.fingerprint[:12]}`. Methods: {', '.join(args.methods)} (+ base = untrained).",
        f"Budget per model: {budget}.",
        f"Machine: {provenance.cpu_model()}, torch threads {args.threads}; torch {versions.get('torch')}, "
        f"sentence-transformers {versions.get('sentence-transformers')}.",
        f"Total wall time: {total / 60:.1f} min."
        + (f" Not evaluated (absent): {', '.join(missing)}." if missing else ""),
        "",
    ]
    summary = [
        "### Mean Spearman x 100 over the sizes",
        "",
        "| dataset | " + " | ".join(["base", *args.methods]) + " |",
        "| --- | " + " | ".join("---:" for _ in ["base", *args.methods]) + " |",
    ]
    for name, row in means.items():
        summary.append(
            f"| {name} | " + " | ".join(f"{100 * row[m]:.2f}" for m in ["base", *args.methods]) + " |"
        )
    order = []
    if {"2dmse", "separate", "starbucks"} <= set(args.methods):
        for name, row in means.items():
            holds = row["2dmse"] < row["separate"] <= row["starbucks"]
            order.append(
                f"- {name}: paper ordering 2DMSE < separate <= Starbucks on the mean "
                f"{'holds' if holds else 'does NOT hold'}."
            )
    timing = [
        "### Wall time",
        "",
        "| phase | seconds | detail |",
        "| --- | ---: | --- |",
        *log,
        f"| total | {total:.0f} | |",
    ]
    text = "\n".join([*header, *lines, *summary, "", *order, "", *timing, ""])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"written to {out}; models in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
