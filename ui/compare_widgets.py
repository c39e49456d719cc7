"""Widgets of the Compare page: the heatmaps on one colour scale, missing cells, the A/B pickers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from core import figures, views
from ui import state

Cell = tuple[int, int]


def heatmaps(
    pivots: Mapping[str, pd.DataFrame],
    diagonals: Mapping[str, Sequence[Cell]],
    dataset: str,
    metric: str,
    precision: str,
) -> tuple[float, float]:
    """Every grid side by side (2 or 3 per row) on one colour scale; returns that scale."""
    zmin, zmax = figures.color_range(list(pivots.values()))
    items = list(pivots.items())
    per_row = 2 if len(items) in (2, 4) else 3
    for start in range(0, len(items), per_row):
        columns = st.columns(per_row)
        for column, (name, pivot) in zip(columns, items[start : start + per_row], strict=False):
            fig = figures.grid_heatmap(
                pivot,
                metric=metric,
                title=figures.chart_title(name, dataset, metric, precision),
                diagonal=diagonals[name],
                zmin=zmin,
                zmax=zmax,
            )
            column.plotly_chart(fig, key=f"compare_heatmap_{start}_{name}", config={"displaylogo": False})
    return zmin, zmax


def missing_captions(cells: Mapping[str, set[Cell]]) -> set[Cell]:
    """Caption the cells each grid lacks that the others have; returns the cells shared by all."""
    shared, missing = views.shared_cells(cells)
    for name, lacking in missing.items():
        if lacking:
            shown = ", ".join(f"({k}, {d})" for k, d in lacking[:12]) + (" ..." if len(lacking) > 12 else "")
            st.caption(f"**{name}** lacks {len(lacking)} cells the others have: {shown}")
    return set(shared)


def pick_a_b(names: Sequence[str]) -> tuple[str, str]:
    """The A (baseline) and B pickers of the difference sections."""
    left, right = st.columns(2)
    state.bind_widget("compare_a", None, names, names[0])
    state.bind_widget("compare_b", None, names, names[1])
    return str(left.selectbox("A (baseline)", names, key="compare_a")), str(
        right.selectbox("B", names, key="compare_b")
    )
