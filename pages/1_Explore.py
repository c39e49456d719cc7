"""Explore: one checkpoint's layer x dim grid on one dataset, a selected sub-model, and line charts."""

from __future__ import annotations

import streamlit as st

from core import figures, submodels, views
from ui import actions, backend_widgets, explore_widgets, guards, insight_views, pickers, resources, state

TITLE = "Explore the layer x dim grid"

# ---- sidebar inputs
records = resources.checkpoints()
guards.need_checkpoints(records, TITLE)
ckpt = pickers.checkpoint(records, "explore_checkpoint")
choice = pickers.dataset(resources.dataset_choices(), "explore_dataset")
backend = backend_widgets.picker([ckpt.fingerprint], choice.fingerprint, "explore_backend")
frame = resources.results(ckpt.fingerprint, choice.fingerprint, backend=backend)
metric = pickers.metric(choice.kind, frame, "explore_metric")
precision = pickers.precision(frame, "explore_precision")

# ---- title
st.title(TITLE)

# ---- state
state.init_page("explore", {"free_dim": False})
num_layers, width = ckpt.num_layers, ckpt.embedding_dim
full = (num_layers, width)
grid_dims = views.default_grid_dims(num_layers, width)
planned = [(k, d) for k in range(1, num_layers + 1) for d in grid_dims]
missing = views.missing_cells(frame, metric, planned, precision)
pivot = views.grid_pivot(frame, metric, precision)
if pivot.empty:
    st.info(
        f"**{ckpt.name}** has no {precision} results on **{choice.name}** ({backend}) yet: evaluate its grid "
        f"({num_layers} layers x {len(grid_dims)} dims, stored for next time).",
        icon=":material/info:",
    )
    actions.compute_button(
        "Evaluate the grid now", "explore_evaluate", ckpt.name, choice, None, None, [precision], True, backend
    )
    st.stop()
share = views.share_of_full(pivot, views.cell_value(frame, metric, full, "float32"))
dims = [int(d) for d in pivot.columns]
diagonal = submodels.default_diagonal(num_layers, width)
stored_cells = views.cells_of(frame, metric, precision)
on = figures.precision_on(precision, backend)
title = figures.chart_title(pickers.display_name(ckpt), choice.name, metric, on)

# ---- render
controls, chart = st.columns([2, 3], gap="large")
with controls:
    layer, dim = explore_widgets.cell_picker(num_layers, width, dims, diagonal[len(diagonal) // 2])
    if (layer, dim) in stored_cells:
        explore_widgets.cell_panel(frame, (layer, dim), full, choice.kind, metric, precision)
        explore_widgets.latency_panel(ckpt, layer, backend)
        backend_widgets.deviation(
            ckpt.fingerprint, choice.fingerprint, (layer, dim), metric, precision, backend
        )
        backend_widgets.export_button(ckpt.name, (layer, dim), backend, "explore_export")
    else:
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
            backend=backend,
        )

with chart:
    st.plotly_chart(
        figures.grid_heatmap(
            pivot, share, metric=metric, diagonal=diagonal, selected=(layer, dim), title=title
        ),
        key="explore_heatmap",
        config={"displaylogo": False},
    )
    st.caption(
        f"Each cell: {figures.metric_label(metric)} and its share of the full model {full}. Dashed outline: "
        "the Starbucks-style diagonal (one fixed pair per size); red: the selected sub-model."
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
            backend=backend,
        )

by_dim, by_layer = st.tabs(["Metric vs dims, one line per layer", "Metric vs layers, one line per dim"])
for tab, fig, key in ((by_dim, figures.metric_vs_dim(pivot, metric), "explore_vs_dim"),
                      (by_layer, figures.metric_vs_layer(pivot, metric), "explore_vs_layer")):  # fmt: skip
    fig.update_layout(title={"text": title}, margin={"t": 40})
    tab.plotly_chart(fig, key=key, config={"displaylogo": False})
if (layer, dim) in stored_cells:  # per pair / per query, from the backend's stored scores
    insight_views.losses_section(ckpt, records, choice, (layer, dim), precision, metric, backend)
actions.evaluate_more(ckpt.name, choice, "explore", precision, backend)
