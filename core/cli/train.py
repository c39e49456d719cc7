"""``python -m core train``: the command-line face of ``core.lab.training.train``.

Contract: ``python -m core train --base CKPT --method METHOD --dataset DS --output DIR [--pairs 1:32,...]
[--epochs N] [--max-steps N] [--batch-size N] [--seed N]`` (+ one flag per field of ``TrainConfig`` and
``LossConfig``), or ``--config FILE`` (a saved ``TrainConfig``; flags given override it). The new checkpoint's
folder is the LAST line of stdout (for ``separate``: the folder holding ``manifest.json`` and one
sub-folder per pair); progress and library chatter go to stderr. A user mistake prints one
``error: ...`` line on stderr and exits non-zero.

For a background run (the Train page): ``--progress-file F`` keeps a small JSON document in F up to
date (status, step, total, loss curve, output, error), and the run stops at the next step once
``--cancel-file C`` exists.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from common.errors import LabError
from core.lab.store import open_store
from core.lab.training import train
from core.training.config import LossConfig, TrainConfig, TrainConfigError
from core.training.loop import METHODS, TrainingCancelled, check_config, parse_pairs

PROGRESS_EVERY_S = 0.5


# (flag, field, type, help): every field of TrainConfig / LossConfig is one flag; the defaults are the
# dataclasses' own (shown in --help), so they are written once. Only the flags given change the config.
CONFIG_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--base", "base", str, "base checkpoint: 'default', a folder or org/name[@rev]"),
    ("--method", "method", str, "training method: " + ", ".join(METHODS)),
    ("--dataset", "dataset", str, "STS tsv (CoSENT) or BEIR folder with qrels/train.tsv"),
    ("--output", "output_dir", str, "new folder for the trained checkpoint"),
    ("--pairs", "pairs", parse_pairs, "LAYER:DIM list, e.g. 1:32,2:64 (default: scaled diagonal)"),
    ("--epochs", "epochs", int, "passes over the training pairs"),
    ("--max-steps", "max_steps", int, "stop after N optimizer steps (overrides epochs)"),
    ("--batch-size", "batch_size", int, "pairs per optimizer step"),
    ("--lr", "learning_rate", float, "peak learning rate (also --learning-rate)"),
    ("--warmup-ratio", "warmup_ratio", float, "share of steps of linear warmup"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--max-grad-norm", "max_grad_norm", float, "gradient clipping norm"),
    ("--seed", "seed", int, "seed of shuffling, dropout and 2DMSE sampling"),
    ("--max-length", "max_length", int, "max tokens per text (default: the base's)"),
    ("--limit", "limit", int, "train on the first N pairs only"),
    ("--loss-scale", "loss.scale", float, "scale of the base loss (CoSENT / MNRL)"),
    ("--full-weight", "loss.full_weight", float, "weight of the full-model loss (starbucks)"),
    ("--pair-weights", "loss.pair_weights", None, "comma-separated weight per pair (starbucks)"),
    ("--kl-weight", "loss.kl_weight", float, "weight of the KL term (starbucks, 2dmse)"),
    ("--kl-mode", "loss.kl_mode", str, "starbucks KL: embedding (paper) or similarity"),
    ("--kl-temperature", "loss.kl_temperature", float, "temperature of the KL term"),
    ("--layers-per-step", "loss.layers_per_step", int, "2dmse: prior layers sampled per step"),
    ("--dims-per-step", "loss.dims_per_step", int, "2dmse: dims per layer per step (-1 = all)"),
    ("--layer-weighting", "loss.layer_weighting", str, "2dmse: uniform, log or linear"),
)


def _pair_weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise TrainConfigError(f"--pair-weights: {text!r} is not a comma-separated list of numbers") from None


def _default(name: str) -> Any:
    owner, _, attr = name.rpartition(".")
    return getattr(LossConfig() if owner == "loss" else TrainConfig(output_dir=""), attr)


def add_parser(subparsers: Any) -> None:
    """Add the ``train`` subcommand to a ``python -m core`` subparsers object."""
    p = subparsers.add_parser("train", help="fine-tune a 2D Matryoshka checkpoint (starbucks, 2dmse, ...)")
    p.add_argument(
        "--config",
        default=None,
        help="a training config JSON file (TrainConfig.save); flags given override it",
    )
    for flag, name, _kind, text in CONFIG_FLAGS:
        names = [flag, "--learning-rate"] if flag == "--lr" else [flag]
        default = _default(name)
        metavar = name.rpartition(".")[2].upper()
        p.add_argument(
            *names, dest=name, metavar=metavar, default=argparse.SUPPRESS, help=f"{text} (default: {default})"
        )
    p.add_argument(
        "--no-detach",
        dest="loss.detach_teacher",
        action="store_false",
        default=argparse.SUPPRESS,
        help="let the KL gradient flow into the full model (the paper's STS code)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--no-register", dest="register", action="store_false", default=argparse.SUPPRESS,
        help="do not write to the database",
    )  # fmt: skip
    p.add_argument("--progress-file", default=None, help="keep a JSON progress document in this file")
    p.add_argument("--cancel-file", default=None, help="cancel at the next step once this file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train, keys=None)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of ``--config`` (or the defaults) with every given flag applied.

    Raises:
        TrainConfigError: an unreadable config file, a flag value of the wrong type, or no output folder.
    """
    given = vars(args)
    config = TrainConfig.load(args.config) if args.config else TrainConfig(output_dir="")
    top: dict[str, Any] = {}
    loss: dict[str, Any] = {}
    kinds = {name: kind for _, name, kind, _ in CONFIG_FLAGS}
    for name, value in given.items():
        if name not in kinds and name not in {"loss.detach_teacher", "register"}:
            continue
        kind = kinds.get(name)
        if name == "loss.pair_weights":
            value = _pair_weights(value)
        elif kind is not None and isinstance(value, str):
            try:
                value = kind(value)
            except LabError:
                raise
            except ValueError:
                flag = next(f for f, n, _, _ in CONFIG_FLAGS if n == name)
                raise TrainConfigError(f"{flag}: {value!r} is not a valid {kind.__name__}") from None
        owner, _, attr = name.rpartition(".")
        (loss if owner == "loss" else top)[attr] = value
    config = dataclasses.replace(config, **top, loss=dataclasses.replace(config.loss, **loss))
    if not str(config.output_dir).strip():
        raise TrainConfigError("--output is required (or a --config file naming output_dir)")
    return config


class ProgressFile:
    """A JSON progress document, rewritten atomically at most every ``PROGRESS_EVERY_S`` seconds."""

    def __init__(self, path: str | Path, output: str, method: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state: dict[str, Any] = {
            "status": "running",
            "step": 0,
            "total": 0,
            "losses": [],
            "output": output,
            "method": method,
            "pid": os.getpid(),
            "error": None,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._last = 0.0
        self.write(force=True)

    def step(self, step: int, total: int, loss: float) -> None:
        """Record one optimizer step."""
        self.state["step"], self.state["total"] = step, total
        self.state["losses"].append(round(loss, 6))
        self.write(force=step >= total)

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the final status."""
        self.state["status"], self.state["error"] = status, error
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        """Write the document now if due (or forced)."""
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        self.state["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.state, fh)
        os.replace(tmp, self.path)


class TrainCommandError(LabError):
    """A train command that failed for a reason the user can act on (the message is the error line)."""


def run_train(args: argparse.Namespace) -> None:
    """Train, print the new checkpoint's folder as the last stdout line; raise ``LabError`` on user mistakes."""
    try:
        config = config_from_args(args)
        check_config(config)  # before any progress bar or file, so a mistake is the only stderr line
    except LabError as exc:
        if args.progress_file:
            ProgressFile(args.progress_file, "", "").finish("failed", str(exc))
        raise
    output = str(Path(config.output_dir).expanduser().resolve())
    if args.threads is not None and args.threads < 1:  # torch.set_num_threads raises a RuntimeError
        message = f"--threads must be at least 1, got {args.threads}"
        if args.progress_file:
            ProgressFile(args.progress_file, output, config.method).finish("failed", message)
        raise TrainCommandError(message)
    progress_file = ProgressFile(args.progress_file, output, config.method) if args.progress_file else None
    bar: Any = None
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if not args.quiet:
            bar = tqdm(total=0, desc=f"train {config.method}", unit="step", file=sys.stderr, leave=False)

        def progress(step: int, total: int, loss: float) -> None:
            if bar is not None:
                bar.total = total
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{loss:.4f}")
            if progress_file is not None:
                progress_file.step(step, total, loss)

        def should_stop() -> bool:
            return bool(args.cancel_file) and Path(args.cancel_file).exists()

        with contextlib.redirect_stdout(sys.stderr):
            result = train(
                config,
                progress=progress,
                should_stop=should_stop,
                session_factory=open_store() if config.register else None,
            )
    except TrainingCancelled as exc:
        if progress_file is not None:
            progress_file.finish("cancelled", str(exc))
        raise TrainCommandError(str(exc)) from exc
    except LabError as exc:
        if progress_file is not None:
            progress_file.finish("failed", str(exc))
        raise
    except KeyboardInterrupt:
        if progress_file is not None:
            progress_file.finish("interrupted", "interrupted")
        raise
    except BaseException as exc:
        if progress_file is not None:
            progress_file.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
    if progress_file is not None:
        progress_file.state["fingerprints"] = [m.fingerprint for m in result.models]
        progress_file.state["run_id"] = result.run_id
        progress_file.state["output"] = str(result.output_dir)
        progress_file.finish("completed")
    for model in result.models:
        print(f"{model.card['label']}: {model.path} ({model.fingerprint})", file=sys.stderr)
    print(result.output_dir, flush=True)
