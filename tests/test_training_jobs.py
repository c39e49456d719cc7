"""Background jobs: the command line round-trips the config; a dead process reads as interrupted."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from core.cli.train import add_parser as add_train_parser
from core.cli.train import config_from_args
from core.lab import jobs
from core.training import TrainConfig, TrainingError


def _parse(cmd: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(cmd[cmd.index("train") :])


def test_command_round_trips_the_config(tmp_path: Path) -> None:
    config = TrainConfig(
        output_dir=str(tmp_path / "out"), base="default", method="2dmse", dataset="stsb-train",
        pairs=((1, 32), (6, 384)), epochs=2, max_steps=7, batch_size=16, learning_rate=5e-5,
        warmup_ratio=0.2, seed=3, max_length=64, kl_weight=0.5, kl_mode="similarity", kl_temperature=0.1,
        detach_teacher=False, full_weight=2.0, layers_per_step=2, dims_per_step=1, layer_weighting="log",
        weight_decay=0.01, limit=100, register=False,
    )  # fmt: skip
    cmd = jobs.command(config, tmp_path / "p.json", tmp_path / "c", threads=1)
    args = _parse(cmd)
    assert config_from_args(args) == config
    assert (args.progress_file, args.cancel_file, args.threads) == (
        str(tmp_path / "p.json"),
        str(tmp_path / "c"),
        1,
    )


def test_a_job_whose_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid no longer names a process
    folder = jobs.jobs_dir() / "20990101-000000-000000-full"
    folder.mkdir(parents=True)
    (folder / "stderr.log").write_text("Traceback ...\nMemoryError: out of memory\n")
    state = {"status": "running", "step": 3, "total": 10, "losses": [1.0, 0.9, 0.8], "output": "x",
             "method": "full", "pid": finished.pid, "error": None, "started_at": ""}  # fmt: skip
    (folder / "progress.json").write_text(json.dumps(state))
    job = jobs.read_job(folder)
    assert job.status == "interrupted" and not job.active
    assert "MemoryError" in (job.error or "")
    assert job.fraction == pytest.approx(0.3)
    assert jobs.list_jobs()[0].id == folder.name


def test_start_job_refuses_bad_requests_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.settings import ReadOnlyError

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    with pytest.raises(TrainingError, match="not empty"):
        jobs.start_job(TrainConfig(output_dir=str(busy)))
    with pytest.raises(TrainingError, match="unknown method"):
        jobs.start_job(TrainConfig(output_dir=str(tmp_path / "o"), method="nope"))
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    with pytest.raises(ReadOnlyError):
        jobs.start_job(TrainConfig(output_dir=str(tmp_path / "o")))
    assert jobs.list_jobs() == []
