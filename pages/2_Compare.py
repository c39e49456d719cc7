"""Compare: two or more checkpoints on one dataset, heatmaps on one colour scale, a delta heatmap and
the per-size table along the Starbucks diagonal (shared cells only; missing cells listed)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import figures, submodels, views
from ui import (
    actions,
    backend_widgets,
    compare_widgets,
    guards,
    insight_views,
    nav,
    pickers,
    reference_views,
    resources,
    state,
)

TITLE = "Compare checkpoints"

# ---- sidebar inputs
records = resources.checkpoints()
guards.need_checkpoints(records, TITLE)
choice = pickers.dataset(resources.dataset_choices(), "compare_dataset")
backend = backend_widgets.picker([r.fingerprint for r in records], choice.fingerprint, "compare_backend")
frames = {
    r.fingerprint: resources.results(r.fingerprint, choice.fingerprint, backend=backend) for r in records
}
with_results = [ref for ref, r in pickers.checkpoint_refs(records).items() if not frames[r.fingerprint].empty]
chosen = pickers.checkpoints(records, "compare_checkpoints", with_results[:2])
merged = pd.concat([frames[r.fingerprint] for r in chosen], ignore_index=True) if chosen else pd.DataFrame()
metric = pickers.metric(choice.kind, merged, "compare_metric")
precision = pickers.precision(merged, "compare_precision")

# ---- title
st.title(TITLE)

# ---- state
state.init_page("compare", {})
if len(chosen) < 2:
    guards.stop(
        f"Pick at least two checkpoints in the sidebar. {len(with_results)} of {len(records)} registered "
        f"checkpoints have results on **{choice.name}** ({backend}); a picked checkpoint without results can be "
        "evaluated here, or register another one on Home.",
        nav.EXPLORE,
        "Go to Explore",
    )
names = pickers.short_names(chosen)
by_name = {names[r.fingerprint]: r for r in chosen}
pivots = {name: views.grid_pivot(frames[r.fingerprint], metric, precision) for name, r in by_name.items()}
empty = [name for name, pivot in pivots.items() if pivot.empty]
pivots = {name: pivot for name, pivot in pivots.items() if not pivot.empty}
diagonals = {name: submodels.default_diagonal(r.num_layers, r.embedding_dim) for name, r in by_name.items()}

# ---- render
for name in empty:
    st.warning(
        f"**{name}** has no {precision} results on {choice.name} ({backend}).", icon=":material/warning:"
    )
    actions.compute_button(
        f"Evaluate {name} now",
        f"compare_evaluate_{by_name[name].fingerprint[:12]}",
        by_name[name].name,
        choice,
        precisions=[precision],
        backend=backend,
    )
if len(pivots) < 2:
    st.stop()

on = figures.precision_on(precision, backend)
st.subheader(f"{figures.metric_label(metric)} on {choice.name} ({on})")
zmin, zmax = compare_widgets.heatmaps(pivots, diagonals, choice.name, metric, on)
shared = compare_widgets.missing_captions(
    {name: views.cells_of(frames[by_name[name].fingerprint], metric, precision) for name in pivots}
)
st.caption(
    f"One colour scale for all grids ({zmin:.3f} to {zmax:.3f}). {len(shared)} cells are shared by all."
)

st.subheader("Difference on shared cells")
a, b = compare_widgets.pick_a_b(list(pivots))
if a == b:
    st.info("Pick two different checkpoints for A and B.", icon=":material/info:")
else:
    insight_views.delta_section(pivots, by_name, diagonals, choice, metric, precision, a, b, backend)

st.subheader("Per size along the diagonal")
table = insight_views.per_size_table(  # significance marks; the paper's columns on request
    pivots, {name: diagonals[name] for name in pivots}, by_name, choice, metric, precision, backend
)
if len({tuple(p) for p in table.pairs.values()}) > 1:
    for name, pairs in table.pairs.items():
        st.caption(f"**{name}** sizes: " + ", ".join(f"({k}, {d})" for k, d in pairs))
st.caption(
    "Rows: the Starbucks-style (layers, dims) pairs from small to full; bold: the best per row; mean over sizes."
)
reference_views.nearest_table(table, choice.name, metric)  # MTEB reference models, on request
insight_views.significance_section(
    {n: by_name[n] for n in pivots},
    {n: frames[by_name[n].fingerprint] for n in pivots},
    choice,
    metric,
    precision,
    backend,
)
