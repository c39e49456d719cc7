"""Matryoshka Lab: the entry point (``streamlit run app.py``) and its Home page.

Home says what the lab is, shows the default checkpoint and the built-in datasets with their status,
evaluates the default grid with one button, and registers checkpoints and datasets in the sidebar.
The other pages are the files under ``pages/`` (see ``ui.nav``).
"""

from __future__ import annotations

import os
import sys

import pandas as pd
import streamlit as st

from core import checkpoints, metrics, settings, views
from storage import db
from storage.repository import CheckpointRecord
from ui import actions, errors, nav, pickers, resources, state

INTRO = (
    "Matryoshka Lab measures what every smaller sub-model of a 2D Matryoshka sentence-embedding model is "
    "worth: sub-model (k, d) keeps the first k transformer layers and the first d embedding dimensions. "
    "One encoder pass yields every layer, so a checkpoint's whole layer x dim grid is scored on STS and "
    "retrieval datasets for about the price of one encoding, and every score is stored for the next visit. "
    "Explore one grid, compare checkpoints, trace accuracy against cost (bytes, layers, dims) and manage "
    "the runs behind them."
)


def sidebar() -> None:
    """Register a checkpoint or a dataset (hidden in read-only demo mode)."""
    side = st.sidebar
    if settings.read_only():
        side.info("Read-only demo mode: registering checkpoints and datasets is off.")
        return
    side.subheader("Register a checkpoint")
    text = side.text_input(
        "Local folder or hub id", key="home_checkpoint_text", placeholder="/path/to/model or org/name@rev"
    )
    if side.button("Register checkpoint", key="home_checkpoint_go"):
        with side, errors.user_errors(f"checkpoint {text.strip()!r}"), st.spinner("Loading checkpoint ..."):
            record = actions.register_checkpoint(text)
            side.success(
                f"Registered {record.name} ({record.num_layers} layers x {record.embedding_dim} dims)"
            )
    side.subheader("Register a dataset")
    path = side.text_input(
        "STS .tsv file or BEIR folder",
        key="home_dataset_path",
        placeholder="/path/to/sts.tsv or /path/to/beir",
    )
    if side.button("Register dataset", key="home_dataset_go"):
        with side, errors.user_errors(f"dataset {path.strip()!r}"):
            ds = actions.register_dataset_path(path)
            side.success(f"Registered dataset {ds.name} ({ds.kind}, {ds.n_items} items)")
    upload = side.file_uploader(
        "... or upload an STS .tsv / zipped BEIR folder", type=["tsv", "zip"], key="home_upload"
    )
    if upload is not None and side.button("Register upload", key="home_upload_go"):
        with side, errors.user_errors(f"upload {upload.name!r}"):
            ds = actions.register_upload(upload.getvalue(), upload.name)
            side.success(f"Registered dataset {ds.name} ({ds.kind}, {ds.n_items} items)")
    side.caption(f"Results database: `{db.safe_url(settings.database_url())}`")


def status_table(default: CheckpointRecord | None) -> pd.DataFrame:
    """Built-in and registered datasets with the default checkpoint's status on each (cells / grid)."""
    rows = []
    for choice in resources.dataset_choices():
        cells, status = "-", "not evaluated"
        if default is not None:
            frame = resources.results(default.fingerprint, choice.fingerprint)
            done = len(views.cells_of(frame, metrics.MAIN_SCORE[choice.kind]))
            dims = views.default_grid_dims(default.num_layers, default.embedding_dim)
            planned = default.num_layers * len(dims)
            cells = f"{done}/{planned}"
            status = "not evaluated" if done == 0 else "evaluated" if done >= planned else "partial"
        rows.append(
            {
                "dataset": choice.name,
                "kind": choice.kind,
                "split": choice.split,
                "cells": cells,
                "status": status,
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "kind", "split", "cells", "status"])


def home() -> None:
    """The Home page."""
    state.init_page("home", {"message": None})
    st.title("Matryoshka Lab")
    st.markdown(INTRO)
    resources.session_factory()
    sidebar()
    records = resources.checkpoints()
    default = next((r for r in records if r.kind == "default"), None)

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
    st.dataframe(status_table(default), hide_index=True, key="home_status")

    builtin = {c.name: c.spec for c in resources.dataset_choices() if c.builtin and c.spec is not None}
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    options = list(builtin)
    state.bind_widget(
        "home_dataset", "dataset", options, "stsb-test" if "stsb-test" in builtin else options[0]
    )
    name = left.selectbox("Dataset to evaluate", options, key="home_dataset")
    state.publish("dataset", name)
    if right.button("Evaluate the default grid", key="home_evaluate", type="primary", width="stretch"):
        with errors.user_errors(f"evaluating default on {name}"):
            report = actions.evaluate_with_progress("default", builtin[name])
            st.session_state["home_message"] = (
                f"default on {name}: {report.computed} cells computed, {report.reused} already stored."
            )
            st.rerun()
    if st.session_state.get("home_message"):
        st.success(st.session_state["home_message"])
        nav.link(nav.EXPLORE, "Explore the grid", icon=":material/grid_on:")

    if records:
        st.subheader("Registered checkpoints")
        names = pickers.short_names(records)
        table = pd.DataFrame(
            [
                {
                    "name": names[r.fingerprint] if settings.read_only() else r.name,
                    "layers": r.num_layers,
                    "dims": r.embedding_dim,
                    "pooling": r.pooling,
                    "similarity": r.similarity,
                    "fingerprint": r.fingerprint[:12],
                }
                for r in records
            ]
        )
        st.dataframe(table, hide_index=True, key="home_checkpoints")


def main() -> None:
    """Navigation over Home and every page file."""
    # `streamlit run app.py -- --read-only` (or `./lab.sh start -- --read-only`) = MLAB_READ_ONLY=1:
    # process-wide and one-way, so every page and every core call sees it.
    if "--read-only" in sys.argv[1:]:
        os.environ["MLAB_READ_ONLY"] = "1"
    st.set_page_config(page_title="Matryoshka Lab", page_icon=":material/stacks:", layout="wide")
    home_page = st.Page(home, title="Home", icon=":material/home:", default=True)
    st.navigation([home_page, *nav.page_objects()]).run()


main()
