"""Training losses of the 2D Matryoshka methods, computed from per-layer pooled embeddings.

Every function here takes the output of ONE encoder pass: ``columns[c][layer]`` is the pooled
full-width ``(batch, width)`` embedding of input column ``c`` (sentence1/sentence2, or query/positive)
at transformer layer ``layer``, as ``core.submodels.forward_all_layers`` returns it. A sub-model (k, d)
is then a slice: ``shrink(columns[c][k], d)`` = first d dims, L2-normalized (sentence-transformers'
``matryoshka.shrink``). No function runs the model, so a Starbucks step costs one forward + one
backward, like a plain step.

Methods:

- ``full``: the base loss on the full model.
- ``mrl``: ``MatryoshkaLoss`` semantics: sum over dims (weight 1 each) of the base loss at full depth.
- ``starbucks``: the Starbucks paper's STS ``StarbucksLoss``: base loss on the full model, plus for each
  fixed (k, d) pair the base loss on the (k, d) sub-model and a KL term
  ``kl_weight * kl_div(log_softmax(sub_k[:, :d]), softmax(full[:, :d]), batchmean)`` over the pooled
  (un-truncated, un-renormalized) embeddings of both columns stacked. ``kl_mode="similarity"`` swaps
  that term for a KL between in-batch similarity distributions (temperature ``kl_temperature``).
- ``2dmse``: sentence-transformers 6.2.0 ``Matryoshka2dLoss`` = ``AdaptiveLayerLoss(MatryoshkaLoss)``:
  the Matryoshka loss at the last layer, plus for ``layers_per_step`` layers sampled from
  ``range(L)`` (hidden-state indices, so 0 = the embedding output, as the library does) the Matryoshka
  loss at that layer, weighted by ``layer_weighting`` / number sampled, and a KL term
  ``kl_weight * kl_div(log_softmax(layer / T), softmax(last / T), batchmean)``. With ``kl_weight =
  T * kl_div_weight`` this equals the library loss (checked in tests).
- ``separate``: the base loss on the (k, d) slice of a model truncated to k layers.

Out of scope: the optimizer, data and saving (core/training/loop.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import LabError

Columns = Sequence[dict[int, Tensor]]  # columns[c][layer] -> (batch, width) pooled embeddings
BaseLoss = Callable[[Sequence[Tensor], Tensor], Tensor]  # ([col0, col1], labels) -> scalar

BASE_LOSSES: tuple[str, ...] = ("cosent", "mnrl")
KL_MODES: tuple[str, ...] = ("embedding", "similarity")
LAYER_WEIGHTINGS: tuple[str, ...] = ("uniform", "log", "linear")


class LossConfigError(LabError):
    """A loss option out of range (unknown base loss, KL mode, weighting, negative weight...)."""


def shrink(embeddings: Tensor, dim: int) -> Tensor:
    """First ``dim`` columns, L2-normalized per row (sentence-transformers' ``matryoshka.shrink``)."""
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


def make_base_loss(kind: str, model: Any, scale: float = 20.0) -> BaseLoss:
    """The sentence-transformers loss ``kind`` as a function of embeddings: CoSENT or MNRL, cosine, ``scale``.

    ``cosent`` ranks pairs by label (only the label order matters); ``mnrl`` treats column 1 as each
    query's positive and the other rows as in-batch negatives (labels unused).
    """
    from sentence_transformers.sentence_transformer.losses import (  # heavy: imported on first use
        CoSENTLoss,
        MultipleNegativesRankingLoss,
    )

    if kind == "cosent":
        st_loss: Any = CoSENTLoss(model, scale=scale)
    elif kind == "mnrl":
        st_loss = MultipleNegativesRankingLoss(model, scale=scale)
    else:
        raise LossConfigError(f"unknown base loss {kind!r}; choose from {', '.join(BASE_LOSSES)}")

    def loss(embeddings: Sequence[Tensor], labels: Tensor) -> Tensor:
        return st_loss.compute_loss_from_embeddings(list(embeddings), labels)

    loss.__name__ = f"{kind}_loss"
    return loss


def base_at(base: BaseLoss, columns: Columns, layer: int, dim: int, labels: Tensor) -> Tensor:
    """The base loss on sub-model (layer, dim) of every column."""
    return base([shrink(col[layer], dim) for col in columns], labels)


def embedding_kl(sub: Tensor, teacher: Tensor, dim: int) -> Tensor:
    """The paper's KL: ``kl_div(log_softmax(sub[:, :dim]), softmax(teacher[:, :dim]), batchmean)``."""
    return F.kl_div(
        F.log_softmax(sub[:, :dim], dim=-1), F.softmax(teacher[:, :dim], dim=-1), reduction="batchmean"
    )


def similarity_kl(sub: Sequence[Tensor], teacher: Sequence[Tensor], dim: int, temperature: float) -> Tensor:
    """KL between in-batch cosine-similarity distributions of the (k, d) sub-model and the full model.

    ``sub``/``teacher`` are the two columns' pooled embeddings. For each row of column 0 the softmax over
    column 1 (cosine / temperature), and the same from column 1 to column 0; the teacher uses all its
    dims. Both directions are averaged; each uses ``batchmean``.
    """
    a, b = shrink(sub[0], dim), shrink(sub[1], dim)
    ta, tb = F.normalize(teacher[0], dim=-1), F.normalize(teacher[1], dim=-1)
    student = a @ b.T / temperature  # (batch, batch)
    target = ta @ tb.T / temperature  # (batch, batch)
    forward = F.kl_div(F.log_softmax(student, dim=1), F.softmax(target, dim=1), reduction="batchmean")
    backward = F.kl_div(F.log_softmax(student.T, dim=1), F.softmax(target.T, dim=1), reduction="batchmean")
    return (forward + backward) / 2


@dataclass(frozen=True)
class LossParts:
    """A step's total loss and its named parts (floats, for the loss curve)."""

    total: Tensor
    parts: dict[str, float]


def full_loss(base: BaseLoss, columns: Columns, labels: Tensor, num_layers: int, width: int) -> LossParts:
    """Plain fine-tuning: the base loss on the full model."""
    loss = base_at(base, columns, num_layers, width, labels)
    return LossParts(loss, {"full": float(loss.detach())})


def separate_loss(base: BaseLoss, columns: Columns, labels: Tensor, layer: int, dim: int) -> LossParts:
    """A separately trained (k, d) model: the base loss at its last layer ``layer``, first ``dim`` dims."""
    loss = base_at(base, columns, layer, dim, labels)
    return LossParts(loss, {f"{layer}x{dim}": float(loss.detach())})


def matryoshka_loss(
    base: BaseLoss,
    columns: Columns,
    labels: Tensor,
    layer: int,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
) -> Tensor:
    """``MatryoshkaLoss`` at one layer: ``sum_i weights[i] * base(shrink(., dims[i]))`` (weights default 1)."""
    weights = [1.0] * len(dims) if weights is None else list(weights)
    total: Tensor | None = None
    for dim, weight in zip(dims, weights, strict=True):
        term = weight * base_at(base, columns, layer, dim, labels)
        total = term if total is None else total + term
    if total is None:
        raise LossConfigError("a Matryoshka loss needs at least one dim")
    return total


def mrl_loss(
    base: BaseLoss, columns: Columns, labels: Tensor, num_layers: int, dims: Sequence[int]
) -> LossParts:
    """MRL: every dim at full depth (``MatryoshkaLoss`` with ``n_dims_per_step=-1``, weights 1)."""
    dims = sorted(set(dims), reverse=True)
    parts: dict[str, float] = {}
    total: Tensor | None = None
    for dim in dims:
        term = base_at(base, columns, num_layers, dim, labels)
        parts[f"{num_layers}x{dim}"] = float(term.detach())
        total = term if total is None else total + term
    if total is None:
        raise LossConfigError("MRL needs at least one dim")
    return LossParts(total, parts)


def starbucks_loss(
    base: BaseLoss,
    columns: Columns,
    labels: Tensor,
    pairs: Sequence[tuple[int, int]],
    num_layers: int,
    width: int,
    *,
    full_weight: float = 1.0,
    pair_weights: Sequence[float] | None = None,
    kl_weight: float = 0.3,
    kl_mode: str = "embedding",
    kl_temperature: float = 0.3,
    detach_teacher: bool = True,
) -> LossParts:
    """Starbucks fixed-pair loss (the paper's STS ``StarbucksLoss``; see the module docstring).

    The pair equal to the full model ``(num_layers, width)`` is covered by the full-model term and not
    added twice (as the paper's code skips the last layer). ``detach_teacher`` stops the KL gradient
    from flowing into the full model.
    """
    if kl_mode not in KL_MODES:
        raise LossConfigError(f"unknown KL mode {kl_mode!r}; choose from {', '.join(KL_MODES)}")
    weights = [1.0] * len(pairs) if pair_weights is None else list(pair_weights)
    if len(weights) != len(pairs):
        raise LossConfigError(f"{len(weights)} pair weights for {len(pairs)} pairs")
    full = base_at(base, columns, num_layers, width, labels)
    parts = {"full": float(full.detach())}
    total = full_weight * full
    teacher_cols = [col[num_layers] for col in columns]
    if detach_teacher:
        teacher_cols = [t.detach() for t in teacher_cols]
    teacher = torch.cat(teacher_cols, dim=0)  # (columns * batch, width)
    for (layer, dim), weight in zip(pairs, weights, strict=True):
        if (layer, dim) == (num_layers, width):
            continue
        term = base_at(base, columns, layer, dim, labels)
        parts[f"{layer}x{dim}"] = float(term.detach())
        total = total + weight * term
        if kl_weight > 0:
            if kl_mode == "embedding":
                sub = torch.cat([col[layer] for col in columns], dim=0)  # (columns * batch, width)
                kl = embedding_kl(sub, teacher, dim)
            else:
                kl = similarity_kl([col[layer] for col in columns], teacher_cols, dim, kl_temperature)
            parts[f"kl_{layer}x{dim}"] = float(kl.detach())
            total = total + kl_weight * kl
    return LossParts(total, parts)


def layer_weight(scheme: str, layer_idx: int) -> float:
    """``AdaptiveLayerLoss`` prior-layer weights: uniform 1, log ``1/(1+ln(1+i))``, linear ``1/(1+i)``."""
    if scheme == "uniform":
        return 1.0
    if scheme == "log":
        return 1.0 / (1.0 + math.log(1 + layer_idx))
    if scheme == "linear":
        return 1.0 / (1 + layer_idx)
    raise LossConfigError(f"unknown layer weighting {scheme!r}; choose from {', '.join(LAYER_WEIGHTINGS)}")


@dataclass(frozen=True)
class TwoDPlan:
    """The random choices of one 2DMSE step, drawn in sentence-transformers' order.

    ``last_dims``: indices into the descending dims for the last layer; ``layers``: sampled hidden-state
    indices; ``layer_dims[i]``: dim indices for ``layers[i]``.
    """

    last_dims: tuple[int, ...]
    layers: tuple[int, ...]
    layer_dims: tuple[tuple[int, ...], ...]


def _sample_dims(rng: random.Random, n_dims: int, per_step: int) -> tuple[int, ...]:
    indices = list(range(n_dims))
    if 0 < per_step < n_dims:
        indices = sorted(rng.sample(indices, per_step))
    return tuple(indices)


def plan_2dmse(
    rng: random.Random, num_layers: int, n_dims: int, layers_per_step: int, dims_per_step: int
) -> TwoDPlan:
    """Draw a step's layers and dims exactly as ``Matryoshka2dLoss`` 6.2.0 consumes ``random``.

    Order: the last layer's dims (``MatryoshkaLoss``), then ``random.sample(range(L), n)`` of prior
    hidden-state indices 0..L-1 (``AdaptiveLayerLoss``; skipped when n <= 0 or n >= L), then each
    sampled layer's dims.
    """
    last_dims = _sample_dims(rng, n_dims, dims_per_step)
    candidates = list(range(num_layers))
    if 0 < layers_per_step < num_layers:
        candidates = rng.sample(candidates, layers_per_step)
    layer_dims = tuple(_sample_dims(rng, n_dims, dims_per_step) for _ in candidates)
    return TwoDPlan(last_dims, tuple(candidates), layer_dims)


def two_d_mse_loss(
    base: BaseLoss,
    columns: Columns,
    labels: Tensor,
    plan: TwoDPlan,
    num_layers: int,
    dims: Sequence[int],
    *,
    last_layer_weight: float = 1.0,
    prior_layers_weight: float = 1.0,
    kl_weight: float = 0.3,
    kl_temperature: float = 0.3,
    layer_weighting: str = "uniform",
    detach_teacher: bool = True,
) -> LossParts:
    """2DMSE as sentence-transformers 6.2.0 ``Matryoshka2dLoss`` computes it (see the module docstring).

    ``dims`` are sorted descending (as ``MatryoshkaLoss`` does) before the plan's indices apply.
    ``kl_weight`` is the library's ``kl_temperature * kl_div_weight``; 0 disables the KL term.
    """
    dims = sorted(dims, reverse=True)
    last = matryoshka_loss(base, columns, labels, num_layers, [dims[i] for i in plan.last_dims])
    parts = {"last": float(last.detach())}
    total = last * last_layer_weight
    target: Tensor | None = None
    if kl_weight > 0 and kl_temperature > 0:
        target = F.softmax(torch.cat([col[num_layers] for col in columns], dim=0) / kl_temperature, dim=-1)
        if detach_teacher:
            target = target.detach()
    for layer, dim_idx in zip(plan.layers, plan.layer_dims, strict=True):
        term = matryoshka_loss(base, columns, labels, layer, [dims[i] for i in dim_idx])
        parts[f"layer{layer}"] = float(term.detach())
        total = total + term * layer_weight(layer_weighting, layer) / len(plan.layers) * prior_layers_weight
        if target is not None:
            layer_emb = torch.cat([col[layer] for col in columns], dim=0)  # (columns * batch, width)
            kl = F.kl_div(F.log_softmax(layer_emb / kl_temperature, dim=-1), target, reduction="batchmean")
            parts[f"kl_layer{layer}"] = float(kl.detach())
            total = total + kl * kl_weight
    return LossParts(total, parts)
