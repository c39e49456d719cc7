"""Analytic FLOPs and parameters of the first k layers, read off the module tree (see the package docstring)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.cost.keys import CostError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer


@dataclass(frozen=True)
class EncoderShape:
    """The sizes FLOPs and parameter counts are computed from, read off a loaded model.

    ``linear_weights[i]`` is the number of ``nn.Linear`` weights in layer i (biases excluded);
    ``layer_params[i]`` all parameters of layer i; ``base_params`` the encoder's parameters outside
    the layer stack (embeddings, a final norm), without an unused ``pooler``; ``post_params`` the
    parameters of the modules after the transformer (Pooling has none, Dense has some).
    """

    num_layers: int
    hidden_size: int
    attention_width: int
    linear_weights: tuple[int, ...]
    layer_params: tuple[int, ...]
    base_params: int
    post_params: int
    pooler_params: int


def _num_params(params: Iterable[torch.nn.Parameter], seen: set[int]) -> int:
    total = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += int(p.numel())
    return total


def layer_stack(encoder: Any) -> torch.nn.ModuleList:
    """The ``ModuleList`` of transformer layers of a Hugging Face encoder (same rule as ``truncated_copy``)."""
    import torch  # heavy: imported on first use

    total = int(encoder.config.num_hidden_layers)
    stacks = [m for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total]
    if not stacks:
        raise CostError(f"cannot find the layer stack of {type(encoder).__name__}")
    return stacks[0]


def encoder_shape(model: SentenceTransformer) -> EncoderShape:
    """Sizes of a sentence-transformers model's encoder, for :func:`flops_per_token` and :func:`params_used`."""
    import torch  # heavy: imported on first use

    encoder: Any = model[0].auto_model
    config = encoder.config
    stack = layer_stack(encoder)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    linear = tuple(
        sum(int(m.weight.numel()) for m in layer.modules() if isinstance(m, torch.nn.Linear))
        for layer in stack
    )
    if not all(linear):
        raise CostError(f"{type(encoder).__name__} has layers without nn.Linear modules; FLOPs unknown")
    pooler = getattr(encoder, "pooler", None)
    seen: set[int] = set()
    layer_params = tuple(_num_params(layer.parameters(), seen) for layer in stack)
    pooler_params = _num_params(pooler.parameters(), seen) if isinstance(pooler, torch.nn.Module) else 0
    base = _num_params(encoder.parameters(), seen)  # what is left: embeddings, final norms
    post = _num_params(itertools.chain.from_iterable(m.parameters() for m in list(model)[1:]), seen)
    return EncoderShape(
        num_layers=len(stack),
        hidden_size=int(config.hidden_size),
        attention_width=heads * head_dim,
        linear_weights=linear,
        layer_params=layer_params,
        base_params=base,
        post_params=post,
        pooler_params=pooler_params,
    )


def check_layers(shape: EncoderShape, layers: int) -> None:
    if not 0 <= layers <= shape.num_layers:
        raise CostError(f"layer {layers} is outside this checkpoint's layers 0..{shape.num_layers}")


def flops_per_token(shape: EncoderShape, layers: int, seq_len: int) -> int:
    """FLOPs per token of the first ``layers`` layers at sequence length ``seq_len`` (module docstring).

    >>> s = EncoderShape(1, 48, 48, (18432,), (0,), 0, 0, 0)  # one BERT layer, h=48, i=96
    >>> flops_per_token(s, 1, 32)  # 8*48**2 + 4*48*96 + 4*32*48
    43008
    """
    check_layers(shape, layers)
    if seq_len < 1:
        raise CostError(f"seq_len must be >= 1, got {seq_len}")
    return sum(2 * w + 4 * seq_len * shape.attention_width for w in shape.linear_weights[:layers])


def params_used(shape: EncoderShape, layers: int) -> int:
    """Parameters a ``layers``-layer sub-model uses: embeddings (+ non-layer encoder parts), k layers, post modules."""
    check_layers(shape, layers)
    return shape.base_params + sum(shape.layer_params[:layers]) + shape.post_params
