"""``significance``: paired bootstrap and randomization tests of two stored cells (delta = B - A).

    python -m core significance --dataset stsb-test --a default:6:384 --b default:2:64 --json

prints ``{"a", "b", "metric", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_bootstrap",
"p_randomization", "resamples", "backend", ...}``: the numbers the Compare page's "Is a difference significant?"
shows for the same cells, resamples and seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common.jsonsafe import json_ready
from core.lab.compare import KEYS, compare_stored
from core.lab.store import open_store


def cmd_significance(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """Run both paired tests and print them (one JSON object with ``--json``)."""
    result = compare_stored(
        open_store(),
        args.dataset,
        args.a,
        args.b,
        precision=args.precision,
        metric=args.metric,
        resamples=args.resamples,
        seed=args.seed,
        backend=args.backend,
    )
    if args.json:
        json.dump(json_ready(result), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
        return None
    return [result]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``significance``."""
    sig = sub.add_parser("significance", help="paired tests of two stored cells (delta = B - A)")
    sig.add_argument("--dataset", required=True, help="built-in or registered dataset name")
    sig.add_argument("--a", required=True, help="cell A (the baseline) as CKPT:LAYER:DIM, e.g. default:6:384")
    sig.add_argument("--b", required=True, help="cell B as CKPT:LAYER:DIM")
    sig.add_argument("--precision", default="float32", help="precision of both cells (default float32)")
    sig.add_argument(
        "--backend", default="torch", help="deployment backend of both cells' stored scores (default torch)"
    )
    sig.add_argument("--metric", default=None, help="default: the dataset's main score")
    sig.add_argument("--resamples", type=_positive, default=10_000, help="resamples of each test (10000)")
    sig.add_argument("--seed", type=int, default=0, help="seed of both tests (0)")
    sig.add_argument("--json", action="store_true", help="print one JSON object on stdout (nothing else)")
    sig.set_defaults(handler=cmd_significance, keys=KEYS)
