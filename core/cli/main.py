"""The ``python -m core`` parser and entry point: one subcommand module each, one error convention.

A ``LabError`` (any user mistake) prints one ``error: ...`` line on stderr and exits 2, as do argument
mistakes; anything else is a bug and ends with its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

# Quiet third-party chatter before they are imported.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common.errors import LabError, redact
from core.cli.output import print_rows

# Subcommand -> the core.cli module that defines it. A command line naming one imports only that module:
# `references` or `import-mteb` do not pay the ~7 s of importing torch and sentence-transformers that
# `evaluate`, `cost` or `train` need. Help and unknown commands import them all.
COMMAND_MODULES = {
    "evaluate": "grid",
    "results": "grid",
    "checkpoints": "grid",
    "alias": "grid",
    "datasets": "grid",
    "cost": "cost",
    "train": "train",
    "significance": "significance",
    "import-mteb": "mteb",
    "references": "mteb",
    "export": "export",
}
SUBCOMMAND_MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def _modules(names: Sequence[str]) -> list[ModuleType]:
    return [importlib.import_module(f"core.cli.{name}") for name in names]


class LabArgumentParser(argparse.ArgumentParser):
    """argparse with the lab's error convention: one ``error: ...`` line on stderr, exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        text = text if len(text) <= 300 else text[:300] + "..."  # a long value is cut
        self.exit(2, f"error: {text} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``python -m core`` argument parser: every subcommand, or only ``command``'s module's."""
    parser = LabArgumentParser(prog="python -m core", description="Matryoshka Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    names = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else SUBCOMMAND_MODULES
    for module in _modules(names):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)  # the command comes first: no global options
    args = parser.parse_args(argv)
    try:
        rows: Any = args.handler(args)
    except LabError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)  # one line, no URL password
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
    print_rows(rows, fmt, args.keys if fmt != "json" else None)
    return 0
