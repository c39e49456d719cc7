"""Training-step cost: a Starbucks step vs a plain full fine-tuning step (target <= 1.3x), side by side.

One optimizer step = tokenize the batch's two columns, one all-layer encoder pass per column
(``forward_all_layers``), the method's loss, backward, gradient clipping, AdamW. Each method trains its
own copy of the checkpoint on the SAME batches of STS-B train; the methods' steps are interleaved
(full, starbucks, 2dmse, mrl, full, ...) so machine noise hits them alike. After ``--warmup`` steps
each, the median of ``--steps`` timed steps is reported, with each method's ratio to ``full``.

Usage: ``python bench/train_step.py [--checkpoint default] [--batch-size 32] [--steps 10] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("full", "starbucks", "2dmse", "mrl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--dataset", default="stsb-train")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mlab-bench-train-"))
    os.environ["MLAB_HOME"] = str(workdir)
    os.environ["MLAB_CACHE_DIR"] = str(workdir / "cache")

    import numpy as np
    import torch

    from core import checkpoints
    from core.training import TrainConfig, data, loop, losses

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = checkpoints.load(args.checkpoint)
    info = loaded.info
    examples = data.load_examples(args.dataset)
    pairs = loop.resolve_pairs(None, info.num_layers, info.embedding_dim)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    config = TrainConfig(output_dir=str(workdir / "unused"))
    runners = {}
    for method in methods:
        model = copy.deepcopy(loaded.model)
        model.train()
        objective = loop.objective_for(
            TrainConfig(output_dir="-", method=method),
            pairs,
            info.num_layers,
            info.embedding_dim,
            "cosent",
        )
        base = losses.make_base_loss("cosent", model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
        runners[method] = (model, objective, base, optimizer, random.Random(0))

    rng = np.random.default_rng(0)
    n_batches = args.warmup + args.steps
    batches = [rng.choice(len(examples), args.batch_size, replace=False) for _ in range(n_batches)]
    labels = torch.from_numpy(examples.labels)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i, idx in enumerate(batches):
        texts = ([examples.texts1[j] for j in idx], [examples.texts2[j] for j in idx])
        for method in methods:
            model, objective, base, optimizer, step_rng = runners[method]
            t0 = time.perf_counter()
            parts = objective.step(model, base, texts, labels[idx], step_rng)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            elapsed = time.perf_counter() - t0
            if i >= args.warmup:
                times[method].append(elapsed)
        print(f"batch {i + 1}/{n_batches} done", file=sys.stderr)

    full = statistics.median(times["full"]) if "full" in times else None
    print(
        f"\n{info.label or info.name}: {info.num_layers} layers x {info.embedding_dim}, batch {args.batch_size}, "
        f"{args.steps} timed steps per method (after {args.warmup} warm-up), torch threads {args.threads}"
    )
    print(f"pairs: {', '.join(f'({k},{d})' for k, d in pairs)}\n")
    print("| method | median step (s) | min (s) | vs full |")
    print("| --- | ---: | ---: | ---: |")
    for method in methods:
        median = statistics.median(times[method])
        ratio = f"{median / full:.2f}x" if full else "-"
        print(f"| {method} | {median:.3f} | {min(times[method]):.3f} | {ratio} |")
    if full and "starbucks" in times:
        ratio = statistics.median(times["starbucks"]) / full
        print(
            f"\nstarbucks / full step time: {ratio:.2f}x (target <= 1.3x): {'OK' if ratio <= 1.3 else 'ABOVE TARGET'}"
        )


if __name__ == "__main__":
    main()
