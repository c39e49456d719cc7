"""Explore: one checkpoint's layer x dim grid on one dataset, a selected sub-model, and line charts."""

from __future__ import annotations

import math

import streamlit as st

from core import figures, submodels, views
from ui import actions, insight_views, nav, pickers, resources, state

state.init_page("explore", {"free_dim": False})
st.title("Explore the layer x dim grid")

records = resources.checkpoints()
if not records:
    st.info(
        "Nothing is evaluated yet. First evaluate the default grid on the Home page.", icon=":material/info:"
    )
    nav.link(nav.HOME, "Go to Home", icon=":material/home:")
    st.stop()

ckpt = pickers.checkpoint(records, "explore_checkpoint")
choice = pickers.dataset(resources.dataset_choices(), "explore_dataset")
frame = resources.results(ckpt.fingerprint, choice.fingerprint)
metric = pickers.metric(choice.kind, frame, "explore_metric")
precision = pickers.precision(frame, "explore_precision")
num_layers, width = ckpt.num_layers, ckpt.embedding_dim
grid_dims = views.default_grid_dims(num_layers, width)
planned = [(k, d) for k in range(1, num_layers + 1) for d in grid_dims]
missing = views.missing_cells(frame, metric, planned, precision)
label = figures.metric_label(metric)

pivot = views.grid_pivot(frame, metric, precision)
if pivot.empty:
    st.info(
        f"**{ckpt.name}** has no {precision} results on **{choice.name}** yet: evaluate its grid "
        f"({num_layers} layers x {len(grid_dims)} dims, stored for next time).",
        icon=":material/info:",
    )
    actions.compute_button(
        "Evaluate the grid now", "explore_evaluate", ckpt.name, choice, None, None, [precision], True
    )
    st.stop()

full_value = views.cell_value(frame, metric, (num_layers, width), "float32")
share = views.share_of_full(pivot, full_value)
dims = [int(d) for d in pivot.columns]
diagonal = submodels.default_diagonal(num_layers, width)

# ---- selection: layer slider, dim slider snapped to evaluated dims (or free); kept across page visits
default_layer, default_dim = diagonal[len(diagonal) // 2]
sel_layer = (
    st.session_state.get("explore_sel_layer") or state.url_int("layer", 1, num_layers) or default_layer
)
sel_dim = st.session_state.get("explore_sel_dim") or state.url_int("dim", 1, width) or default_dim
st.session_state["explore_layer"] = min(
    max(1, st.session_state.get("explore_layer") or sel_layer), num_layers
)

controls, chart = st.columns([2, 3], gap="large")
with controls:
    layer = st.slider("Layers used", 1, num_layers, key="explore_layer") if num_layers > 1 else 1
    if st.toggle("Any dim (not only evaluated ones)", key="explore_free_dim"):
        st.session_state["explore_dim_free"] = min(
            max(1, st.session_state.get("explore_dim_free") or sel_dim), width
        )
        dim = st.slider("Embedding dims", 1, width, key="explore_dim_free")
    else:
        st.session_state["explore_dim_snap"] = views.nearest(
            st.session_state.get("explore_dim_snap") or sel_dim, dims
        )
        dim = (
            st.select_slider("Embedding dims", options=dims, key="explore_dim_snap")
            if len(dims) > 1
            else dims[0]
        )
    layer, dim = int(layer), int(dim)
    st.session_state["explore_sel_layer"], st.session_state["explore_sel_dim"] = layer, dim
    state.publish("layer", layer)
    state.publish("dim", dim)

    summary = views.cell_summary(
        frame, (layer, dim), (num_layers, width), precision, pickers.metric_options(choice.kind, frame)
    )
    value = summary.value(metric)
    if (layer, dim) not in views.cells_of(frame, metric, precision):
        st.warning(
            f"Sub-model ({layer}, {dim}) at {precision} is not evaluated yet.", icon=":material/warning:"
        )
        actions.compute_button(
            f"Compute ({layer}, {dim})",
            "explore_compute_cell",
            ckpt.name,
            choice,
            [layer],
            [dim],
            [precision],
        )
    else:
        top = st.columns(2)
        top[0].metric(label, "n/a" if math.isnan(value) else f"{value:.4f}")
        share_value = summary.share(metric)
        top[1].metric("Share of full model", "n/a" if math.isnan(share_value) else f"{share_value:.1%}")
        bottom = st.columns(2)
        bottom[0].metric("Layers used", f"{layer} / {num_layers}")
        bottom[1].metric(
            "Bytes per vector",
            f"{summary.bytes_per_vector:,}",
            help=f"{dim} dims at {precision}; the full model stores {summary.full_bytes_per_vector:,} bytes.",
        )
        st.dataframe(
            summary.table.assign(metric=summary.table["metric"].map(figures.metric_label)).rename(
                columns={"share": "share of full"}
            ),
            hide_index=True,
            key="explore_cell_table",
            column_config={
                "metric": st.column_config.TextColumn("metric"),
                "value": st.column_config.NumberColumn(f"({layer}, {dim})", format="%.4f"),
                "full": st.column_config.NumberColumn(f"full ({num_layers}, {width})", format="%.4f"),
                "share of full": st.column_config.NumberColumn(format="percent"),
            },
        )

with chart:
    st.plotly_chart(
        figures.grid_heatmap(pivot, share, metric=metric, diagonal=diagonal, selected=(layer, dim)),
        key="explore_heatmap",
        config={"displaylogo": False},
    )
    st.caption(
        f"Each cell: {label} and its share of the full model ({num_layers}, {width}). Dashed outline: the "
        "Starbucks-style diagonal (one fixed pair per size); red: the selected sub-model."
    )
    if missing:
        st.caption(f"{len(missing)} cells of the default grid are not evaluated yet.")
        actions.compute_button(
            f"Compute the {len(missing)} missing cells",
            "explore_compute_missing",
            ckpt.name,
            choice,
            sorted({k for k, _ in missing}),
            sorted({d for _, d in missing}),
            [precision],
        )

by_dim, by_layer = st.tabs(["Metric vs dims, one line per layer", "Metric vs layers, one line per dim"])
by_dim.plotly_chart(figures.metric_vs_dim(pivot, metric), key="explore_vs_dim", config={"displaylogo": False})
by_layer.plotly_chart(
    figures.metric_vs_layer(pivot, metric), key="explore_vs_layer", config={"displaylogo": False}
)
if (layer, dim) in views.cells_of(frame, metric, precision):  # per pair / per query, from stored scores
    insight_views.losses_section(ckpt, records, choice, (layer, dim), precision, metric)
actions.evaluate_more(ckpt.name, choice, "explore", precision)
