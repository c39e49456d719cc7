"""``python -m core ...``: the same functions the pages call, as a stable command-line contract.

Subcommands: ``evaluate``, ``results``, ``checkpoints``, ``datasets`` (and ``train``, ``cost`` where
those modules add themselves). With ``--json`` stdout carries only the JSON document; progress bars and
library chatter go to stderr. A user mistake prints one ``error: ...`` line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# Quiet third-party chatter before they are imported.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULT_KEYS = ("checkpoint", "dataset", "layer", "dim", "precision", "metric", "value")
Handler = Callable[[argparse.Namespace], Any]


class UsageError(ValueError):
    """A command-line mistake that is not any module's own error type."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from core import checkpoints, evaluate, settings, submodels

    errors: list[type[BaseException]] = [
        UsageError,
        checkpoints.CheckpointError,
        evaluate.EvaluationError,
        submodels.SubModelError,
        settings.ReadOnlyError,
    ]
    with contextlib.suppress(ImportError, AttributeError):
        from core import datasets

        errors.append(datasets.DatasetError)
    with contextlib.suppress(ImportError, AttributeError):
        from storage import db

        errors.append(db.StorageError)
    with contextlib.suppress(ImportError, AttributeError):
        from core import ray_engine

        errors.append(ray_engine.RayEngineError)
    with contextlib.suppress(ImportError, AttributeError):
        from core import ann, cost

        errors.extend([cost.CostError, ann.AnnError])
    return tuple(errors)


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send anything libraries print to stderr, so ``--json`` output stays clean."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _tqdm_progress(enabled: bool) -> Callable[[str, int, int], None] | None:
    if not enabled:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = bars[phase] = tqdm(
                total=total,
                desc=phase,
                unit="text" if phase == "encode" else "cell",
                file=sys.stderr,
                leave=False,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def cmd_evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Evaluate a grid and print every metric of every cell."""
    from core import evaluate

    layers = evaluate.parse_int_list(args.layers, "--layers")
    dims = evaluate.parse_int_list(args.dims, "--dims")
    precisions = evaluate.parse_precisions(args.precision)
    with _stdout_to_stderr():
        report = evaluate.evaluate_grid(
            args.checkpoint,
            args.dataset,
            layers,
            dims,
            precisions,
            progress=_tqdm_progress(not args.quiet),
            recompute=args.recompute,
            engine=args.engine,
        )
    # The evaluate --json contract is exactly these keys (results --json may add more).
    rows = [
        {k: r[k] for k in RESULT_KEYS}
        for r in _result_rows(report.frame, args.checkpoint, report.dataset.name)
    ]
    if not args.json:
        print(
            f"{report.checkpoint.name} on {report.dataset.name}: {report.computed} cells computed, "
            f"{report.reused} reused" + (f" (run {report.run_id})" if report.run_id else ""),
            file=sys.stderr,
        )
    return rows


def _result_rows(frame: Any, checkpoint: str | None, dataset: str | None) -> list[dict[str, Any]]:
    from core.evaluate import nan_to_none

    rows = []
    for rec in frame.to_dict("records"):
        rows.append(
            {
                "checkpoint": checkpoint or rec["checkpoint"],
                "dataset": dataset or rec["dataset"],
                "layer": int(rec["layer"]),
                "dim": int(rec["dim"]),
                "precision": rec["precision"],
                "metric": rec["metric"],
                "value": nan_to_none(rec["value"]),
                "split": rec.get("split"),
                "checkpoint_fingerprint": rec.get("checkpoint_fp"),
                "dataset_fingerprint": rec.get("dataset_fp"),
                "run_id": None if rec.get("run_id") is None else int(rec["run_id"]),
            }
        )
    rows.sort(
        key=lambda r: (r["checkpoint"], r["dataset"], r["precision"], r["layer"], r["dim"], r["metric"])
    )
    return rows


def cmd_results(args: argparse.Namespace) -> list[dict[str, Any]]:
    """List stored results, optionally filtered by checkpoint and dataset name or fingerprint."""
    from storage import db, repository

    factory = db.init_db()
    with factory() as s:
        checkpoint_fp = _lookup(s, repository.get_checkpoint, args.checkpoint, "checkpoint")
        dataset_fp = _lookup(s, repository.get_dataset, args.dataset, "dataset")
        frame = repository.results_frame(s, checkpoint_fp=checkpoint_fp, dataset_fp=dataset_fp)
    return _result_rows(frame, None, None)


def _lookup(session: Any, getter: Callable[[Any, str], Any], name: str | None, what: str) -> str | None:
    if not name:
        return None
    record = getter(session, name)
    if record is None and what == "checkpoint" and name != "default":
        with contextlib.suppress(ValueError):
            from core import checkpoints

            spec = checkpoints.parse_checkpoint(name)
            record = getter(session, spec.name)
    if record is None:
        raise UsageError(f"no stored {what} named {name!r} (see `python -m core {what}s`)")
    return str(record.fingerprint)


def cmd_checkpoints(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The default checkpoint and every checkpoint known to the database."""
    from storage import db, repository

    factory = db.init_db()
    with factory() as s:
        records = repository.list_checkpoints(s)
    rows = [
        {
            "name": r.name,
            "kind": r.kind,
            "fingerprint": r.fingerprint,
            "layers": r.num_layers,
            "dim": r.embedding_dim,
            "pooling": r.pooling,
            "similarity": r.similarity,
            "trained": r.training_card is not None,
        }
        for r in records
    ]
    if not any(r["name"] == "default" for r in rows):
        rows.insert(
            0,
            {
                "name": "default",
                "kind": "default",
                "fingerprint": None,
                "layers": 6,
                "dim": 384,
                "pooling": "mean",
                "similarity": "cosine",
                "trained": False,
            },
        )
    return rows


def cmd_datasets(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Built-in datasets and every dataset known to the database."""
    from core import datasets
    from storage import db, repository

    rows: dict[str, dict[str, Any]] = {}
    for name, spec in datasets.builtin_datasets().items():
        rows[name] = {
            "name": name,
            "kind": spec.kind,
            "split": spec.split,
            "path": spec.path,
            "builtin": True,
        }
    factory = db.init_db()
    with factory() as s:
        for record in repository.list_datasets(s):
            rows.setdefault(
                record.name,
                {
                    "name": record.name,
                    "kind": record.kind,
                    "split": record.split,
                    "path": record.path,
                    "builtin": False,
                },
            )
    return list(rows.values())


def _print(rows: list[dict[str, Any]], fmt: str, keys: Sequence[str] | None = None) -> None:
    if fmt == "json":
        json.dump(rows, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
        return
    columns = list(keys or (rows[0].keys() if rows else []))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
        return
    if not rows:
        print("(nothing stored yet)")
        return
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m core", description="Matryoshka Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)

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
    ev.add_argument("--json", action="store_true", help="print results as JSON on stdout (nothing else)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(handler=cmd_evaluate, keys=RESULT_KEYS)

    res = sub.add_parser("results", help="list stored results")
    res.add_argument("--checkpoint", help="checkpoint name or fingerprint")
    res.add_argument("--dataset", help="dataset name or fingerprint")
    res.add_argument("--format", choices=("json", "csv", "table"), default="table")
    res.set_defaults(handler=cmd_results, keys=RESULT_KEYS)

    ck = sub.add_parser("checkpoints", help="list known checkpoints")
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(handler=cmd_checkpoints, keys=None)

    ds = sub.add_parser("datasets", help="list known datasets")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(handler=cmd_datasets, keys=None)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Subcommands contributed by other modules (train, cost, ...): each adds its own parser."""
    found: list[Callable[[Any], None]] = []
    with contextlib.suppress(ImportError):
        from core.cost import add_cost_parser

        found.append(add_cost_parser)
    with contextlib.suppress(ImportError):
        from core.training.cli import add_train_parser

        found.append(add_train_parser)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rows = args.handler(args)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted (stored cells are kept; run the same command again to resume)",
            file=sys.stderr,
        )
        return 130
    if rows is None:
        return 0
    fmt = getattr(args, "format", None) or ("json" if getattr(args, "json", False) else "table")
    _print(rows, fmt, args.keys if fmt != "json" else None)
    return 0
