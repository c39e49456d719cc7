"""The training loop: validation, the methods' objective and ``fit`` (pure compute, nothing stored).

``core.lab.training.train(TrainConfig(...))`` loads the base checkpoint (never mutating the shared cached
model: it trains a deep copy, or a truncated copy for ``separate``) and pairs from an STS file (CoSENT)
or a BEIR train split (MultipleNegativesRanking); ``fit`` here runs AdamW with linear warmup and decay,
gradient clipping at ``max_grad_norm`` (1.0) and weight decay 0 (the Hugging Face Trainer defaults
sentence-transformers trains with).

Each step tokenizes the batch's two text columns, runs ONE encoder pass per column through
``core.submodels.forward_all_layers`` (every needed layer pooled from the same pass the evaluator
uses) and hands the pooled embeddings to ``core.training.losses``. Batches are shuffled per epoch by a
seeded generator; dropout and 2DMSE sampling are seeded too, so the same seed, data and thread count
give the same weights on CPU.

Output: ``output_dir`` holds a sentence-transformers folder with ``training_card.json``; for
``separate`` it holds ``manifest.json`` and one such folder per (layer, dim) pair. Work happens in a
hidden sibling folder renamed into place at the end (``prepare_output``), so a cancelled or failed run
leaves no half checkpoint; ``core.lab.training`` registers only finished folders (with a ``runs`` row).
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import LabError
from common.processes import pid_alive
from core import checkpoints, provenance
from core.submodels import default_diagonal, forward_all_layers
from core.training import data as training_data
from core.training import losses
from core.training.config import LossConfig, TrainConfig

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

METHODS: tuple[str, ...] = ("starbucks", "2dmse", "mrl", "full", "separate")
ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, loss)
StopFn = Callable[[], bool]  # True = cancel now (checked before every step)


class TrainingError(LabError):
    """A training request that cannot run (bad method, pairs, hyper-parameter or output folder)."""


class TrainingCancelled(RuntimeError):
    """Raised by ``train`` when the stop callback asked to cancel; nothing was saved or registered."""


def parse_pairs(text: str | Sequence[Sequence[int]] | None) -> tuple[tuple[int, int], ...] | None:
    """``"1:32,2:64"`` -> ((1, 32), (2, 64)); None/"" -> None (the default diagonal).

    >>> parse_pairs("1:32, 6:384")
    ((1, 32), (6, 384))
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        return tuple((int(k), int(d)) for k, d in text)
    pairs: list[tuple[int, int]] = []
    for item in text.split(","):
        layer, sep, dim = item.strip().partition(":")
        if not sep or not layer.strip().isdigit() or not dim.strip().isdigit():
            raise TrainingError(f"--pairs: {item.strip()!r} is not LAYER:DIM (e.g. 1:32,2:64,6:384)")
        pairs.append((int(layer), int(dim)))
    return tuple(pairs)


@dataclass(frozen=True)
class TrainedModel:
    """One saved checkpoint of a run (``separate`` makes one per pair)."""

    path: Path
    fingerprint: str
    card: dict[str, Any]
    pair: tuple[int, int] | None = None


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` produced: the output folder, its checkpoints, and the run id (None if unregistered)."""

    output_dir: Path
    models: list[TrainedModel]
    run_id: int | None
    wall_time_s: float
    loss_curve: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------ validation


def check_config(config: TrainConfig) -> None:
    """Refuse a config with a bad method, folder or hyper-parameter (before any loading)."""
    if config.method not in METHODS:
        raise TrainingError(f"unknown method {config.method!r}; choose from {', '.join(METHODS)}")
    if not str(config.output_dir).strip():
        raise TrainingError("no output folder given")
    positive = {"epochs": config.epochs, "batch size": config.batch_size}
    for name, value in positive.items():
        if value < 1:
            raise TrainingError(f"{name} must be at least 1, got {value}")
    if config.max_steps is not None and config.max_steps < 1:
        raise TrainingError(f"max steps must be at least 1, got {config.max_steps}")
    # Comparisons alone let inf (and NaN, in "not x > 0") through: every float must be finite too.
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise TrainingError(f"learning rate must be a finite number > 0, got {config.learning_rate}")
    if not (math.isfinite(config.loss.scale) and config.loss.scale > 0):
        raise TrainingError(f"loss scale must be a finite number > 0, got {config.loss.scale}")
    for weight in config.loss.pair_weights or ():
        if not (math.isfinite(weight) and weight >= 0):
            raise TrainingError(f"pair weights must be finite numbers >= 0, got {weight}")
    if not 0 <= config.warmup_ratio < 1:
        raise TrainingError(f"warmup ratio must be in [0, 1), got {config.warmup_ratio}")
    if config.max_length is not None and config.max_length < 2:
        raise TrainingError(f"max length must be at least 2 tokens, got {config.max_length}")
    for name, weight in {
        "kl weight": config.loss.kl_weight,
        "full weight": config.loss.full_weight,
        "weight decay": config.weight_decay,
        "max grad norm": config.max_grad_norm,
    }.items():
        if weight < 0 or not math.isfinite(weight):
            raise TrainingError(f"{name} must be a finite number >= 0, got {weight}")
    if not (math.isfinite(config.loss.kl_temperature) and config.loss.kl_temperature > 0):
        raise TrainingError(f"KL temperature must be a finite number > 0, got {config.loss.kl_temperature}")
    if config.loss.kl_mode not in losses.KL_MODES:
        raise TrainingError(
            f"unknown KL mode {config.loss.kl_mode!r}; choose from {', '.join(losses.KL_MODES)}"
        )
    if config.loss.layer_weighting not in losses.LAYER_WEIGHTINGS:
        raise TrainingError(
            f"unknown layer weighting {config.loss.layer_weighting!r}; choose from {', '.join(losses.LAYER_WEIGHTINGS)}"
        )


def resolve_pairs(
    pairs: Sequence[tuple[int, int]] | None, num_layers: int, width: int
) -> tuple[tuple[int, int], ...]:
    """The pairs to train, checked against the base model: layer in 1..L, dim in 1..width, no repeats."""
    chosen = tuple(pairs) if pairs else tuple(default_diagonal(num_layers, width))
    if len(set(chosen)) != len(chosen):
        raise TrainingError(f"--pairs lists a pair twice: {chosen}")
    for layer, dim in chosen:
        if not 1 <= layer <= num_layers:
            raise TrainingError(
                f"pair {layer}:{dim}: layer must be in 1..{num_layers} for this base checkpoint"
            )
        if not 1 <= dim <= width:
            raise TrainingError(f"pair {layer}:{dim}: dim must be in 1..{width} for this base checkpoint")
    return chosen


def total_steps(config: TrainConfig, n_examples: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return config.epochs * training_data.steps_per_epoch(n_examples, config.batch_size)


def check_output_location(output_dir: Path) -> None:
    """Refuse an output folder that cannot be made: a file on its path, or an unwritable parent."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise TrainingError(f"output folder {str(output_dir)!r} already exists and is not empty")
    for ancestor in output_dir.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise TrainingError(
                    f"output folder {str(output_dir)!r} cannot be made: {str(ancestor)!r} is a file"
                )
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise TrainingError(
                    f"output folder {str(output_dir)!r} cannot be made: {str(ancestor)!r} is not writable"
                )
            return


@contextmanager
def output_lock(output_dir: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside the output folder for a training's lifetime (one writer per folder).

    A second training into the same folder is refused at once instead of failing after its work.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    path = output_dir.parent / f".{output_dir.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise TrainingError(
                f"output folder {str(output_dir)!r} is being written by another training "
                f"(pid {holder}); wait for it or choose another folder"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino  # not a file its last holder removed
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        os.close(fd)


def prepare_output(output_dir: Path) -> Path:
    """Refuse a non-empty output folder; return the hidden work folder beside it."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise TrainingError(f"output folder {str(output_dir)!r} already exists and is not empty")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.parent.glob(f".{output_dir.name}.partial-*"):  # left by a killed run
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    work = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return work


# ------------------------------------------------------------------------------------ objective


@dataclass(frozen=True)
class Objective:
    """How one model's step loss is computed: method, pairs and loss options, for a model of this shape."""

    method: str
    pairs: tuple[tuple[int, int], ...]
    num_layers: int
    width: int
    base_loss: str = "cosent"
    loss: LossConfig = field(default_factory=LossConfig)

    @property
    def dims(self) -> list[int]:
        """Descending dims of the Matryoshka methods: every pair's dim plus the full width."""
        return sorted({d for _, d in self.pairs} | {self.width}, reverse=True)

    def describe(self) -> dict[str, Any]:
        """The loss and its weights, for the training card."""
        out: dict[str, Any] = {"base_loss": self.base_loss, "scale": self.loss.scale}
        if self.method == "starbucks":
            out |= {
                "full_weight": self.loss.full_weight,
                "pair_weights": list(self.loss.pair_weights or [1.0] * len(self.pairs)),
                "kl_weight": self.loss.kl_weight,
                "kl_mode": self.loss.kl_mode,
                "detach_teacher": self.loss.detach_teacher,
            }
            if self.loss.kl_mode == "similarity":
                out["kl_temperature"] = self.loss.kl_temperature
        elif self.method == "2dmse":
            out |= {
                "semantics": "sentence-transformers 6.2.0 Matryoshka2dLoss",
                "dims": self.dims,
                "layers_per_step": self.loss.layers_per_step,
                "dims_per_step": self.loss.dims_per_step,
                "layer_candidates": "hidden-state indices 0..L-1 (0 = embedding output)",
                "layer_weighting": self.loss.layer_weighting,
                "kl_weight": self.loss.kl_weight,
                "kl_temperature": self.loss.kl_temperature,
                "detach_teacher": self.loss.detach_teacher,
            }
        elif self.method == "mrl":
            out |= {
                "semantics": "sentence-transformers MatryoshkaLoss",
                "dims": self.dims,
                "dim_weights": 1.0,
            }
        elif self.method == "separate":
            ((layer, dim),) = self.pairs
            out |= {"layer": layer, "dim": dim}
        return out

    def step(
        self,
        model: SentenceTransformer,
        base: losses.BaseLoss,
        texts: Sequence[Sequence[str]],
        labels: torch.Tensor,
        rng: random.Random,
    ) -> losses.LossParts:
        """The loss of one batch: one encoder pass per text column, then the method's loss."""
        L, D = self.num_layers, self.width  # the paper's notation
        plan = None
        if self.method == "2dmse":
            plan = losses.plan_2dmse(
                rng, L, len(self.dims), self.loss.layers_per_step, self.loss.dims_per_step
            )
            layers = sorted({L, *plan.layers})
        elif self.method == "starbucks":
            layers = sorted({L} | {k for k, _ in self.pairs})
        elif self.method == "separate":
            layers = [self.pairs[0][0]]
        else:
            layers = [L]
        columns = []
        for column in texts:
            features = model.preprocess(list(column))
            columns.append(forward_all_layers(model, features, layers))
        if self.method == "starbucks":
            return losses.starbucks_loss(
                base,
                columns,
                labels,
                self.pairs,
                L,
                D,
                full_weight=self.loss.full_weight,
                pair_weights=self.loss.pair_weights,
                kl_weight=self.loss.kl_weight,
                kl_mode=self.loss.kl_mode,
                kl_temperature=self.loss.kl_temperature,
                detach_teacher=self.loss.detach_teacher,
            )
        if plan is not None:
            return losses.two_d_mse_loss(
                base,
                columns,
                labels,
                plan,
                L,
                self.dims,
                kl_weight=self.loss.kl_weight,
                kl_temperature=self.loss.kl_temperature,
                layer_weighting=self.loss.layer_weighting,
                detach_teacher=self.loss.detach_teacher,
            )
        if self.method == "mrl":
            return losses.mrl_loss(base, columns, labels, L, self.dims)
        if self.method == "separate":
            layer, dim = self.pairs[0]
            return losses.separate_loss(base, columns, labels, layer, dim)
        return losses.full_loss(base, columns, labels, L, D)


def objective_for(
    config: TrainConfig, pairs: tuple[tuple[int, int], ...], num_layers: int, width: int, base_loss: str
) -> Objective:
    """The objective of a config for a model with ``num_layers`` x ``width``."""
    if config.loss.pair_weights is not None and len(config.loss.pair_weights) != len(pairs):
        raise TrainingError(f"{len(config.loss.pair_weights)} pair weights given for {len(pairs)} pairs")
    return Objective(
        method=config.method,
        pairs=pairs,
        num_layers=num_layers,
        width=width,
        base_loss=base_loss,
        loss=config.loss,
    )


# ------------------------------------------------------------------------------------ fitting


def fit(
    model: SentenceTransformer,
    objective: Objective,
    examples: training_data.TrainingExamples,
    config: TrainConfig,
    total_steps: int,
    on_step: Callable[[int, float], None] | None = None,
    should_stop: StopFn | None = None,
) -> list[float]:
    """Train ``model`` in place for ``total_steps`` optimizer steps; return the per-step loss curve.

    Seeds torch (dropout) inside a forked RNG state, so the caller's global RNG is left alone.
    Raises ``TrainingCancelled`` when ``should_stop()`` turns true (checked before every step).
    """
    import torch  # heavy: imported on first use
    from transformers import get_linear_schedule_with_warmup  # heavy: imported on first use

    base = losses.make_base_loss(objective.base_loss, model, scale=objective.loss.scale)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    params = [*decay, *no_decay]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    warmup = math.ceil(total_steps * config.warmup_ratio)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    rng = random.Random(config.seed)
    labels_all = torch.from_numpy(np.asarray(examples.labels, dtype=np.float32))
    curve: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model.train()
        epoch = 0
        while len(curve) < total_steps:
            for idx in training_data.batches(len(examples), config.batch_size, config.seed, epoch):
                if len(curve) >= total_steps:
                    break
                if should_stop is not None and should_stop():
                    raise TrainingCancelled(f"training cancelled after {len(curve)} of {total_steps} steps")
                texts = ([examples.texts1[i] for i in idx], [examples.texts2[i] for i in idx])
                parts = objective.step(model, base, texts, labels_all[idx], rng)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                try:
                    optimizer.step()
                except RuntimeError as exc:  # torch: "value cannot be converted ... without overflow"
                    if "overflow" not in str(exc):
                        raise
                    raise TrainingError(
                        f"the optimizer step overflowed at step {len(curve) + 1}; nothing was saved - "
                        "lower the learning rate"
                    ) from None
                scheduler.step()
                value = float(parts.total.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the loss became {value} at step {len(curve) + 1}; nothing was saved - "
                        "lower the learning rate"
                    )
                if not all(bool(torch.isfinite(p).all()) for p in params):
                    raise TrainingError(
                        f"the weights became non-finite (inf or NaN) at step {len(curve) + 1}; "
                        "nothing was saved - lower the learning rate"
                    )
                curve.append(value)
                if on_step is not None:
                    on_step(len(curve), value)
            epoch += 1
    model.eval()
    return curve


# ------------------------------------------------------------------------------------ the run


def base_display(info: checkpoints.CheckpointInfo) -> str:
    return info.name if info.kind != "local" else (info.label or Path(info.name).name)


def run_provenance(info: checkpoints.CheckpointInfo, dataset_fp: str) -> dict[str, Any]:
    return provenance.collect_provenance(info.to_dict(), dataset_fp)


def training_card(
    config: TrainConfig,
    objective: Objective,
    pairs: tuple[tuple[int, int], ...],
    base: checkpoints.CheckpointInfo,
    examples: training_data.TrainingExamples,
    total_steps: int,
    provenance: dict[str, Any],
    started: datetime,
    wall_time_s: float,
    curve: list[float],
) -> dict[str, Any]:
    label = f"{config.method} (from {base_display(base)})"
    if config.method == "separate":
        layer, dim = objective.pairs[0]
        label = f"separate {layer}x{dim} (from {base_display(base)})"
    return {
        "label": label,
        "method": config.method,
        "pairs": [list(p) for p in pairs],
        "loss": objective.describe(),
        "config": config.to_dict(),
        "hyperparameters": {
            "epochs": config.epochs,
            "max_steps": config.max_steps,
            "steps": total_steps,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "warmup_ratio": config.warmup_ratio,
            "warmup_steps": math.ceil(total_steps * config.warmup_ratio),
            "weight_decay": config.weight_decay,
            "max_grad_norm": config.max_grad_norm,
            "max_length": config.max_length,
            "optimizer": "AdamW",
            "scheduler": "linear warmup then linear decay",
            "limit": config.limit,
        },
        "seed": config.seed,
        "base_checkpoint": {"name": base.name, "fingerprint": base.fingerprint, "label": base.label},
        "dataset": {
            "name": examples.spec.name,
            "kind": examples.spec.kind,
            "split": examples.spec.split,
            "fingerprint": examples.fingerprint,
            "n_pairs": len(examples),
        },
        "provenance": provenance,
        "started_at": started.isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "loss_curve": [round(v, 6) for v in curve],
    }
