"""Background jobs: every config field survives job file -> CLI -> card; a dead process reads as interrupted."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from core.cli import main as cli
from core.cli.train import add_parser as add_train_parser
from core.cli.train import config_from_args
from core.lab import jobs
from core.training import LossConfig, TrainConfig, TrainingError
from core.training import card as cards
from core.training.config import TrainConfigError
from tests.pagedata import write_sts


@pytest.fixture
def sts_file(tmp_path: Path) -> Path:
    return write_sts(tmp_path / "train.tsv")


def _parse(cmd: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(cmd[cmd.index("train") :])


def _every_field_changed(tmp_path: Path, base: str, dataset: str) -> TrainConfig:
    """A config with every field of TrainConfig and LossConfig away from its default (checked below)."""
    config = TrainConfig(
        output_dir=str(tmp_path / "out"), base=base, method="2dmse", dataset=dataset,
        pairs=((1, 16), (3, 48)), epochs=2, max_steps=1, batch_size=4, learning_rate=5e-5, warmup_ratio=0.2,
        weight_decay=0.01, max_grad_norm=0.5, seed=3, max_length=64, limit=12, register=False,
        loss=LossConfig(
            scale=10.0, full_weight=2.0, pair_weights=(0.5, 2.0), kl_weight=0.5, kl_mode="similarity",
            kl_temperature=0.1, detach_teacher=False, layers_per_step=2, dims_per_step=1, layer_weighting="log",
        ),
    )  # fmt: skip
    defaults = TrainConfig(output_dir="")
    same = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if getattr(config, f.name) == getattr(defaults, f.name)
    ]
    same += [f"loss.{f.name}" for f in dataclasses.fields(LossConfig)
             if getattr(config.loss, f.name) == getattr(defaults.loss, f.name)]  # fmt: skip
    assert not same, f"give these fields a non-default value too: {same}"
    return config


def test_every_config_field_survives_job_file_cli_and_card(
    tmp_path: Path, tiny_folder: Path, sts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _every_field_changed(tmp_path, str(tiny_folder), str(sts_file))
    config_file = config.save(tmp_path / "config.json")
    cmd = jobs.command(config_file, tmp_path / "p.json", tmp_path / "c", threads=1)
    args = _parse(cmd)
    assert config_from_args(args) == config  # job file -> CLI
    assert (args.progress_file, args.cancel_file, args.threads) == (
        str(tmp_path / "p.json"),
        str(tmp_path / "c"),
        1,
    )
    assert cli.main(cmd[cmd.index("train") :]) == 0  # the CLI trains it (1 step, no database)
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert cards.load_card(folder)["config"] == config.to_dict()  # CLI -> card, every field


def test_flags_override_a_config_file_and_defaults_live_in_the_dataclasses(tmp_path: Path) -> None:
    saved = TrainConfig(output_dir=str(tmp_path / "a"), method="mrl", loss=LossConfig(kl_weight=0.7)).save(
        tmp_path / "c.json"
    )
    args = _parse(["train", "--config", str(saved), "--kl-mode", "similarity", "--lr", "1e-4"])
    config = config_from_args(args)
    assert (config.method, config.learning_rate, config.loss.kl_weight, config.loss.kl_mode) == (
        "mrl", 1e-4, 0.7, "similarity",
    )  # fmt: skip
    assert config_from_args(_parse(["train", "--output", "x"])) == TrainConfig(output_dir="x")
    with pytest.raises(TrainConfigError, match="--output is required"):
        config_from_args(_parse(["train"]))
    (tmp_path / "bad.json").write_text(
        '{"format": "matryoshka-lab/train-config", "version": 1, "config": {"lr": 1}}'
    )
    with pytest.raises(TrainConfigError, match="unknown training config key"):
        config_from_args(_parse(["train", "--config", str(tmp_path / "bad.json")]))


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
