"""``python -m core train``: the command-line face of ``core.lab.training.train``.

Contract: ``python -m core train --base CKPT --method METHOD --dataset DS --output DIR [--pairs 1:32,...]
[--epochs N] [--max-steps N] [--batch-size N] [--seed N]`` (+ the options below). The new checkpoint's
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
from core.training.loop import METHODS, TrainConfig, TrainingCancelled, parse_pairs

PROGRESS_EVERY_S = 0.5


def add_parser(subparsers: Any) -> None:
    """Add the ``train`` subcommand to a ``python -m core`` subparsers object."""
    p = subparsers.add_parser("train", help="fine-tune a 2D Matryoshka checkpoint (starbucks, 2dmse, ...)")
    p.add_argument("--base", default="default", help="base checkpoint: 'default', a folder or org/name[@rev]")
    p.add_argument("--method", choices=METHODS, default="starbucks", help="training method")
    p.add_argument(
        "--dataset", default="stsb-train", help="STS tsv (CoSENT) or BEIR folder with qrels/train.tsv"
    )
    p.add_argument("--output", required=True, help="new folder for the trained checkpoint")
    p.add_argument("--pairs", default=None, help="LAYER:DIM list, e.g. 1:32,2:64 (default: scaled diagonal)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides epochs)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=2e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-length", type=int, default=None, help="max tokens per text (default: the base's)")
    p.add_argument("--kl-weight", type=float, default=0.3, help="weight of the KL term (starbucks, 2dmse)")
    p.add_argument("--kl-mode", choices=("embedding", "similarity"), default="embedding")
    p.add_argument("--kl-temperature", type=float, default=0.3)
    p.add_argument(
        "--no-detach",
        dest="detach_teacher",
        action="store_false",
        help="let the KL gradient flow into the full model (the paper's STS code)",
    )
    p.add_argument("--full-weight", type=float, default=1.0, help="weight of the full-model loss (starbucks)")
    p.add_argument("--layers-per-step", type=int, default=1, help="2dmse: prior layers sampled per step")
    p.add_argument("--dims-per-step", type=int, default=-1, help="2dmse: dims per layer per step (-1 = all)")
    p.add_argument("--layer-weighting", choices=("uniform", "log", "linear"), default="uniform")
    p.add_argument("--limit", type=int, default=None, help="train on the first N pairs only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--no-register", dest="register", action="store_false", help="do not write to the database"
    )
    p.add_argument("--progress-file", default=None, help="keep a JSON progress document in this file")
    p.add_argument("--cancel-file", default=None, help="cancel at the next step once this file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train, keys=None)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed arguments."""
    return TrainConfig(
        output_dir=args.output,
        base=args.base,
        method=args.method,
        dataset=args.dataset,
        pairs=parse_pairs(args.pairs),
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        seed=args.seed,
        max_length=args.max_length,
        kl_weight=args.kl_weight,
        kl_mode=args.kl_mode,
        kl_temperature=args.kl_temperature,
        detach_teacher=args.detach_teacher,
        full_weight=args.full_weight,
        layers_per_step=args.layers_per_step,
        dims_per_step=args.dims_per_step,
        layer_weighting=args.layer_weighting,
        limit=args.limit,
        register=args.register,
    )


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
    output = str(Path(args.output).expanduser().resolve())
    progress_file = ProgressFile(args.progress_file, output, args.method) if args.progress_file else None
    bar: Any = None
    try:
        config = config_from_args(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        if not args.quiet:
            bar = tqdm(total=0, desc=f"train {args.method}", unit="step", file=sys.stderr, leave=False)

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
