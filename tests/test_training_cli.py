"""``python -m core train``: the last stdout line is the new folder; errors are one stderr line + exit != 0;
the progress file and the cancel file drive a background run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import checkpoints
from core.cli import main as cli
from core.training import card as cards
from tests.conftest import write_sts_pairs
from tests.pagedata import PAIRS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sts_file(tmp_path: Path) -> Path:
    return write_sts_pairs(tmp_path / "train.tsv", PAIRS)


def _args(tiny_folder: Path, sts_file: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--base", str(tiny_folder), "--method", "starbucks", "--dataset", str(sts_file),
        "--output", str(out), "--pairs", "1:16,3:48", "--max-steps", "2", "--batch-size", "4",
        "--seed", "3", "--quiet", *extra,
    ]  # fmt: skip


def test_last_stdout_line_is_the_new_folder(
    tiny_folder: Path, sts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = tmp_path / "progress.json"
    code = cli.main(_args(tiny_folder, sts_file, tmp_path / "out", "--progress-file", str(progress)))
    captured = capsys.readouterr()
    assert code == 0
    folder = Path(captured.out.strip().splitlines()[-1])
    assert folder == (tmp_path / "out").resolve()
    assert checkpoints.load(str(folder)).info.num_layers == 3
    assert cards.load_card(folder)["pairs"] == [[1, 16], [3, 48]]
    state = json.loads(progress.read_text())
    assert state["status"] == "completed" and state["step"] == state["total"] == 2
    assert len(state["losses"]) == 2 and state["fingerprints"] == [
        checkpoints.load(str(folder)).info.fingerprint
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs", "9:16"], "layer must be in 1..3"),
        (["--pairs", "1x16"], "LAYER:DIM"),
        (["--epochs", "0"], "epochs"),
    ],
)
def test_user_errors_are_one_stderr_line(
    tiny_folder: Path,
    sts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code = cli.main([*_args(tiny_folder, sts_file, tmp_path / "out"), *extra])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert captured.out == ""


def test_cancel_file_stops_the_run(
    tiny_folder: Path, sts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cancel, progress = tmp_path / "cancel", tmp_path / "progress.json"
    cancel.touch()
    args = _args(
        tiny_folder,
        sts_file,
        tmp_path / "out",
        "--progress-file",
        str(progress),
        "--cancel-file",
        str(cancel),
    )
    code = cli.main(args)
    captured = capsys.readouterr()
    assert code != 0 and "cancelled" in captured.err
    assert not (tmp_path / "out").exists()
    assert json.loads(progress.read_text())["status"] == "cancelled"


def test_python_dash_m_core_train(tiny_folder: Path, sts_file: Path, tmp_path: Path) -> None:
    """The contract as a user types it, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "core", *_args(tiny_folder, sts_file, tmp_path / "out", "--no-register")],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str((tmp_path / "out").resolve())
