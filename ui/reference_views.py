"""Reference models (published MTEB results) on the pages: Curves points, Compare's nearest models, Home's list.

Logic lives in ``core.mteb`` (points, nearest in size, the model table, the metadata rule) and
``core.lab.mteb`` (the stored scores); this module only reads them (cached like ``ui.resources``) and
renders. The shipped results are imported on first use, outside the cached reads (a write).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from common import settings
from core import figures, mteb, views
from core.lab import mteb as lab_mteb
from ui import resources

# Curves x axis -> the reference models' x (float32 bytes, embed dim, parameters)
CURVES_X: dict[str, str] = {"dim": "dim", "bytes_per_vector": "bytes_per_vector", "params": "params"}
LAB_TASKS = tuple(t.task for t in mteb.TASKS.values() if t.dataset)
SOURCE_NOTE = (
    "Published MTEB results (embeddings-benchmark/results; `python -m core references` lists each score "
    "with its file and sha256)."
)


@st.cache_data(ttl=resources.TTL_S, max_entries=8, show_spinner=False)
def _scores(url: str, gen: int) -> pd.DataFrame:
    return lab_mteb.references(resources.session_factory(), tasks=LAB_TASKS, split="test", subset="default")


@st.cache_data(ttl=resources.TTL_S, max_entries=8, show_spinner=False)
def _summaries(url: str, gen: int) -> pd.DataFrame:
    return lab_mteb.model_summaries(resources.session_factory())


@st.cache_data(ttl=resources.TTL_S, max_entries=8, show_spinner=False)
def _conflicts(url: str, gen: int) -> list[mteb.MetaConflict]:
    return lab_mteb.meta_conflicts(resources.session_factory())


def scores() -> pd.DataFrame:
    """Stored reference scores of the tasks the lab has datasets for (test split, default subset)."""
    factory = resources.session_factory()
    if lab_mteb.ensure_shipped(factory) is not None:
        resources.bump()
    return _scores(settings.database_url(), resources.generation())


def conflicts(models: set[str] | None = None) -> list[mteb.MetaConflict]:
    """Metadata disagreements (of ``models`` only, when given)."""
    found = _conflicts(settings.database_url(), resources.generation())
    return [c for c in found if models is None or c.model in models]


def _conflict_captions(models: set[str]) -> None:
    for conflict in conflicts(models):
        st.caption(f":material/warning: Metadata conflict: {conflict.describe()} (the value most meta files "
                   "state; a tie goes to the `external` folder's).")  # fmt: skip


def curves_overlay(fig: go.Figure, dataset: str, metric: str, x: str) -> None:
    """Curves: published reference models as labelled points on ``fig`` (on by default where there are any)."""
    info = mteb.task_for_dataset(dataset)
    if info is None:
        return
    if not st.toggle("MTEB reference models", value=True, key="curves_mteb"):
        return
    if x not in CURVES_X:
        st.caption("Reference models can be placed by embedding dims, bytes per vector or parameters used.")
        return
    points = mteb.reference_points(scores(), dataset, metric, CURVES_X[x])
    if points.empty:
        st.caption(f"No published {figures.metric_label(metric)} on MTEB's {info.task} is stored.")
        return
    figures.add_reference_models(fig, points)
    what = {"dim": "embedding dims", "bytes_per_vector": "float32 bytes (4 x dims)", "params": "parameters"}[
        x
    ]
    st.caption(
        f"Stars: {len(points)} published models on MTEB's {info.task} (x: their {what}). {SOURCE_NOTE}"
    )
    if info.caveat:
        st.warning(f"{info.task} vs {dataset}: {info.caveat}", icon=":material/warning:")
    _conflict_captions(set(points["model"]))


def nearest_table(table: views.DiagonalTable, dataset: str, metric: str, k: int = 2) -> None:
    """Compare: on request, the ``k`` reference models nearest in embedding dims to each diagonal size."""
    info = mteb.task_for_dataset(dataset)
    if info is None or not st.toggle("Add the nearest MTEB reference models", key="compare_mteb"):
        return
    points = mteb.reference_points(scores(), dataset, metric, "dim")
    if points.empty:
        st.caption(f"No published {figures.metric_label(metric)} on MTEB's {info.task} is stored.")
        return
    labels = [str(label) for label in table.table.index[:-1]]
    first = next(iter(table.pairs.values()))
    sizes = {label: dim for label, (_, dim) in zip(labels, first, strict=False)}
    near = mteb.nearest_references(points, sizes, k=k)
    ours = table.table.drop(index="mean", errors="ignore")
    near = near.join(ours, on="size").rename(columns={"x": "dims", "value": f"published {metric}"})
    st.dataframe(near, hide_index=True, key="compare_mteb_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in near.columns if c not in ("size", "model", "dims")})  # fmt: skip
    st.caption(f"Per size, the {k} published models whose embedding dims are nearest (log scale), beside this "
               f"table's sub-models at that size. {SOURCE_NOTE}")  # fmt: skip
    if info.caveat:
        st.warning(f"{info.task} vs {dataset}: {info.caveat}", icon=":material/warning:")
    _conflict_captions(set(near["model"]))


def home_section() -> None:
    """Home: the stored reference models, their size and STSBenchmark score, and any metadata conflict."""
    frame = scores()  # first: imports the shipped folder on first use
    table = mteb.models_table(_summaries(settings.database_url(), resources.generation()), frame)
    st.subheader("Reference models (published MTEB results)")
    if table.empty:
        st.caption("None stored. Import some with `python -m core import-mteb PATH`.")
        return
    st.dataframe(table, hide_index=True, key="home_references",
                 column_config={"STSBenchmark": st.column_config.NumberColumn(format="%.4f")})  # fmt: skip
    st.caption(f"{len(table)} models; Curves and Compare place them beside your sub-models. Import more with "
               f"`python -m core import-mteb PATH`. {SOURCE_NOTE}")  # fmt: skip
    _conflict_captions(set(table["model"]))
