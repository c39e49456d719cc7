"""Training examples from the lab's datasets: STS pairs for CoSENT, (query, positive) pairs for MNRL.

``load_examples`` turns a dataset name or path (``core.datasets``) into two text columns and labels:

- an STS tsv -> (sentence1, sentence2, score), scores min-max scaled to [0, 1] over the file (as the
  sentence-transformers ``stsb`` dataset stores score / 5; CoSENT only uses their order anyway);
- a BEIR folder with ``qrels/train.tsv`` -> one (query, document) pair per qrels line with score > 0,
  for MultipleNegativesRanking with in-batch negatives (labels are unused, kept as zeros).

``batches`` yields seeded, per-epoch shuffled index batches (the last one may be short).
Out of scope: tokenization and the loss (core/training/loop.py, losses.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import LabError
from core import datasets


class TrainingDataError(LabError):
    """A dataset that cannot be trained on (wrong kind, no train split, too few examples)."""


@dataclass(frozen=True)
class TrainingExamples:
    """Two aligned text columns, one label per row, and the base loss they are meant for."""

    texts1: list[str]
    texts2: list[str]
    labels: np.ndarray  # (n,) float32
    base_loss: str  # "cosent" | "mnrl"
    spec: datasets.DatasetSpec
    fingerprint: str

    def __len__(self) -> int:
        return len(self.texts1)


def resolve_training_dataset(name_or_path: str) -> datasets.DatasetSpec:
    """The dataset to train on; a retrieval collection must offer a ``train`` split."""
    if Path(name_or_path).expanduser().is_dir():
        return datasets.resolve_dataset(name_or_path, split="train")
    spec = datasets.resolve_dataset(name_or_path)
    if spec.kind == datasets.RETRIEVAL and spec.split != "train":
        if not (Path(spec.path) / "qrels" / "train.tsv").is_file():
            raise TrainingDataError(
                f"dataset {name_or_path!r} is a retrieval collection without qrels/train.tsv: "
                "training needs (query, positive) pairs from a train split"
            )
        spec = datasets.resolve_dataset(str(spec.path), split="train")
    return spec


def load_examples(name_or_path: str, limit: int | None = None) -> TrainingExamples:
    """Load training pairs (the first ``limit`` rows when given) from an STS file or a BEIR train split."""
    spec = resolve_training_dataset(name_or_path)
    data = datasets.load_dataset(spec)
    fingerprint = datasets.dataset_fingerprint(spec)
    if isinstance(data, datasets.STSData):
        scores = np.asarray(data.scores, dtype=np.float64)
        low, high = (float(scores.min()), float(scores.max())) if len(scores) else (0.0, 1.0)
        span = high - low if high > low else 1.0
        texts1, texts2 = list(data.sentences1), list(data.sentences2)
        labels = ((scores - low) / span).astype(np.float32)
        base = "cosent"
    else:
        text_of = dict(zip(data.corpus_ids, data.corpus_texts, strict=True))
        query_of = dict(zip(data.query_ids, data.query_texts, strict=True))
        texts1, texts2 = [], []
        for qid in data.judged_query_ids:
            for doc_id, relevance in sorted(data.qrels[qid].items()):
                if relevance > 0:
                    texts1.append(query_of[qid])
                    texts2.append(text_of[doc_id])
        labels = np.zeros(len(texts1), dtype=np.float32)
        base = "mnrl"
    if limit is not None:
        texts1, texts2, labels = texts1[:limit], texts2[:limit], labels[:limit]
    if len(texts1) < 2:
        raise TrainingDataError(
            f"dataset {spec.name!r} has {len(texts1)} training pairs; at least 2 are needed"
        )
    return TrainingExamples(texts1, texts2, labels, base, spec, fingerprint)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Batches per epoch, keeping the short last batch: ``ceil(n / batch_size)``."""
    return -(-n_examples // batch_size)


def batches(n_examples: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index batches of one epoch, shuffled by a generator seeded with (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    for start in range(0, n_examples, batch_size):
        yield order[start : start + batch_size]
