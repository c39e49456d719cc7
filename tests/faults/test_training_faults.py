"""Training that cannot give a usable checkpoint stops before or while it runs, and registers nothing.

Issue 15, case 4: ``--lr inf --max-steps 1`` exited 0 with every weight NaN, a ``completed`` run and
``Infinity`` in training_card.json (not JSON). Case 8: ``--threads -1`` (a torch ``RuntimeError``),
``--output`` under a file (``FileExistsError``; the run row stayed ``running``), two trainings into one
new folder (the second failed only after training). Now non-finite hyper-parameters are refused
before any work, a loss or weight that becomes non-finite stops the run (failed, nothing saved or
registered), the CLI checks its own options and the output location first, and the output folder is
locked for the run's lifetime. Hypothesis draws the numeric hyper-parameters, finite or not.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.training.config import LossConfig, TrainConfig
from core.training.loop import TrainingError, check_config
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

PAIRS = [(f"a man plays {i}", f"a person plays {i}", float(i % 5)) for i in range(12)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layers=2, hidden=16)


@pytest.fixture
def sts(tmp_path: Path) -> Path:
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS))
    return path


def _train(tiny: Path, sts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--base", str(tiny), "--method", "starbucks", "--dataset", str(sts), "--output", str(out),
        "--pairs", "1:8,2:16", "--max-steps", "1", "--batch-size", "4", "--quiet", *extra,
    ]  # fmt: skip


def _nothing_trained(home: Path, out: Path) -> None:
    stored = support.stored(home)
    assert stored["runs"] == 0 and stored["checkpoints"] == 0, stored
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--lr", "inf"], "learning rate"),
        (["--lr", "nan"], "learning rate"),
        (["--lr=-inf"], "learning rate"),
        (["--loss-scale", "inf"], "loss scale"),
        (["--kl-temperature", "inf"], "KL temperature"),
        (["--pair-weights", "1,inf"], "pair weights"),
        (["--threads=-1"], "--threads"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_refused_hyper_parameters_stop_before_anything_is_stored(
    extra: list[str], needle: str, tiny: Path, sts: Path, tmp_path: Path, lab_env: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, err = support.run_cli(_train(tiny, sts, out, *extra))
    support.assert_one_error_line(code, err, needle)
    assert stdout == ""
    _nothing_trained(lab_env, out)


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, math.inf, -math.inf, math.nan, 2e-5]),
)


@settings(
    deadline=None,
    database=None,
    derandomize=True,
    max_examples=800,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lr=FLOATS, scale=FLOATS, temperature=FLOATS, weight=FLOATS, warmup=FLOATS, decay=FLOATS)
def test_every_float_hyper_parameter_is_finite_or_refused(
    lr: float, scale: float, temperature: float, weight: float, warmup: float, decay: float
) -> None:
    config = TrainConfig(
        output_dir="out",
        learning_rate=lr,
        warmup_ratio=warmup,
        weight_decay=decay,
        loss=LossConfig(
            scale=scale, kl_temperature=temperature, kl_weight=weight, pair_weights=(1.0, weight)
        ),
    )
    try:
        check_config(config)
    except TrainingError as exc:
        assert "\n" not in str(exc)
        return
    values = [lr, scale, temperature, weight, warmup, decay]
    assert all(math.isfinite(v) for v in values)
    assert lr > 0 and scale > 0 and temperature > 0 and weight >= 0 and 0 <= warmup < 1 and decay >= 0
    json.dumps(config.to_dict(), allow_nan=False)  # an accepted config writes a strict-JSON card


@pytest.mark.parametrize(
    "extra",
    [
        ["--lr", "1e38", "--max-steps", "2"],
        ["--lr", "3.4e38", "--max-steps", "2"],
        ["--lr", "1e38", "--max-steps", "3", "--batch-size", "12", "--warmup-ratio", "0"],
        # Weight decay scales the weights by 1 - lr * decay = -1e38: the next forward pass is NaN.
        [
            "--lr",
            "1e19",
            "--weight-decay",
            "1e19",
            "--warmup-ratio",
            "0",
            "--max-steps",
            "3",
            "--batch-size",
            "12",
        ],
    ],
)
def test_weights_that_become_non_finite_stop_the_run_and_register_nothing(
    extra: list[str], tiny: Path, sts: Path, tmp_path: Path, lab_env: Path
) -> None:
    """A finite but huge learning rate blows the weights up: the run fails, nothing is kept."""
    out = tmp_path / "out"
    code, stdout, err = support.run_cli(_train(tiny, sts, out, *extra))
    line = support.assert_one_error_line(code, err, "lower the learning rate", "nothing was saved")
    assert "overflowed" in line or "non-finite" in line or "loss became nan" in line
    assert stdout == ""
    runs = support.query(lab_env / "lab.sqlite3", "SELECT kind, status, error_text FROM runs")
    assert [(k, s) for k, s, _ in runs] == [("train", "failed")] and "learning rate" in runs[0][2]
    # Only the base checkpoint is known; no trained checkpoint, no output folder, no half folder.
    names = support.query(lab_env / "lab.sqlite3", "SELECT name, training_card FROM checkpoints")
    assert [n for n, _ in names] == [str(tiny)] and names[0][1] is None
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_an_output_under_a_file_is_refused_before_training(
    tiny: Path, sts: Path, tmp_path: Path, lab_env: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "out"
    code, _, err = support.run_cli(_train(tiny, sts, out))
    support.assert_one_error_line(code, err, str(blocker), "is a file")
    assert support.stored(lab_env)["runs"] == 0 and blocker.read_text() == "not a folder"


def test_two_trainings_into_one_new_folder_the_second_is_refused_at_once(
    tiny: Path, sts: Path, tmp_path: Path, lab_env: Path
) -> None:
    out = tmp_path / "shared-out"
    log = tmp_path / "first.log"
    first = support.start_cli(
        _train(tiny, sts, out, "--max-steps", "400", "--batch-size", "2"), support.lab_env(lab_env), log
    )
    try:
        lock = tmp_path / ".shared-out.lock"
        support.wait_for(
            lambda: lock.exists() and lock.read_text().strip() == str(first.pid), first, "the lock"
        )
        started = time.perf_counter()
        code, _, err = support.run_cli(_train(tiny, sts, out))
        support.assert_one_error_line(code, err, str(out), "another training", f"pid {first.pid}")
        print(f"\nsecond training refused in {time.perf_counter() - started:.2f} s")
        assert first.wait(timeout=900) == 0, log.read_text()
    finally:
        if first.poll() is None:
            support.kill9(first)
    assert (out / "training_card.json").is_file() and not lock.exists()
    rows = support.query(lab_env / "lab.sqlite3", "SELECT status FROM runs WHERE kind = 'train'")
    assert rows == [("completed",)]
    # Afterwards the folder is taken: a third training is refused by its content, not the lock.
    code, _, err = support.run_cli(_train(tiny, sts, out))
    support.assert_one_error_line(code, err, "already exists and is not empty")


def test_a_killed_lock_holder_does_not_block_the_folder(tiny: Path, sts: Path, tmp_path: Path) -> None:
    """The lock is the kernel's (flock): a holder killed with -9 releases it with its process."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from core.training.loop import output_lock\n"
         f"with output_lock(Path({str(out)!r})):\n    print('locked', flush=True); sys.stdin.read()"],
        cwd=support.REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait(timeout=30)
    code, _, err = support.run_cli(_train(tiny, sts, out))
    assert code == 0, err
