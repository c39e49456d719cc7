"""Training of 2D Matryoshka checkpoints: Starbucks fixed pairs, 2DMSE, MRL, full and separate baselines.

Modules: ``losses`` (the methods' losses from one pass's pooled per-layer embeddings), ``data``
(training pairs from the lab's datasets), ``loop`` (``train``: optimizer, saving, registering),
``card`` (training_card.json and the separate-run manifest), ``registry`` (database rows),
``significance`` (paired bootstrap for the reproduction study), ``cli`` (``python -m core train``).

Example::

    from core.training import TrainConfig, train
    result = train(TrainConfig(output_dir="out/sb", method="starbucks", max_steps=5))
    result.models[0].path  # the new sentence-transformers folder
"""

from __future__ import annotations

from core.training.loop import (
    METHODS,
    TrainConfig,
    TrainedModel,
    TrainingCancelled,
    TrainingError,
    TrainResult,
    parse_pairs,
    resolve_pairs,
    train,
)

__all__ = [
    "METHODS",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "TrainingCancelled",
    "TrainingError",
    "parse_pairs",
    "resolve_pairs",
    "train",
]
