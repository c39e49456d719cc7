"""``evaluate``, ``results``, ``checkpoints`` and ``datasets``: the grid and what is stored."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core import scoring
from core.cli import mteb
from core.cli.output import stdout_to_stderr, tqdm_progress
from core.lab import catalog, registry
from core.lab.evaluate import evaluate_grid
from core.lab.store import open_store

RESULT_KEYS = catalog.RESULT_KEYS


def cmd_evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Evaluate a grid and print every metric of every cell."""
    layers = scoring.parse_int_list(args.layers, "--layers")
    dims = scoring.parse_int_list(args.dims, "--dims")
    precisions = scoring.parse_precisions(args.precision)
    store = open_store()
    with stdout_to_stderr():
        report = evaluate_grid(
            args.checkpoint,
            args.dataset,
            layers,
            dims,
            precisions,
            session_factory=store,
            progress=tqdm_progress(not args.quiet),
            recompute=args.recompute,
            engine=args.engine,
            backend=args.backend,
        )
    # The evaluate --json contract is exactly these keys (results --json may add more).
    rows = [
        {k: r[k] for k in RESULT_KEYS}
        for r in catalog.result_rows(report.frame, args.checkpoint, report.dataset.name)
    ]
    if not args.json:
        print(
            f"{report.checkpoint.name} on {report.dataset.name}: {report.computed} cells computed, "
            f"{report.reused} reused" + (f" (run {report.run_id})" if report.run_id else ""),
            file=sys.stderr,
        )
    return rows


def cmd_results(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """List stored results, optionally filtered by checkpoint and dataset name or fingerprint."""
    if args.format == "mteb":  # MTEB model folders on disk instead of rows (core/cli/mteb.py)
        mteb.cmd_results_mteb(args)
        return None
    return catalog.stored_results(open_store(), args.checkpoint, args.dataset)


def cmd_checkpoints(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The default checkpoint and every checkpoint known to the database."""
    return catalog.checkpoint_rows(open_store())


def cmd_alias(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Give a registered checkpoint a new display name (what every page shows); print its row."""
    store = open_store()
    record = registry.rename_checkpoint(args.checkpoint, args.name, session_factory=store)
    return [row for row in catalog.checkpoint_rows(store) if row["fingerprint"] == record.fingerprint]


def cmd_datasets(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Built-in datasets and every dataset known to the database."""
    return catalog.dataset_rows(open_store())


def add_parser(sub: Any) -> None:
    """Register ``evaluate``, ``results``, ``checkpoints`` and ``datasets``."""
    ev = sub.add_parser("evaluate", help="evaluate a layer x dim grid of a checkpoint on a dataset")
    ev.add_argument("--checkpoint", required=True, help="'default', a local folder, or org/name[@revision]")
    ev.add_argument("--dataset", required=True, help="built-in name (stsb-test, cranfield, ...) or a path")
    ev.add_argument("--layers", default="all", help="comma-separated layers or 'all' (default)")
    ev.add_argument("--dims", default=None, help="comma-separated dims or 'all' (default: 32, 64, ... full)")
    ev.add_argument("--precision", default="float32", help="comma-separated: float32,float16,int8,binary")
    ev.add_argument("--recompute", action="store_true", help="recompute cells even when stored")
    ev.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="encode texts here (local) or on a Ray cluster (RAY_ADDRESS, else a local one); see docs/SCALE.md",
    )
    ev.add_argument(
        "--backend",
        default="torch",
        help="what runs the encoder: torch (float32, the reference), torch-bf16, onnx, onnx-int8",
    )
    ev.add_argument("--json", action="store_true", help="print results as JSON on stdout (nothing else)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(handler=cmd_evaluate, keys=RESULT_KEYS)

    res = sub.add_parser("results", help="list stored results")
    res.add_argument("--checkpoint", help="checkpoint name or fingerprint")
    res.add_argument("--dataset", help="dataset name or fingerprint")
    res.add_argument("--format", choices=("json", "csv", "table", "mteb"), default="table")
    mteb.add_results_options(res)
    res.set_defaults(handler=cmd_results, keys=RESULT_KEYS)

    ck = sub.add_parser("checkpoints", help="list known checkpoints")
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(handler=cmd_checkpoints, keys=None)

    al = sub.add_parser(
        "alias", help="rename a checkpoint's display name (links and --checkpoint keep using its name)"
    )
    al.add_argument("--checkpoint", required=True, help="registered name, 'default' or fingerprint")
    al.add_argument(
        "--name", required=True, help=f"the new display name (at most {registry.ALIAS_MAX_LEN} characters)"
    )
    al.add_argument("--json", action="store_true")
    al.set_defaults(handler=cmd_alias, keys=None)

    ds = sub.add_parser("datasets", help="list known datasets")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(handler=cmd_datasets, keys=None)
