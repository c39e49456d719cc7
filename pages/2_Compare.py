"""Compare: two or more checkpoints on one dataset, heatmaps on one colour scale, a delta heatmap and
the per-size table along the Starbucks diagonal (shared cells only; missing cells listed)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import figures, submodels, views
from ui import actions, insight_views, nav, pickers, resources, state

state.init_page("compare", {})
st.title("Compare checkpoints")

records = resources.checkpoints()
if not records:
    st.info(
        "Nothing is evaluated yet. First evaluate the default grid on the Home page.", icon=":material/info:"
    )
    nav.link(nav.HOME, "Go to Home", icon=":material/home:")
    st.stop()

choice = pickers.dataset(resources.dataset_choices(), "compare_dataset")
frames = {r.fingerprint: resources.results(r.fingerprint, choice.fingerprint) for r in records}
refs = pickers.checkpoint_refs(records)
with_results = [ref for ref, r in refs.items() if not frames[r.fingerprint].empty]
chosen = pickers.checkpoints(records, "compare_checkpoints", with_results[:2])
if len(chosen) < 2:
    st.info(
        f"Pick at least two checkpoints. {len(with_results)} of {len(records)} registered checkpoints have "
        f"results on **{choice.name}**: evaluate another one on the Explore page, or register one on Home.",
        icon=":material/info:",
    )
    nav.link(nav.EXPLORE, "Go to Explore", icon=":material/grid_on:")
    st.stop()

merged = pd.concat([frames[r.fingerprint] for r in chosen], ignore_index=True)
metric = pickers.metric(choice.kind, merged, "compare_metric")
precision = pickers.precision(merged, "compare_precision")
names = pickers.short_names(chosen)
pivots = {names[r.fingerprint]: views.grid_pivot(frames[r.fingerprint], metric, precision) for r in chosen}
for r in chosen:
    if pivots[names[r.fingerprint]].empty:
        st.warning(
            f"**{names[r.fingerprint]}** has no {precision} results on {choice.name}.",
            icon=":material/warning:",
        )
        actions.compute_button(
            f"Evaluate {names[r.fingerprint]} now", f"compare_evaluate_{r.fingerprint[:12]}", r.name, choice
        )
pivots = {name: pivot for name, pivot in pivots.items() if not pivot.empty}
if len(pivots) < 2:
    st.stop()

# ---- heatmaps side by side on one colour scale
st.subheader(f"{figures.metric_label(metric)} on {choice.name}")
zmin, zmax = figures.color_range(list(pivots.values()))
diagonals = {names[r.fingerprint]: submodels.default_diagonal(r.num_layers, r.embedding_dim) for r in chosen}
items = list(pivots.items())
per_row = 2 if len(items) in (2, 4) else 3
for start in range(0, len(items), per_row):
    columns = st.columns(per_row)
    for column, (name, pivot) in zip(columns, items[start : start + per_row], strict=False):
        fig = figures.grid_heatmap(
            pivot, metric=metric, title=name, diagonal=diagonals[name], zmin=zmin, zmax=zmax
        )
        column.plotly_chart(fig, key=f"compare_heatmap_{start}_{name}", config={"displaylogo": False})

cells = {
    names[r.fingerprint]: views.cells_of(frames[r.fingerprint], metric, precision)
    for r in chosen
    if names[r.fingerprint] in pivots
}
shared, missing = views.shared_cells(cells)
st.caption(
    f"One colour scale for all grids ({zmin:.3f} to {zmax:.3f}). {len(shared)} cells are shared by all."
)
for name, lacking in missing.items():
    if lacking:
        shown = ", ".join(f"({k}, {d})" for k, d in lacking[:12]) + (" ..." if len(lacking) > 12 else "")
        st.caption(f"**{name}** lacks {len(lacking)} cells the others have: {shown}")

# ---- delta heatmap
st.subheader("Difference on shared cells")
left, right = st.columns(2)
options = list(pivots)
state.bind_widget("compare_a", None, options, options[0])
state.bind_widget("compare_b", None, options, options[1])
a = left.selectbox("A (baseline)", options, key="compare_a")
b = right.selectbox("B", options, key="compare_b")
if a == b:
    st.info("Pick two different checkpoints for A and B.", icon=":material/info:")
else:
    delta = views.delta_pivot(pivots[a], pivots[b])
    st.plotly_chart(
        figures.delta_heatmap(delta, metric=metric, title=f"{b} - {a}"),
        key="compare_delta",
        config={"displaylogo": False},
    )
    st.caption(f"Blue: {b} scores higher than {a}; red: lower. Blank: a cell one of them lacks.")

# ---- per-size table along the diagonal
st.subheader("Per size along the diagonal")
by_name = {names[r.fingerprint]: r for r in chosen}
table = insight_views.per_size_table(  # significance marks; the paper's columns on request
    pivots, {name: diagonals[name] for name in pivots}, by_name, choice, metric, precision
)
distinct = {tuple(p) for p in table.pairs.values()}
if len(distinct) > 1:
    for name, pairs in table.pairs.items():
        st.caption(f"**{name}** sizes: " + ", ".join(f"({k}, {d})" for k, d in pairs))
st.caption(
    "Rows: the Starbucks-style (layers, dims) pairs from small to full; bold: the best per row; mean over sizes."
)

insight_views.significance_section(
    {n: by_name[n] for n in pivots},
    {n: frames[by_name[n].fingerprint] for n in pivots},
    choice,
    metric,
    precision,
)
