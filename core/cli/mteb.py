"""``import-mteb``, ``references`` and ``results --format mteb``: MTEB results in and out.

- ``import-mteb PATH [--model ORG/NAME ...] [--json] [--quiet]``: import a results folder (the public
  repository's layout) as reference models, with a progress bar on stderr. Refused files are listed on
  stderr (``error: <path>: <why>``) and the rest is stored. Exit code: 0 every file imported; 1 some files
  were refused (the others are stored); 2 nothing to import (not a folder, unknown ``--model``, no result
  files) - one ``error:`` line, as every command.
- ``references [--format json|csv|table] [--model M ...] [--task T ...] [--dataset D] [--metric M]``:
  the stored reference scores (the shipped folder is imported on first use). Metadata conflicts and
  the caveats of task -> dataset matches go to stderr, so ``--format json`` stdout stays pure JSON.
- ``results --format mteb --output DIR [--checkpoint C]``: stored results as MTEB model folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm

from core import mteb
from core.lab import mteb as lab_mteb
from core.lab.store import open_store

MODEL_KEYS = ("model", "revision", "embed_dim", "n_parameters", "task", "dataset")
REFERENCE_KEYS = (*MODEL_KEYS, "metric", "value", "source")  # the `references --json` contract
TABLE_KEYS = (*MODEL_KEYS, "split", "subset", "metric", "value")


def add_parser(subparsers: Any) -> None:
    """Add ``import-mteb`` and ``references`` to a ``python -m core`` subparsers object."""
    imp = subparsers.add_parser(
        "import-mteb",
        help="import published MTEB result files as reference models",
        description="Import a folder in the MTEB results repository's layout "
        "(<org>__<name>/<revision>/<Task>.json + model_meta.json; a checkout with results/ inside works too). "
        "Exit 0: all imported; 1: some files refused (listed on stderr, the rest stored); 2: nothing to import.",
    )
    imp.add_argument("path", help="results folder (or a checkout of embeddings-benchmark/results)")
    imp.add_argument(
        "--model", action="append", metavar="ORG/NAME", help="import only this model (repeatable)"
    )
    imp.add_argument("--json", action="store_true", help="print the import report as JSON on stdout")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(handler=cmd_import_mteb, keys=None)

    ref = subparsers.add_parser("references", help="list stored reference models (published MTEB scores)")
    ref.add_argument("--format", choices=("json", "csv", "table"), default="table")
    ref.add_argument("--model", action="append", metavar="ORG/NAME", help="only this model (repeatable)")
    ref.add_argument("--task", action="append", metavar="TASK", help="only this MTEB task (repeatable)")
    ref.add_argument("--dataset", help="only tasks matching this lab dataset (e.g. stsb-test)")
    ref.add_argument("--metric", help="only this metric (main_score, cosine_spearman, ndcg_at_10, ...)")
    ref.set_defaults(handler=cmd_references, keys=None)


def add_results_options(results_parser: argparse.ArgumentParser) -> None:
    """``results --output DIR`` (used with ``--format mteb``)."""
    results_parser.add_argument("--output", help="with --format mteb: the folder to write model folders into")


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:  # created once the files are found, so a refused folder prints no empty bar
            bars.append(tqdm(total=total, desc="import", unit="file", file=sys.stderr, leave=False))
        bar = bars[0]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def cmd_import_mteb(args: argparse.Namespace) -> None:
    """Import, report refused files and metadata conflicts on stderr, exit 1 if any file was refused."""
    report = lab_mteb.import_results(open_store(), args.path, args.model, progress=_progress(not args.quiet))
    for error in report.errors:
        print(f"error: {error.path}: {error.message}", file=sys.stderr)
    for conflict in report.conflicts:
        print(f"conflict: {conflict.describe()}", file=sys.stderr)
    summary = (
        f"{report.root}: {report.files_seen:,} files of {report.models:,} models; {report.files_changed:,} new or "
        f"changed ({report.scores_written:,} scores written), {report.files_unchanged:,} unchanged, "
        f"{len(report.errors):,} refused; {report.wall_time_s:.1f} s"
    )
    if args.json:
        doc = {
            "root": report.root,
            "files_seen": report.files_seen,
            "files_changed": report.files_changed,
            "files_unchanged": report.files_unchanged,
            "models": report.models,
            "scores_written": report.scores_written,
            "wall_time_s": round(report.wall_time_s, 3),
            "errors": [{"path": e.path, "message": e.message} for e in report.errors],
            "conflicts": [c.describe() for c in report.conflicts],
        }
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        print(summary, file=sys.stderr)
    else:
        print(summary)
    if report.errors:
        raise SystemExit(1)


def cmd_references(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Stored reference scores as rows; conflicts and caveats on stderr."""
    tasks = list(args.task or [])
    if args.dataset:
        info = mteb.task_for_dataset(args.dataset)
        if info is None:
            known = ", ".join(sorted(mteb.DATASET_TASKS))
            raise mteb.MtebFormatError(f"lab dataset {args.dataset!r} is no MTEB task (known: {known})")
        tasks.append(info.task)
    factory = open_store()
    lab_mteb.ensure_shipped(factory)
    frame = lab_mteb.references(
        factory, models=args.model, tasks=tasks or None, metrics=[args.metric] if args.metric else None
    )
    shown = set(frame["model"])
    for conflict in lab_mteb.meta_conflicts(factory):
        if conflict.model in shown:
            print(f"conflict: {conflict.describe()}", file=sys.stderr)
    for task in sorted(set(frame["task"])):
        info = mteb.TASKS.get(task)
        if info is not None and info.caveat:
            print(f"note: {task} -> {info.dataset}: {info.caveat}", file=sys.stderr)
    rows = lab_mteb.reference_rows(frame)
    if args.format == "json":
        return rows
    args.keys = (
        TABLE_KEYS
        if args.format == "table"
        else (*REFERENCE_KEYS, "split", "subset", "sha256", "mteb_version")
    )
    if args.format == "table":
        for row in rows:
            if row["revision"] not in (mteb.EXTERNAL, mteb.NO_REVISION):
                row["revision"] = row["revision"][:12]
    return rows


def cmd_results_mteb(args: argparse.Namespace) -> None:
    """``results --format mteb --output DIR``: write MTEB model folders and say what was written."""
    if not args.output:
        raise mteb.MtebFormatError(
            "--format mteb needs --output DIR (the folder to write model folders into)"
        )
    report = lab_mteb.export_results(open_store(), args.output, args.checkpoint)
    for folder in report.folders:
        print(folder)
    skipped = f"; not MTEB tasks, left out: {', '.join(report.skipped)}" if report.skipped else ""
    print(
        f"wrote {report.files} task files in {len(report.folders)} model folders under {report.output} "
        f"(mteb_version {mteb.FORMAT_VERSION}){skipped}",
        file=sys.stderr,
    )
