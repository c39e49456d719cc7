"""The training configuration, written once: a ``TrainConfig`` with its ``LossConfig`` nested inside.

The same object is built by the Train page and by ``python -m core train`` flags, handed to a
background job as a JSON file (``save``/``load``; the job runs ``python -m core train --config FILE``),
and recorded whole in the training card, so nothing is listed twice or dropped on the way.

>>> config = TrainConfig(output_dir="out", pairs=((1, 32), (2, 64)), loss=LossConfig(kl_weight=0.5))
>>> TrainConfig.from_dict(config.to_dict()) == config
True
>>> config.to_dict()["loss"]["kl_weight"]
0.5
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import LabError

CONFIG_FORMAT = "matryoshka-lab/train-config"
CONFIG_VERSION = 1


class TrainConfigError(LabError):
    """A training config file that cannot be read (not JSON, another format or version, unknown keys)."""


@dataclass(frozen=True)
class LossConfig:
    """The loss of a method and its weights.

    ``scale`` is the base loss's scale (CoSENT / MNRL: 20). ``kl_weight`` multiplies the KL term of
    ``starbucks`` (the paper's 0.3) and of ``2dmse`` (the library's ``kl_temperature * kl_div_weight`` =
    0.3). ``kl_mode`` (starbucks): ``embedding`` (paper) or ``similarity`` (in-batch similarity
    distributions at ``kl_temperature``); ``detach_teacher`` stops the KL gradient at the full model.
    ``full_weight`` and ``pair_weights`` weigh starbucks' full-model and per-pair losses.
    ``layers_per_step``/``dims_per_step``/``layer_weighting`` apply to ``2dmse`` only.
    """

    scale: float = 20.0
    full_weight: float = 1.0
    pair_weights: tuple[float, ...] | None = None
    kl_weight: float = 0.3
    kl_mode: str = "embedding"
    kl_temperature: float = 0.3
    detach_teacher: bool = True
    layers_per_step: int = 1
    dims_per_step: int = -1
    layer_weighting: str = "uniform"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded whole in the training card).

    ``max_steps`` (when set) overrides ``epochs``, as in the Hugging Face Trainer. ``pairs`` None means
    ``core.submodels.default_diagonal`` of the base model. ``limit`` keeps the first N training pairs
    (tests, benchmarks). ``register`` stores the run and the new checkpoint in the database.
    """

    output_dir: str
    base: str = "default"
    method: str = "starbucks"
    dataset: str = "stsb-train"
    pairs: tuple[tuple[int, int], ...] | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    max_length: int | None = None
    limit: int | None = None
    register: bool = True
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists), the loss config nested under ``loss``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`'s output; unknown keys are refused (a typo is not ignored)."""
        values = dict(values)
        loss = dict(values.pop("loss", None) or {})
        _check_keys(cls, values, "")
        _check_keys(LossConfig, loss, "loss.")
        if loss.get("pair_weights") is not None:
            loss["pair_weights"] = tuple(float(w) for w in loss["pair_weights"])
        if values.get("pairs") is not None:
            values["pairs"] = tuple((int(k), int(d)) for k, d in values["pairs"])
        return cls(**values, loss=LossConfig(**loss))

    def save(self, path: str | Path) -> Path:
        """Write the config as a versioned JSON document (atomically); return the path."""
        path = Path(path)
        document = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "config": self.to_dict()}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=1, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`save`.

        Raises:
            TrainConfigError: not JSON, another format or version, or unknown keys (the message says which).
        """
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainConfigError(f"cannot read training config {str(path)!r}: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != CONFIG_FORMAT:
            raise TrainConfigError(f"{str(path)!r} is not a training config ({CONFIG_FORMAT})")
        if document.get("version") != CONFIG_VERSION:
            raise TrainConfigError(
                f"{str(path)!r} is training config version {document.get('version')}; "
                f"this lab reads version {CONFIG_VERSION}"
            )
        try:
            return cls.from_dict(document["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise TrainConfigError(f"{str(path)!r}: {exc}") from None


def _check_keys(kind: type, values: dict[str, Any], prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainConfigError(f"unknown training config key(s): {', '.join(prefix + k for k in unknown)}")
