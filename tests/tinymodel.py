"""A tiny real sentence-transformers checkpoint for fast engine tests (random weights, real tokenizer).

Built from the default checkpoint's tokenizer and a 3-layer, 48-wide BERT config with a fixed seed, so
every test runs the same real code paths (tokenizer, encoder, pooling, normalize) in milliseconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from transformers import BertConfig, BertModel

from core.checkpoints import default_model_path


def build_tiny_checkpoint(
    folder: Path,
    layers: int = 3,
    hidden: int = 48,
    pooling: str = "mean",
    seed: int = 0,
    normalize: bool = True,
) -> Path:
    """Write a tiny BERT sentence-transformers folder to ``folder`` and return it."""
    torch.manual_seed(seed)
    base = Transformer(str(default_model_path()), max_seq_length=64)
    config = BertConfig(
        vocab_size=base.tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    encoder = BertModel(config, add_pooling_layer=False)
    base.model = encoder
    modules = [base, Pooling(hidden, pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(folder))
    return folder


def wide_checkpoint(workdir: Path) -> Path:
    """A random-weight 1-layer x 384 BERT in ``workdir/wide-1x384`` (built once): the default model's
    width, so benchmarks stream the same bytes per layer to disk in a fraction of its encoding time."""
    folder = workdir / "wide-1x384"
    if not folder.exists():
        build_tiny_checkpoint(folder, layers=1, hidden=384)
    return folder


def maskless_checkpoint(folder: Path) -> Path:
    """A tiny checkpoint whose tokenizer gives no ``attention_mask`` (the ONNX exporter refuses it)."""
    import json

    build_tiny_checkpoint(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_input_names"] = ["input_ids"]
    config_path.write_text(json.dumps(config))
    return folder


def run_core(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m core ARGS`` in a subprocess of this checkout with ``env``; text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
