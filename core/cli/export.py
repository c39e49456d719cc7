"""``export``: one sub-model as a standalone sentence-transformers folder (the last stdout line is it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core import backends
from core.cli.output import stdout_to_stderr
from core.lab import export as lab_export
from core.lab.store import open_store


def cmd_export(args: argparse.Namespace) -> None:
    """Export, register, and print the folder as the last line of stdout."""
    with stdout_to_stderr():
        report = lab_export.export_submodel(
            args.checkpoint, args.layer, args.dim, args.backend, args.output, session_factory=open_store()
        )
    print(
        f"exported ({report.layer}, {report.dim}) on {report.backend}: {report.files_bytes / 2**20:.1f} MiB, "
        f"{len(report.scores)} stored scores in its model card; registered as {report.checkpoint.name}",
        file=sys.stderr,
    )
    print(report.folder)


def add_parser(sub: Any) -> None:
    """Register ``export``."""
    exp = sub.add_parser("export", help="export one sub-model as a standalone sentence-transformers folder")
    exp.add_argument("--checkpoint", required=True, help="'default', a local folder, or org/name[@revision]")
    exp.add_argument("--layer", type=int, required=True, help="keep the first LAYER transformer layers")
    exp.add_argument("--dim", type=int, required=True, help="embedding dimensions kept (truncate_dim)")
    exp.add_argument(
        "--backend",
        default=backends.DEFAULT_BACKEND,
        help=f"one of {', '.join(backends.BACKENDS)} (default torch)",
    )
    exp.add_argument(
        "--output", default=None, help="a new or empty folder (default: $MLAB_HOME/exports/NAME)"
    )
    exp.set_defaults(handler=cmd_export, keys=None)
