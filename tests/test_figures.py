"""core/figures.py on small frames: traces, texts, shapes and scales are what the tables say."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import figures, views


def pivot(cells: dict[tuple[int, int], float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {"layer": k, "dim": d, "precision": "float32", "metric": "m", "value": v}
            for (k, d), v in cells.items()
        ]
    )
    return views.grid_pivot(frame, "m")


GRID = pivot({(1, 32): 0.2, (1, 64): 0.3, (2, 32): 0.4, (2, 64): 0.8, (3, 32): 0.5})  # (3, 64) missing


def test_grid_heatmap_values_texts_and_axes():
    share = views.share_of_full(GRID, 0.8)
    fig = figures.grid_heatmap(GRID, share, metric="cosine_spearman")
    heat = fig.data[0]
    assert list(heat.x) == ["32", "64"] and list(heat.y) == ["1", "2", "3"]
    np.testing.assert_array_equal(np.asarray(heat.z, dtype=float), GRID.to_numpy())
    assert heat.text[0][0] == "0.200<br>25%" and heat.text[1][1] == "0.800<br>100%"
    assert heat.text[2][1] == ""  # a missing cell is blank
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert "cosine Spearman" in heat.hovertemplate


def test_grid_heatmap_outlines_the_diagonal_and_the_selected_cell():
    fig = figures.grid_heatmap(GRID, diagonal=[(1, 32), (2, 64), (9, 999)], selected=(3, 32))
    shapes = fig.layout.shapes
    assert len(shapes) == 3  # the off-grid diagonal pair is skipped
    diagonal = [(s.x0, s.y0) for s in shapes if s.line.dash == "dash"]
    assert diagonal == [(-0.5, -0.5), (0.5, 0.5)]  # (layer 1, dim 32) and (layer 2, dim 64)
    selected = [s for s in shapes if s.line.color == figures.SELECTED_COLOR]
    assert [(s.x0, s.x1, s.y0, s.y1) for s in selected] == [(-0.5, 0.5, 1.5, 2.5)]


def test_grid_heatmap_shared_colour_scale():
    other = pivot({(1, 32): 0.9, (1, 64): 0.1})
    low, high = figures.color_range([GRID, other])
    assert (low, high) == (0.1, 0.9)
    fig = figures.grid_heatmap(GRID, zmin=low, zmax=high, show_scale=False)
    assert fig.data[0].zmin == 0.1 and fig.data[0].zmax == 0.9 and fig.data[0].showscale is False
    assert figures.color_range([pivot({(1, 32): 0.5})]) == pytest.approx((0.49, 0.51))
    assert figures.color_range([]) == (0.0, 1.0)


def test_delta_heatmap_is_diverging_and_symmetric():
    delta = views.delta_pivot(GRID, pivot({(1, 32): 0.1, (1, 64): 0.6, (2, 32): 0.4}))
    fig = figures.delta_heatmap(delta, metric="m")
    heat = fig.data[0]
    assert heat.zmid == 0 and heat.zmin == pytest.approx(-0.3) and heat.zmax == pytest.approx(0.3)
    assert [list(row) for row in heat.text] == [["-0.100", "+0.300"], ["0.000", ""]]  # zero is unsigned


def test_line_charts_one_trace_per_layer_or_dim():
    by_dim = figures.metric_vs_dim(GRID, "m")
    assert [t.name for t in by_dim.data] == ["layer 1", "layer 2", "layer 3"]
    assert list(by_dim.data[1].x) == [32, 64] and list(by_dim.data[1].y) == [0.4, 0.8]
    assert math.isnan(by_dim.data[2].y[1])
    by_layer = figures.metric_vs_layer(GRID, "m")
    assert [t.name for t in by_layer.data] == ["dim 32", "dim 64"]
    assert list(by_layer.data[0].x) == [1, 2, 3] and list(by_layer.data[0].y) == [0.2, 0.4, 0.5]


def curve_frame() -> pd.DataFrame:
    rows = []
    for name, scale in (("a", 1.0), ("b", 0.5)):
        for (k, d), v in {(1, 32): 0.2, (1, 64): 0.3, (2, 32): 0.4, (2, 64): 0.8}.items():
            rows.append(
                {"checkpoint": name, "checkpoint_fp": f"fp-{name}", "layer": k, "dim": d, "precision": "float32",
                 "metric": "m", "value": v * scale}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_cost_curve_traces_front_and_hover():
    pts = views.curve_points(curve_frame(), "m", {"fp-a": [(1, 32), (2, 64)], "fp-b": [(1, 32), (2, 64)]})
    front = views.pareto_front(pts, "bytes_per_vector")
    fig = figures.cost_curve(
        pts, "bytes_per_vector", x_label="bytes per vector", metric="m", front=front, log_x=True
    )
    names = [t.name for t in fig.data]
    assert names == ["a: grid", "a: diagonal", "b: grid", "b: diagonal", "Pareto front"]
    diagonal_a = fig.data[1]
    assert list(diagonal_a.x) == [128, 256] and list(diagonal_a.y) == [0.2, 0.8]
    pareto = fig.data[-1]
    # a's (2, 32) at 128 bytes scores 0.4, a's (2, 64) at 256 bytes scores 0.8: the whole front
    assert list(pareto.x) == [128, 256] and list(pareto.y) == [0.4, 0.8]
    assert [tuple(c) for c in pareto.customdata] == [("a", 2, 32, "float32"), ("a", 2, 64, "float32")]
    assert "bytes per vector" in pareto.hovertemplate and fig.layout.xaxis.type == "log"


def test_cost_curve_without_front_or_diagonal():
    pts = views.curve_points(curve_frame(), "m", {})
    fig = figures.cost_curve(pts, "layers_used", metric="m")
    assert [t.name for t in fig.data] == ["a: grid", "b: grid"]
    assert fig.layout.xaxis.title.text == "layers used" and fig.layout.xaxis.type is None


def test_metric_labels():
    assert figures.metric_label("ndcg_at_10") == "nDCG@10"
    assert figures.metric_label("latency_ms") == "latency ms"
