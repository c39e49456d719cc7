"""Widgets of the Home page: the sidebar that registers checkpoints and datasets, and the status table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from common import settings
from core import datasets, metrics, views
from core.lab import registry
from core.lab.queries import CheckpointRecord
from ui import actions, errors, pickers, resources


def register_sidebar() -> None:
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
    # No ``type=`` filter: Streamlit would refuse another file with only a red icon; the lab names the
    # file and the reason instead (wrong kind at once, bad content when registering).
    upload = side.file_uploader("... or upload an STS .tsv / zipped BEIR folder", key="home_upload")
    if upload is not None:
        with side, errors.user_errors():  # the messages name the file: "junk.tsv, line 1: not valid UTF-8"
            datasets.check_upload_name(upload.name)  # a wrong kind of file is named at once
            if side.button("Register upload", key="home_upload_go"):
                ds = actions.register_upload(upload.getvalue(), upload.name)
                side.success(f"Registered dataset {ds.name} ({ds.kind}, {ds.n_items} items)")
    side.caption(f"Results database: `{resources.safe_database_url()}`")


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


def checkpoints_table(records: list[CheckpointRecord]) -> pd.DataFrame:
    """Registered checkpoints: display name, then the full name (left out in read-only demo mode)."""
    names = pickers.short_names(records)
    rows = [
        {
            "display name": names[r.fingerprint],
            **({} if settings.read_only() else {"name": r.name}),
            "layers": r.num_layers,
            "dims": r.embedding_dim,
            "pooling": r.pooling,
            "similarity": r.similarity,
            "fingerprint": r.fingerprint[:12],
        }
        for r in records
    ]
    return pd.DataFrame(rows)


CHECKPOINT_COLUMNS = {
    "display name": st.column_config.TextColumn(
        "display name", help="The name every page, chart and export shows; rename it below."
    ),
    "name": st.column_config.TextColumn(
        "name",
        help="Folder, hub id or default: what links and `--checkpoint` use (a rename keeps them working).",
    ),
}


def rename_section(records: list[CheckpointRecord]) -> None:
    """Rename a checkpoint's display name (not in read-only demo mode); errors name the bad name."""
    if settings.read_only() or not records:
        return
    names = pickers.short_names(records)
    by_fp = {r.fingerprint: r for r in records}
    if message := st.session_state.pop("home_rename_message", None):
        st.success(message)
    with st.expander("Rename a checkpoint"):
        left, right = st.columns(2)
        fp = left.selectbox(
            "Checkpoint", list(by_fp), key="home_rename_checkpoint", format_func=lambda f: names[f],
            help=pickers.checkpoints_help(records),
        )  # fmt: skip
        alias = right.text_input(
            "New display name",
            key="home_rename_alias",
            max_chars=registry.ALIAS_MAX_LEN,
            help=f"1 to {registry.ALIAS_MAX_LEN} characters, unique; spaces at the ends are dropped.",
        )
        if st.button("Rename", key="home_rename_go"):
            with errors.user_errors(f"renaming {names[fp]}"):
                record = actions.rename_checkpoint(by_fp[fp], alias)
                st.session_state["home_rename_message"] = f"Renamed {names[fp]} to {record.alias}."
                st.rerun()
