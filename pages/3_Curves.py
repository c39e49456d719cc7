"""Curves: accuracy vs cost for one or more checkpoints, with the Pareto front and a CSV download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import figures, submodels, views
from ui import actions, backend_widgets, guards, insight_views, pickers, reference_views, resources, state

TITLE = "Accuracy vs cost"

# ---- sidebar inputs
records = resources.checkpoints()
guards.need_checkpoints(records, TITLE)
choice = pickers.dataset(resources.dataset_choices(), "curves_dataset")
frames = {r.fingerprint: resources.results(r.fingerprint, choice.fingerprint) for r in records}
with_results = [ref for ref, r in pickers.checkpoint_refs(records).items() if not frames[r.fingerprint].empty]
guards.need_results(with_results, choice.name, TITLE)
chosen = pickers.checkpoints(records, "curves_checkpoints", with_results)
both = pd.concat([frames[r.fingerprint] for r in chosen], ignore_index=True) if chosen else pd.DataFrame()
metric = pickers.metric(choice.kind, both, "curves_metric")
stored_precisions = [p for p in submodels.PRECISIONS if p in set(both.get("precision", ()))] or ["float32"]
state.bind_multi("curves_precisions", None, stored_precisions, [state.get("precision") or "float32"])
precisions = st.sidebar.multiselect("Precisions", stored_precisions, key="curves_precisions")
backend_list = backend_widgets.multi_picker(
    [r.fingerprint for r in chosen], choice.fingerprint, "curves_backends"
)

# ---- title
st.title(TITLE)

# ---- state
state.init_page("curves", {"log_x": False, "show_grid": True})
if not chosen:
    st.info("Pick at least one checkpoint in the sidebar.", icon=":material/info:")
    st.stop()
names = pickers.short_names(chosen)
diagonals = {r.fingerprint: submodels.default_diagonal(r.num_layers, r.embedding_dim) for r in chosen}
points = backend_widgets.curve_points(
    chosen, choice.fingerprint, metric, precisions or stored_precisions, backend_list, names, diagonals
)
axes = {axis.column: axis for axis in views.cost_axes(points)}

# ---- render
left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
state.bind_widget("curves_x", None, list(axes), "bytes_per_vector")
x = left.selectbox("Cost (x axis)", list(axes), key="curves_x", format_func=lambda c: axes[c].label)
log_x = middle.toggle("Log x", key="curves_log_x")
show_grid = right.toggle("Whole grid", key="curves_show_grid", help="Off: only the diagonal pairs.")
axis = axes[x]
shown = points if show_grid else points[points["on_diagonal"].astype(bool)]
backend_widgets.measure_buttons(points, chosen, names, "curves_measure")  # per backend shown
if axis.measured:  # unmeasured checkpoints are named, never silently dropped
    lacking = views.unmeasured(shown, axis.column)
    if lacking:
        st.caption(f"Not measured ({axis.label}), so not on this plot: {', '.join(lacking)}.")
    shown = shown[shown[axis.column].notna()]
if shown.empty:
    st.info(
        "No points to show: turn on 'Whole grid' or evaluate the diagonal cells on Explore.",
        icon=":material/info:",
    )
    st.stop()
front = views.pareto_front(shown, axis.column, cost_lower_is_better=axis.lower_is_better)
fig = figures.cost_curve(shown, axis.column, x_label=axis.label, metric=metric, front=front, log_x=log_x,
                         title=figures.chart_title(f"Accuracy vs {axis.label}", choice.name, metric,
                                                   ", ".join(precisions or stored_precisions)))  # fmt: skip
insight_views.paper_overlay(fig, choice.name, metric, axis.column)  # published points, on request
reference_views.curves_overlay(fig, choice.name, metric, axis.column)  # MTEB reference models
st.plotly_chart(
    fig,
    key="curves_chart",
    config={"displaylogo": False, "toImageButtonOptions": {"filename": f"curves-{choice.name}-{metric}"}},
)
st.caption(
    f"Lines: each checkpoint's Starbucks-style diagonal; dots: the rest of its grid; ringed: the Pareto front "
    f"(no other sub-model is both cheaper in {axis.label} and better). PNG: the camera button of the chart."
)

columns = list(
    dict.fromkeys(["checkpoint", "layer", "dim", "precision", "value", axis.column])
)  # x may be "dim"
front_table = shown[front][columns].drop_duplicates().sort_values(axis.column, ascending=axis.lower_is_better)
st.subheader(f"Pareto front ({len(front_table)} sub-models)")
st.dataframe(
    front_table.rename(columns={"value": metric}),
    hide_index=True,
    key="curves_front",
    column_config={
        metric: st.column_config.NumberColumn(figures.metric_label(metric), format="%.4f"),
        axis.column: st.column_config.NumberColumn(axis.label),
    },
)
backend_widgets.export_choice(
    shown[front], {r.fingerprint: actions.checkpoint_name(r) for r in chosen}, "curves_export"
)
download = shown.assign(pareto=front).drop(columns=["checkpoint_fp"]).rename(columns={"value": metric})
st.download_button(
    "Download the points as CSV",
    download.to_csv(index=False),
    file_name=f"curves-{choice.name.replace('/', '_')}-{metric}.csv",
    mime="text/csv",
    key="curves_download",
)
