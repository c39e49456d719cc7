"""Home: what the lab is, the default checkpoint and the datasets with their status, the one button that
evaluates the default grid, and (sidebar) registering checkpoints and datasets."""

from __future__ import annotations

import streamlit as st

from common import settings
from core import checkpoints
from ui import actions, errors, home_widgets, nav, reference_views, resources, state

INTRO = (
    "Matryoshka Lab measures what every smaller sub-model of a 2D Matryoshka sentence-embedding model is "
    "worth: sub-model (k, d) keeps the first k transformer layers and the first d embedding dimensions. "
    "One encoder pass yields every layer, so a checkpoint's whole layer x dim grid is scored on STS and "
    "retrieval datasets for about the price of one encoding, and every score is stored for the next visit. "
    "Explore one grid, compare checkpoints, trace accuracy against cost (bytes, layers, dims) and manage "
    "the runs behind them."
)

# ---- sidebar inputs
resources.session_factory()
home_widgets.register_sidebar()

# ---- title
st.title("Matryoshka Lab")
st.markdown(INTRO)

# ---- state
state.init_page("home", {"message": None})
records = resources.checkpoints()
default = next((r for r in records if r.kind == "default"), None)
builtin = {c.name: c.spec for c in resources.dataset_choices() if c.builtin and c.spec is not None}

# ---- render
st.subheader("Default checkpoint")
if default is None:
    st.markdown(
        f"`default` is **{checkpoints.DEFAULT_LABEL}** (6 layers x 384 dims, mean pooling), not evaluated yet."
    )
else:
    st.markdown(
        f"`default` is **{default.info.get('label', checkpoints.DEFAULT_LABEL)}**: {default.num_layers} layers x "
        f"{default.embedding_dim} dims, {default.pooling} pooling, {default.similarity} similarity."
    )
st.dataframe(home_widgets.status_table(default), hide_index=True, key="home_status")

left, right = st.columns([2, 1], vertical_alignment="bottom")
options = list(builtin)
state.bind_widget("home_dataset", "dataset", options, "stsb-test" if "stsb-test" in builtin else options[0],
                  "Home evaluates the built-in datasets; Explore evaluates registered ones")  # fmt: skip
name = left.selectbox("Dataset to evaluate", options, key="home_dataset")
state.publish("dataset", name)
if settings.read_only():
    right.caption(actions.READ_ONLY_NOTE)
elif right.button("Evaluate the default grid", key="home_evaluate", type="primary", width="stretch"):
    with errors.user_errors(f"evaluating default on {name}"):
        report = actions.evaluate_with_progress("default", builtin[name])
        st.session_state["home_message"] = (
            f"default on {name}: {report.computed} cells computed, {report.reused} already stored."
        )
        st.rerun()
if st.session_state["home_message"]:
    st.success(st.session_state["home_message"])
    nav.link(nav.EXPLORE, "Explore the grid", icon=":material/grid_on:")

if records:
    st.subheader("Registered checkpoints")
    st.dataframe(home_widgets.checkpoints_table(records), hide_index=True, key="home_checkpoints",
                 column_config=home_widgets.CHECKPOINT_COLUMNS)  # fmt: skip
    home_widgets.rename_section(records)
reference_views.home_section()
