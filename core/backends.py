"""Deployment backends: the encoder's all-layer pass on torch float32, torch bfloat16 or ONNX Runtime.

A backend only changes how the transformer computes its hidden states; the checkpoint's own pooling and
post-modules (core/submodels) always run in torch float32 on what it returns. Four backends:

| name | what runs the encoder |
| --- | --- |
| ``torch`` | the model as loaded, float32: the reference |
| ``torch-bf16`` | the same under ``torch.autocast("cpu", dtype=torch.bfloat16)`` |
| ``onnx`` | an ONNX graph of the encoder with every hidden state as an output, on ONNX Runtime (float32) |
| ``onnx-int8`` | that graph with int8 weights (``onnxruntime.quantization.quantize_dynamic``) |

The ONNX graphs are exported with ``torch.onnx.export`` (the TorchScript tracer, ``dynamo=False``:
sentence-transformers' own ``backend="onnx"`` needs ``optimum``, which does not install beside this
transformers) once per checkpoint fingerprint into a graph cache folder, written to a temporary file
and renamed, so a crash never leaves half a graph. ``HiddenStatesRunner`` is the one interface the
engine calls: ``runner(features) -> (L + 1) hidden-state tensors``.

Out of scope: pooling and caching of pooled matrices (core/submodels), the standalone export of one
sub-model (core/export), timing (core/cost).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from common import settings
from common.errors import LabError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

TORCH = "torch"
TORCH_BF16 = "torch-bf16"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
BACKENDS: tuple[str, ...] = (TORCH, TORCH_BF16, ONNX, ONNX_INT8)
DEFAULT_BACKEND = TORCH
ONNX_BACKENDS: tuple[str, ...] = (ONNX, ONNX_INT8)
ONNX_REQUIREMENT = "onnx==1.23.2 onnxruntime==1.32.0"
ONNX_OPSET = 17
GRAPH_VERSION = 1  # bump when the exported graph's inputs/outputs change
# Inputs a BERT-like encoder takes, in the ONNX graph's input order (those the tokenizer gives are used).
INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
FLOAT_GRAPH = "model.onnx"
INT8_GRAPH = "model_qint8.onnx"


class BackendError(LabError):
    """An unknown backend, a backend whose package is missing, or an encoder it cannot run."""


def check_backend(name: str) -> str:
    """Return ``name`` when it is a known backend whose packages are installed; else raise BackendError."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name in ONNX_BACKENDS:
        missing = [pkg for pkg in ("onnx", "onnxruntime") if importlib.util.find_spec(pkg) is None]
        if missing:
            raise BackendError(
                f"backend {name!r} needs the package {missing[0]}: pip install {ONNX_REQUIREMENT}"
            )
    return name


def parse_backends(text: str | Sequence[str] | None) -> list[str]:
    """``"torch,onnx"`` -> ["torch", "onnx"]; ``None`` -> ["torch"]; ``"all"`` -> every backend."""
    if text is None:
        return [DEFAULT_BACKEND]
    items = [b.strip().lower() for b in (text.split(",") if isinstance(text, str) else text) if b.strip()]
    if items == ["all"]:
        items = list(BACKENDS)
    if not items:
        return [DEFAULT_BACKEND]
    return [check_backend(b) for b in dict.fromkeys(items)]


class HiddenStatesRunner(Protocol):
    """Runs the encoder on a tokenized batch and returns its (L + 1) hidden states, float32 torch tensors."""

    backend: str

    def __call__(self, features: dict[str, Any]) -> Sequence[torch.Tensor]: ...


def encoder_inputs(features: dict[str, Any], names: Sequence[str] = INPUT_NAMES) -> dict[str, Any]:
    """The part of a tokenized feature dict the encoder takes (input_ids, attention_mask, ...)."""
    return {k: features[k] for k in (*names, "position_ids") if k in features}


class TorchRunner:
    """The model's own encoder in torch; ``bf16`` runs it under CPU bfloat16 autocast."""

    def __init__(self, model: SentenceTransformer, bf16: bool = False) -> None:
        self.model = model
        self.bf16 = bf16
        self.backend = TORCH_BF16 if bf16 else TORCH

    def __call__(self, features: dict[str, Any]) -> Sequence[torch.Tensor]:
        import torch  # heavy: imported on first use

        encoder: Any = self.model[0].auto_model
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            output = encoder(**encoder_inputs(features), output_hidden_states=True, return_dict=True)
        states = output.hidden_states  # (L + 1) x (batch, seq, hidden); [0] = embedding output
        return [s.float() for s in states] if self.bf16 else list(states)


class OnnxRunner:
    """An ONNX Runtime session of the all-layer graph (``export_all_layers``)."""

    def __init__(self, graph: Path, backend: str, threads: int | None = None) -> None:
        import onnxruntime as ort  # heavy: optional dependency, imported only for ONNX backends

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _torch_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no per-node warnings on the user's terminal
        # Idle intra-op threads sleep instead of spinning: every session has its own pool, and with several
        # sessions in one process (a cost run's k-layer graphs round-robin, the Demo's two sub-models) the
        # spinning pools of the others took the cores: on 2 cores (6, 384) ran 35.6 ms per query instead
        # of 8.8 ms (bench/cost.py section 6).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.backend = backend
        self.graph = graph

    def __call__(self, features: dict[str, Any]) -> Sequence[torch.Tensor]:
        import torch  # heavy: imported on first use

        feeds = {}
        for name in self.input_names:
            value = features[name]
            feeds[name] = np.ascontiguousarray(value.cpu().numpy() if hasattr(value, "cpu") else value)
        return [torch.from_numpy(state) for state in self.session.run(None, feeds)]


def _torch_threads() -> int:
    import torch  # heavy: imported on first use

    return max(1, torch.get_num_threads())


def graph_dir(root: str | Path | None = None) -> Path:
    """Folder of the exported ONNX graphs (``$MLAB_HOME/onnx-graphs`` unless given)."""
    return Path(root) if root is not None else settings.lab_home() / "onnx-graphs"


def _export_module(encoder: Any, names: Sequence[str], last_only: bool) -> Any:
    """A torch module around the encoder returning every hidden state (or only the last): the export target."""
    import torch  # heavy: imported on first use

    class EncoderOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs: torch.Tensor) -> Any:
            kwargs = dict(zip(names, inputs, strict=True))
            states = self.encoder(**kwargs, output_hidden_states=True, return_dict=True).hidden_states
            return states[-1] if last_only else tuple(states)

    return EncoderOutputs().eval()


def input_names_of(model: SentenceTransformer) -> list[str]:
    """The encoder inputs the model's tokenizer produces, in ``INPUT_NAMES`` order."""
    sample = model.preprocess(["a"])
    return [name for name in INPUT_NAMES if name in sample]


def export_all_layers(
    model: SentenceTransformer, path: str | Path, outputs: str = "all", opset: int = ONNX_OPSET
) -> Path:
    """Export the model's encoder to ONNX at ``path``: every hidden state (``outputs="all"``, named
    ``hidden_state_0..L``) or only the last one (``outputs="last"``, named ``last_hidden_state`` as
    sentence-transformers' ONNX folders expect). Written beside ``path`` and renamed into place.

    Raises BackendError when the exporter cannot trace the encoder.
    """
    import torch  # heavy: imported on first use

    path = Path(path)
    encoder: Any = model[0].auto_model
    names = input_names_of(model)
    if "input_ids" not in names or "attention_mask" not in names:
        raise BackendError(
            f"cannot export {type(encoder).__name__} to ONNX: its tokenizer gives {names}, "
            "not input_ids and attention_mask"
        )
    num_layers = int(getattr(encoder.config, "num_hidden_layers", 0))
    wrapper = _export_module(encoder, names, last_only=outputs == "last")
    sample = model.preprocess(["an example sentence", "a second, somewhat longer example sentence here"])
    args = tuple(sample[name] for name in names)
    if outputs == "all":
        output_names = [f"hidden_state_{i}" for i in range(num_layers + 1)]
    else:
        output_names = ["last_hidden_state"]
    axes = {name: {0: "batch", 1: "sequence"} for name in (*names, *output_names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.inference_mode(False), torch.no_grad(), _quiet_export():
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),
                dynamo=False,
                input_names=list(names),
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        verify_graph(model, tmp, outputs)
        os.replace(tmp, path)
    except BackendError:
        raise
    except Exception as exc:  # the tracer's own message says which operation it could not export
        raise BackendError(
            f"cannot export {type(encoder).__name__} to ONNX: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def verify_graph(
    model: SentenceTransformer, graph: str | Path, outputs: str = "all", atol: float = 1e-3
) -> None:
    """Run an exported graph on a batch of another shape than the trace's and compare with torch.

    The tracer records one path through the encoder's Python code; a graph that does not reproduce the
    encoder on new shapes is refused (BackendError) instead of silently giving other embeddings.
    """
    import torch  # heavy: imported on first use

    texts = ["x", "a much longer sentence than the one the exporter traced, so the shapes differ here", "ok"]
    features = model.preprocess(texts)
    with torch.inference_mode():
        expected = TorchRunner(model)(features)
    runner = OnnxRunner(Path(graph), ONNX, threads=1)
    got = runner(features)
    wanted = list(expected) if outputs == "all" else [expected[-1]]
    if len(got) != len(wanted):
        raise BackendError(f"the exported graph gives {len(got)} outputs, the encoder {len(wanted)}")
    for i, (a, b) in enumerate(zip(got, wanted, strict=True)):
        if tuple(a.shape) != tuple(b.shape) or not np.allclose(
            a.numpy(), b.float().numpy(), atol=atol, rtol=1e-3
        ):
            raise BackendError(
                f"the exported ONNX graph does not reproduce the encoder's output {i} on a new batch shape "
                "(the tracer could not follow this architecture)"
            )


@contextlib.contextmanager
def _quiet_export() -> Any:
    """Silence the tracer's expected warnings (constant shapes of an encoder's mask code, deprecation)."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def quantize_int8(source: str | Path, target: str | Path) -> Path:
    """Dynamic int8 quantization of an ONNX graph: int8 weights per output channel (per-tensor scales lose
    up to 0.06 cosine on MiniLM), activations quantized per batch; MatMuls with constant weights only."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy: optional, first use

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    root_logger = logging.getLogger()
    level = root_logger.level
    try:
        root_logger.setLevel(logging.ERROR)  # its advice to pre-process the graph is logged as a warning
        with _quiet_export():
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    except Exception as exc:
        raise BackendError(f"cannot quantize {Path(source).name} to int8: {exc}") from exc
    finally:
        root_logger.setLevel(level)
        tmp.unlink(missing_ok=True)
    return target


_graph_lock = threading.Lock()
_runners: dict[tuple[str, str, int, str], HiddenStatesRunner] = {}


def all_layer_graph(
    model: SentenceTransformer, fingerprint: str, backend: str, root: str | Path | None = None
) -> Path:
    """The cached all-layer ONNX graph of a checkpoint for ``backend`` (exported on first use)."""
    folder = graph_dir(root) / f"{fingerprint[:32]}-v{GRAPH_VERSION}"
    float_graph = folder / FLOAT_GRAPH
    with _graph_lock:
        if not float_graph.is_file():
            export_all_layers(model, float_graph)
        if backend == ONNX_INT8:
            int8_graph = folder / INT8_GRAPH
            if not int8_graph.is_file():
                quantize_int8(float_graph, int8_graph)
            return int8_graph
    return float_graph


def runner_for(
    model: SentenceTransformer,
    fingerprint: str,
    backend: str = DEFAULT_BACKEND,
    root: str | Path | None = None,
) -> HiddenStatesRunner:
    """The engine's all-layer runner of a loaded checkpoint on ``backend`` (ONNX sessions kept per process)."""
    check_backend(backend)
    if backend == TORCH:
        return TorchRunner(model)
    if backend == TORCH_BF16:
        return TorchRunner(model, bf16=True)
    threads = _torch_threads()
    key = (fingerprint, backend, threads, str(graph_dir(root)))
    with _graph_lock:
        if key in _runners:
            return _runners[key]
    graph = all_layer_graph(model, fingerprint, backend, root)
    runner = OnnxRunner(graph, backend, threads)
    with _graph_lock:
        _runners.setdefault(key, runner)
        return _runners[key]


def layer_graph(
    truncated: SentenceTransformer, fingerprint: str, backend: str, root: str | Path | None = None
) -> Path:
    """The cached ONNX graph (last hidden state only) of a truly truncated copy, for ``backend``.

    ``truncated`` must have exactly the layers wanted (cost measurement of a k-layer sub-model); the file
    is keyed by the source checkpoint's fingerprint and that layer count.
    """
    if backend not in ONNX_BACKENDS:
        raise BackendError(f"backend {backend!r} has no ONNX graph")
    transformer: Any = truncated[0]  # the sentence-transformers Transformer module
    layers = int(transformer.auto_model.config.num_hidden_layers)
    folder = graph_dir(root) / f"{fingerprint[:32]}-v{GRAPH_VERSION}"
    float_graph = folder / f"layers-{layers}.onnx"
    with _graph_lock:
        if not float_graph.is_file():
            export_all_layers(truncated, float_graph, outputs="last")
        if backend == ONNX_INT8:
            int8_graph = folder / f"layers-{layers}-qint8.onnx"
            if not int8_graph.is_file():
                quantize_int8(float_graph, int8_graph)
            return int8_graph
    return float_graph


def clear_runners() -> None:
    """Forget the per-process ONNX sessions (tests; a changed graph folder)."""
    with _graph_lock:
        _runners.clear()


def embedding_deviation(reference: Any, other: Any) -> dict[str, float]:
    """How far a backend's pooled matrix is from the reference's: max |difference|, min/mean row cosine.

    >>> import numpy as np
    >>> embedding_deviation(np.eye(2), np.eye(2))["min_cosine"]
    1.0
    """

    a = np.asarray(reference, dtype=np.float64)  # (n, width)
    b = np.asarray(other, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0)
    return {
        "max_abs": float(np.abs(a - b).max()) if a.size else 0.0,
        "min_cosine": float(cosine.min()) if cosine.size else 1.0,
        "mean_cosine": float(cosine.mean()) if cosine.size else 1.0,
    }


def remove_graphs(fingerprint: str, root: str | Path | None = None) -> None:
    """Delete a checkpoint's cached graphs (they are re-exported on next use)."""
    shutil.rmtree(graph_dir(root) / f"{fingerprint[:32]}-v{GRAPH_VERSION}", ignore_errors=True)
