"""Widgets of the Demo page: the sub-model pickers (seeded once from the URL) and the cached corpora.

A sub-model travels in the URL as ``a=default:6:384:float32``, with ``:onnx`` (its backend) appended unless
torch (``core.demo.format_model_param``), so links from before backends still work; in
read-only demo mode checkpoints are named by fingerprint prefix, so links never show folder paths.
"""

from __future__ import annotations

import streamlit as st

from common import settings
from core import backends, checkpoints, datasets, demo, figures, quantize, submodels, views
from ui import backend_widgets, errors, pickers, resources, state


def checkpoint_options() -> dict[str, str]:
    """URL/widget ref -> loadable checkpoint name: every registered checkpoint, plus ``default``."""
    refs: dict[str, str] = {}
    for ref, record in pickers.checkpoint_refs(resources.checkpoints()).items():
        hidden = settings.read_only() and record.kind == "local"
        refs[record.fingerprint[: pickers.FP_REF_LEN] if hidden else ref] = record.name
    refs.setdefault("default", "default")
    return refs


def display_names() -> dict[str, str]:
    """Loadable checkpoint name -> display name (``core.lab.registry.display_name``), ``default`` included."""
    records = resources.checkpoints()
    names = pickers.short_names(records)
    return {"default": "default", **{r.name: names[r.fingerprint] for r in records}}


def model_label(model: demo.DemoModel) -> str:
    """``my-model (3, 128, int8)``: ``DemoModel.label`` with the checkpoint's display name."""
    return model.titled(_name(model.checkpoint))


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
        ref, layer, dim, precision, backend = demo.parse_model_param(url, known_backend=False)
        if ref not in refs:
            raise demo.DemoError(f"unknown checkpoint {ref!r}")
        if backend not in backends.BACKENDS:  # the rest of the sub-model still applies
            state.warn_link(
                f"{prefix} backend", backend, f"the backends are {', '.join(backends.BACKENDS)}", "torch"
            )
            backend = backends.DEFAULT_BACKEND
        st.session_state[f"demo_{prefix}_ckpt"] = ref
        demo.validate_model(demo.DemoModel(refs[ref], layer, dim, precision, backend))
        values = {"layer": layer, "dim": dim, "prec": precision, "backend": backend}
        st.session_state.update({f"demo_{prefix}_{k}": v for k, v in values.items()})


def model_picker(prefix: str, title: str, default_step: int | None = None) -> demo.DemoModel:
    """Checkpoint, layers, dims, precision and backend of one sub-model in the sidebar; published to the URL.

    The first cell shown is the checkpoint's full size, or step ``default_step`` of its Starbucks
    diagonal (``default_diagonal``; step 1 of a 6 x 384 model is (2, 64)).
    """
    refs = checkpoint_options()
    side = st.sidebar
    side.subheader(title)
    _seed_from_url(prefix, refs)
    state.bind_widget(f"demo_{prefix}_ckpt", None, list(refs), "default")
    names = display_names()
    ref = side.selectbox(
        "Checkpoint",
        list(refs),
        key=f"demo_{prefix}_ckpt",
        format_func=lambda r: names.get(refs[r], _short(refs[r])),
        help=pickers.checkpoints_help(resources.checkpoints()),
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
    state.bind_widget(f"demo_{prefix}_backend", None, list(backends.BACKENDS), backends.DEFAULT_BACKEND)
    backend = side.selectbox(
        "Backend", backends.BACKENDS, key=f"demo_{prefix}_backend", help=backend_widgets.HELP
    )
    state.show_in_url(prefix, demo.format_model_param(ref, int(layer), int(dim), precision, backend))
    return demo.DemoModel(refs[ref], int(layer), int(dim), precision, backend)


def seed_text(url_key: str, widget_key: str) -> None:
    """Fill an empty text widget from the URL once per session (a shared link's query or sentence)."""
    value = state.url_value(url_key)
    if value and not st.session_state.get(widget_key):
        st.session_state[widget_key] = value


def search_results(both: demo.SideBySide) -> None:
    """Overlap of the two top-10 lists, then each list with its latency, bytes and index size."""
    overlap = st.columns(3)
    overlap[0].metric("Shared documents", f"{both.overlap.shared} / {len(both.a.hits)}")
    overlap[1].metric("Jaccard", f"{both.overlap.jaccard:.2f}")
    overlap[2].metric(
        "Rank-biased overlap", f"{both.overlap.rbo:.2f}", help="p = 0.9; 1 = identical rankings"
    )
    for column, result in zip(st.columns(2, gap="large"), (both.a, both.b), strict=True):
        column.subheader(model_label(result.model))
        cost = column.columns(3)
        cost[0].metric(
            "Query latency",
            f"{result.latency_ms:.1f} ms",
            help=f"median of {result.timed_runs} timed queries after {demo.LATENCY_WARMUP} warm-up runs: encode "
            f"{result.encode_ms:.1f} ms + search {result.search_ms:.2f} ms",
        )
        cost[0].caption(
            f"middle half {result.latency_low_ms:.1f}–{result.latency_high_ms:.1f} ms on {result.model.backend}"
        )
        cost[1].metric("Bytes per vector", f"{result.bytes_per_vector:,}")
        cost[2].metric(
            "Index", f"{result.index_bytes / 1e6:.2f} MB", help=f"{result.corpus_size:,} documents"
        )
        # st.table wraps long documents (a dataframe cell would cut them); scores to 4 decimals
        column.table(demo.hits_table(result).style.format({"score": "{:.4f}"}).hide(axis="index"))
    st.caption(
        "✓ grade: judged relevant in the dataset's qrels; ✗: not judged relevant. Latency is measured live: "
        f"the query is encoded by a copy truncated to the sub-model's layers, {demo.LATENCY_REPEATS} times after "
        f"{demo.LATENCY_WARMUP} warm-up runs; shown: the median and the middle half (25th-75th percentile). "
        "Off torch, the copy runs on the sub-model's backend as it ships (its own ONNX graph for onnx), and the "
        "ranking uses the embeddings grid evaluation gives on that backend."
    )


def pair_view(model_a: demo.DemoModel, model_b: demo.DemoModel, s1: str, s2: str, precision: str) -> None:
    """One sentence pair at every cell: each sub-model's own checkpoint grid (one heatmap per checkpoint),
    the full model of A and sub-model B's cell, read from B's own checkpoint."""
    grid_a = demo.pair_grid(model_a.checkpoint, s1, s2, precision=precision, backend=model_a.backend)
    same = (model_b.checkpoint, model_b.backend) == (model_a.checkpoint, model_a.backend)
    grid_b = (
        grid_a
        if same
        else demo.pair_grid(model_b.checkpoint, s1, s2, precision=precision, backend=model_b.backend)
    )
    full = (grid_a.num_layers, grid_a.width)
    top = st.columns(2)
    top[0].metric(f"Full model {full}", f"{grid_a.full:.4f}")
    if model_b.layer in grid_b.pivot.index and model_b.dim in grid_b.pivot.columns:
        b_value = float(grid_b.pivot.loc[model_b.layer, model_b.dim])
        top[1].metric(f"Sub-model B ({model_b.layer}, {model_b.dim})", f"{b_value:.4f}",
                      f"{b_value - grid_a.full:+.4f}", help=f"B's checkpoint: {_name(model_b.checkpoint)}{_on(model_b)}")  # fmt: skip
    grids = [(model_a, grid_a, None if not same else (model_b.layer, model_b.dim))]
    if not same:
        grids.append((model_b, grid_b, (model_b.layer, model_b.dim)))
    for column, (model, grid, selected) in zip(st.columns(len(grids)), grids, strict=True):
        share = grid.pivot / grid.full if grid.full else None
        fig = figures.grid_heatmap(
            grid.pivot, share, metric=f"{precision} similarity", selected=selected,
            diagonal=submodels.default_diagonal(grid.num_layers, grid.width),
            title=f"{_name(model.checkpoint)}{_on(model)}: {precision} similarity of this pair",
        )  # fmt: skip
        column.plotly_chart(
            fig, key=f"demo_pair_heatmap_{len(grids)}_{model is model_b}", config={"displaylogo": False}
        )
    st.caption("Each cell: similarity and its share of that checkpoint's full model, every cell from one forward "
               "pass; red: sub-model B's cell (in B's checkpoint); dashed: the Starbucks diagonal.")  # fmt: skip


def _on(model: demo.DemoModel) -> str:
    return "" if model.backend == backends.DEFAULT_BACKEND else f" on {model.backend}"


def _short(checkpoint: str) -> str:
    return checkpoint.rstrip("/").rsplit("/", 1)[-1]


def _name(checkpoint: str) -> str:
    return display_names().get(checkpoint, _short(checkpoint))
