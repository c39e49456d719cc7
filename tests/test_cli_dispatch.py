"""python -m core imports only the module of the command it runs; every command is mapped to its module."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from core.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_command_is_mapped_to_the_module_that_defines_it() -> None:
    assert subcommands(cli.build_parser()) == set(cli.COMMAND_MODULES)
    for command, module in cli.COMMAND_MODULES.items():
        assert command in subcommands(cli.build_parser(command)), (command, module)


def test_a_light_command_does_not_import_torch_or_scipy(tmp_path: Path) -> None:
    env = {**os.environ, "MLAB_HOME": str(tmp_path)}
    env.pop("MLAB_DATABASE_URL", None)
    script = (
        "import sys\n"
        "from core.cli import main\n"
        "code = main.main(['references', '--format', 'json'])\n"
        "print(code, 'torch' in sys.modules, 'sentence_transformers' in sys.modules, 'scipy.stats' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 False False False"


def test_an_unknown_command_still_lists_every_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "core", "bogus"],
        cwd=ROOT,
        env={**os.environ, "MLAB_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: argument command: invalid choice: 'bogus'")
    assert all(repr(command) in done.stderr for command in cli.COMMAND_MODULES)
