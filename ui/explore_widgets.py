"""Widgets of the Explore page: the (layers, dims) selection and the selected cell's numbers.

The selection lives in one page key, ``explore_cell`` = (layer, dim), kept across page visits; the
slider widgets (``explore_layer``, ``explore_dim_snap`` / ``explore_dim_free``) are seeded from it
before they are drawn (Streamlit drops a widget's state on pages that do not draw it). A shared link's
``?layer=&dim=`` seeds it once per session; the URL then follows the selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core import figures, views
from core.lab.queries import CheckpointRecord
from ui import actions, pickers, resources, state

CELL = "explore_cell"


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(low, int(value)), high)


def cell_picker(
    num_layers: int, width: int, dims: Sequence[int], default: tuple[int, int]
) -> tuple[int, int]:
    """Layer slider and dim slider (snapped to evaluated ``dims``, or any dim); returns (layer, dim)."""
    saved = st.session_state.get(CELL)
    if saved is None:  # first visit: a shared link, else the default cell
        saved = (
            state.url_int("layer", 1, num_layers) or default[0],
            state.url_int("dim", 1, width) or default[1],
        )
    layer, dim = _clamp(st.session_state.get("explore_layer") or saved[0], 1, num_layers), saved[1]
    st.session_state["explore_layer"] = layer
    layer = st.slider("Layers used", 1, num_layers, key="explore_layer") if num_layers > 1 else 1
    if st.toggle("Any dim (not only evaluated ones)", key="explore_free_dim"):
        st.session_state["explore_dim_free"] = _clamp(
            st.session_state.get("explore_dim_free") or dim, 1, width
        )
        dim = st.slider("Embedding dims", 1, width, key="explore_dim_free")
    else:
        st.session_state["explore_dim_snap"] = views.nearest(
            st.session_state.get("explore_dim_snap") or dim, dims
        )
        dim = (
            st.select_slider("Embedding dims", options=list(dims), key="explore_dim_snap")
            if len(dims) > 1
            else dims[0]
        )
    cell = (int(layer), int(dim))
    st.session_state[CELL] = cell
    state.show_in_url("layer", cell[0])
    state.show_in_url("dim", cell[1])
    return cell


def cell_panel(
    frame: pd.DataFrame, cell: tuple[int, int], full: tuple[int, int], kind: str, metric: str, precision: str
) -> None:
    """The selected cell's metric, share of the full model, layers used, bytes, and its table of metrics."""
    summary = views.cell_summary(frame, cell, full, precision, pickers.metric_options(kind, frame))
    value, share = summary.value(metric), summary.share(metric)
    top = st.columns(2)
    top[0].metric(figures.metric_label(metric), "n/a" if math.isnan(value) else f"{value:.4f}")
    top[1].metric("Share of full model", "n/a" if math.isnan(share) else f"{share:.1%}")
    bottom = st.columns(2)
    bottom[0].metric("Layers used", f"{cell[0]} / {full[0]}")
    bottom[1].metric(
        "Bytes per vector",
        f"{summary.bytes_per_vector:,}",
        help=f"{cell[1]} dims at {precision}; the full model stores {summary.full_bytes_per_vector:,} bytes.",
    )
    st.dataframe(
        summary.table.assign(metric=summary.table["metric"].map(figures.metric_label)).rename(
            columns={"share": "share of full"}
        ),
        hide_index=True,
        key="explore_cell_table",
        column_config={
            "metric": st.column_config.TextColumn("metric"),
            "value": st.column_config.NumberColumn(f"({cell[0]}, {cell[1]})", format="%.4f"),
            "full": st.column_config.NumberColumn(f"full ({full[0]}, {full[1]}) float32", format="%.4f"),
            "share of full": st.column_config.NumberColumn(format="percent"),
        },
    )


def latency_panel(record: CheckpointRecord, layer: int, backend: str = "torch") -> None:
    """The selected layer's measured encoding latency on ``backend``, or a "Measure latency" button."""
    costs = resources.measured_costs([record.fingerprint], backend=backend)
    rows = None if costs is None or "latency_ms_p50" not in costs else costs[costs["layer"] == layer]
    if rows is None or rows.empty or rows["latency_ms_p50"].isna().all():
        actions.measure_button(
            [record], {record.fingerprint: pickers.display_name(record)}, "explore_measure", backend
        )
        return
    p50, p95 = float(rows["latency_ms_p50"].iloc[0]), float(rows["latency_ms_p95"].iloc[0])
    st.metric(
        f"Encoding latency, {layer} layers" + ("" if backend == "torch" else f", {backend}"),
        f"{p50:.1f} ms",
        help=f"median of timed single queries of 32 tokens after a warm-up (p95 {p95:.1f} ms), by a copy "
        f"truncated to these layers running on {backend}; measured on this machine (`python -m core cost "
        "--backend ...` or Measure latency)",
    )
