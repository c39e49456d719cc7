"""Widgets of the Home page: the sidebar that registers checkpoints and datasets, and the status table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from common import settings
from core import metrics, views
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
    upload = side.file_uploader(
        "... or upload an STS .tsv / zipped BEIR folder", type=["tsv", "zip"], key="home_upload"
    )
    if upload is not None and side.button("Register upload", key="home_upload_go"):
        with side, errors.user_errors(f"upload {upload.name!r}"):
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
    """Registered checkpoints (short names instead of paths in read-only demo mode)."""
    names = pickers.short_names(records)
    return pd.DataFrame(
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
