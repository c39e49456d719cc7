"""Widgets of the Demo page: the sub-model pickers (seeded once from the URL) and the cached corpora.

A sub-model travels in the URL as ``a=default:6:384:float32`` (``core.demo.format_model_param``); in
read-only demo mode checkpoints are named by fingerprint prefix, so links never show folder paths.
"""

from __future__ import annotations

import streamlit as st

from core import checkpoints, datasets, demo, quantize, settings, submodels, views
from ui import errors, pickers, resources, state


def checkpoint_options() -> dict[str, str]:
    """URL/widget ref -> loadable checkpoint name: every registered checkpoint, plus ``default``."""
    refs: dict[str, str] = {}
    for ref, record in pickers.checkpoint_refs(resources.checkpoints()).items():
        hidden = settings.read_only() and record.kind == "local"
        refs[record.fingerprint[: pickers.FP_REF_LEN] if hidden else ref] = record.name
    refs.setdefault("default", "default")
    return refs


@st.cache_resource(max_entries=4, show_spinner=False)
def dataset_corpus(spec: datasets.DatasetSpec) -> demo.DemoCorpus:
    """A retrieval dataset as a demo corpus (shared, read-only)."""
    return demo.corpus_from_dataset(spec)


def _seed_from_url(prefix: str, refs: dict[str, str]) -> None:
    """Take a shared link's sub-model once: a known checkpoint is kept even when its cell is refused."""
    url = state.url_value(prefix)
    if not url:
        return
    with errors.user_errors(f"link value {prefix}={url!r} ignored"):
        ref, layer, dim, precision = demo.parse_model_param(url)
        if ref not in refs:
            raise demo.DemoError(f"unknown checkpoint {ref!r}")
        st.session_state[f"demo_{prefix}_ckpt"] = ref
        demo.validate_model(demo.DemoModel(refs[ref], layer, dim, precision))
        values = {"layer": layer, "dim": dim, "prec": precision}
        st.session_state.update({f"demo_{prefix}_{k}": v for k, v in values.items()})


def model_picker(prefix: str, title: str, default_step: int | None = None) -> demo.DemoModel:
    """Checkpoint, layers, dims and precision of one sub-model in the sidebar; published to the URL.

    The first cell shown is the checkpoint's full size, or step ``default_step`` of its Starbucks
    diagonal (``default_diagonal``; step 1 of a 6 x 384 model is (2, 64)).
    """
    refs = checkpoint_options()
    side = st.sidebar
    side.subheader(title)
    _seed_from_url(prefix, refs)
    state.bind_widget(f"demo_{prefix}_ckpt", None, list(refs), "default")
    ref = side.selectbox(
        "Checkpoint", list(refs), key=f"demo_{prefix}_ckpt", format_func=lambda r: refs[r].rsplit("/", 1)[-1]
    )
    info = checkpoints.load(refs[ref]).info
    depth, width = info.num_layers, info.embedding_dim
    dims = views.default_grid_dims(depth, width)
    current = st.session_state.get(f"demo_{prefix}_dim")
    if isinstance(current, int) and 1 <= current <= width and current not in dims:
        dims = sorted([*dims, current])  # a linked dim outside the default grid stays selectable
    diagonal = submodels.default_diagonal(depth, width)
    layer, dim = (
        diagonal[min(default_step, len(diagonal) - 1)] if default_step is not None else (depth, width)
    )
    layer_key, dim_key = f"demo_{prefix}_layer", f"demo_{prefix}_dim"
    st.session_state[layer_key] = min(max(1, int(st.session_state.get(layer_key) or layer)), depth)
    st.session_state[dim_key] = views.nearest(int(st.session_state.get(dim_key) or dim), dims)
    layer = side.slider("Layers", 1, depth, key=layer_key) if depth > 1 else 1
    dim = side.select_slider("Dims", dims, key=dim_key) if len(dims) > 1 else dims[0]
    state.bind_widget(f"demo_{prefix}_prec", None, list(quantize.PRECISIONS), "float32")
    precision = side.selectbox("Precision", quantize.PRECISIONS, key=f"demo_{prefix}_prec")
    state.publish(prefix, demo.format_model_param(ref, int(layer), int(dim), precision))
    return demo.DemoModel(refs[ref], int(layer), int(dim), precision)


def seed_text(url_key: str, widget_key: str) -> None:
    """Fill an empty text widget from the URL once per session (a shared link's query or sentence)."""
    value = state.url_value(url_key)
    if value and not st.session_state.get(widget_key):
        st.session_state[widget_key] = value
