"""Training of 2D Matryoshka checkpoints: Starbucks fixed pairs, 2DMSE, MRL, full and separate baselines.

Pure compute: ``losses`` (the methods' losses from one pass's pooled per-layer embeddings), ``data``
(training pairs from the lab's datasets), ``config`` (``TrainConfig`` with its ``LossConfig``, JSON
round trip), ``loop`` (validation, objective, optimizer, fitting), ``card``
(training_card.json and the separate-run manifest). Running a job end to end, with its run row and
registration, is ``core.lab.training``; the command line is ``core.cli.train``.

Example::

    from core.lab.store import open_store
    from core.lab.training import train
    from core.training import TrainConfig
    result = train(TrainConfig(output_dir="out/sb", method="starbucks", max_steps=5), session_factory=open_store())
    result.models[0].path  # the new sentence-transformers folder
"""

from __future__ import annotations

from core.training.config import LossConfig, TrainConfig
from core.training.loop import (
    METHODS,
    TrainedModel,
    TrainingCancelled,
    TrainingError,
    TrainResult,
    parse_pairs,
    resolve_pairs,
)

__all__ = [
    "METHODS",
    "LossConfig",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "TrainingCancelled",
    "TrainingError",
    "parse_pairs",
    "resolve_pairs",
]
