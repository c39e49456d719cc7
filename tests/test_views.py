"""core/views.py on small hand-made frames: every expected value below is worked out by hand."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core import views


def results(
    cells: dict[tuple[int, int], float], metric: str = "m", precision: str = "float32", name: str = "a"
):
    """A long results frame like ``repository.results_frame`` for one checkpoint."""
    return pd.DataFrame(
        [
            {
                "checkpoint": name,
                "checkpoint_fp": f"fp-{name}",
                "dataset": "d",
                "dataset_fp": "fp-d",
                "split": "test",
                "layer": k,
                "dim": d,
                "precision": precision,
                "metric": metric,
                "value": v,
                "run_id": 1,
            }
            for (k, d), v in cells.items()
        ]
    )


GRID = {(1, 32): 0.2, (1, 64): 0.3, (2, 32): 0.4, (2, 64): 0.8}


def test_default_grid_dims_adds_the_diagonal_dims():
    assert views.default_grid_dims(6, 384) == [32, 64, 128, 192, 256, 384]
    assert views.default_grid_dims(12, 768) == [32, 64, 128, 256, 512, 768]


def test_grid_pivot_places_values_and_leaves_missing_cells_nan():
    frame = pd.concat(
        [
            results({(2, 64): 0.8, (1, 32): 0.2, (2, 32): 0.4}),
            results({(1, 64): 0.99}, metric="other"),
            results({(1, 64): 0.77}, precision="int8"),
        ]
    )
    pivot = views.grid_pivot(frame, "m")
    assert list(pivot.index) == [1, 2] and list(pivot.columns) == [32, 64]
    assert pivot.loc[2, 64] == 0.8 and pivot.loc[1, 32] == 0.2 and pivot.loc[2, 32] == 0.4
    assert math.isnan(pivot.loc[1, 64])  # stored only for another metric / precision
    assert views.grid_pivot(frame, "m", "int8").loc[1, 64] == 0.77
    assert views.grid_pivot(frame, "absent").empty


def test_share_of_full_divides_by_the_full_value():
    pivot = views.grid_pivot(results(GRID), "m")
    share = views.share_of_full(pivot, 0.8)
    assert share.loc[1, 32] == pytest.approx(0.25)
    assert share.loc[2, 64] == pytest.approx(1.0)
    assert views.share_of_full(pivot, 0.0).isna().all().all()  # no share of a zero score
    assert views.share_of_full(pivot, math.nan).isna().all().all()


def test_missing_cells_and_nearest():
    frame = results({(1, 32): 0.2, (2, 64): math.nan})  # a stored NaN counts as evaluated
    planned = [(k, d) for k in (1, 2) for d in (32, 64)]
    assert views.missing_cells(frame, "m", planned) == [(1, 64), (2, 32)]
    assert views.nearest(100, [32, 64, 128]) == 128
    assert views.nearest(96, [32, 64, 128]) == 64  # a tie snaps to the smaller
    assert views.nearest(5, [32]) == 32
    with pytest.raises(ValueError):
        views.nearest(1, [])


def test_cell_summary_values_share_and_cost():
    frame = pd.concat([results(GRID), results({(1, 32): 0.1, (2, 64): 0.5}, metric="n")])
    summary = views.cell_summary(frame, (1, 32), (2, 64), metrics=["m", "n"])
    assert summary.value("m") == 0.2 and summary.share("m") == pytest.approx(0.25)
    assert summary.value("n") == 0.1 and summary.share("n") == pytest.approx(0.2)
    assert list(summary.table["full"]) == [0.8, 0.5]
    assert summary.bytes_per_vector == 4 * 32 and summary.full_bytes_per_vector == 4 * 64
    int8 = views.cell_summary(results({(1, 32): 0.1}, precision="int8"), (1, 32), (2, 64), "int8", ["m"])
    assert int8.bytes_per_vector == 32
    assert math.isnan(int8.share("m"))  # the full float32 cell is not stored


def test_shared_cells_of_checkpoints_with_different_shapes():
    shared, missing = views.shared_cells(
        {"deep": {(1, 32), (2, 32), (3, 32)}, "wide": {(1, 32), (1, 64), (2, 32), (2, 64)}}
    )
    assert shared == [(1, 32), (2, 32)]
    assert missing == {"deep": [(1, 64), (2, 64)], "wide": [(3, 32)]}
    assert views.shared_cells({}) == ([], {})


def test_delta_pivot_is_b_minus_a_on_shared_cells():
    a = views.grid_pivot(results({(1, 32): 0.5, (2, 32): 0.6, (3, 32): 0.7}), "m")
    b = views.grid_pivot(results({(1, 32): 0.25, (1, 64): 0.9, (2, 32): 0.75}), "m")
    delta = views.delta_pivot(a, b)
    assert list(delta.index) == [1, 2] and list(delta.columns) == [32]
    assert delta.loc[1, 32] == pytest.approx(-0.25) and delta.loc[2, 32] == pytest.approx(0.15)


def test_diagonal_table_same_shape_labels_mean_and_ties():
    pairs = [(1, 32), (2, 64)]
    pivots = {
        "a": views.grid_pivot(results({(1, 32): 0.5, (2, 64): 0.9}), "m"),
        "b": views.grid_pivot(results({(1, 32): 0.5, (2, 64): 0.7}), "m"),
    }
    table = views.diagonal_table(pivots, {"a": pairs, "b": pairs})
    assert list(table.table.index) == ["(1, 32)", "(2, 64)", "mean"]
    assert table.table.loc["mean", "a"] == pytest.approx(0.7) and table.table.loc[
        "mean", "b"
    ] == pytest.approx(0.6)
    assert table.best == {"(1, 32)": ["a", "b"], "(2, 64)": ["a"], "mean": ["a"]}


def test_diagonal_table_different_shapes_missing_cells_and_extra_columns():
    pivots = {
        "deep": views.grid_pivot(results({(2, 32): 0.4, (4, 64): 0.6}), "m"),
        "small": views.grid_pivot(results({(1, 32): 0.5}), "m"),  # its (2, 48) pair is not stored
    }
    extra = pd.DataFrame({"paper": [0.99, 0.98]}, index=["size 1", "size 2"])
    table = views.diagonal_table(pivots, {"deep": [(2, 32), (4, 64)], "small": [(1, 32), (2, 48)]}, extra)
    assert list(table.table.index) == ["size 1", "size 2", "mean"]
    assert table.table.loc["size 1", "small"] == 0.5 and math.isnan(table.table.loc["size 2", "small"])
    # the mean covers the sizes every checkpoint has: size 1 only
    assert table.table.loc["mean", "deep"] == pytest.approx(0.4)
    assert table.best["size 1"] == ["small"] and table.best["size 2"] == ["deep"]
    assert list(table.table.columns) == ["deep", "small", "paper"]  # extra columns join, never "best"
    assert table.pairs["small"] == [(1, 32), (2, 48)]
    html = views.style_best(table.table, table.best).to_html()
    assert html.count("font-weight: bold") >= 1 and "0.5000" in html


def points(rows: list[tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cost", "value"])


def test_pareto_front_hand_made_points():
    # (cost, quality): a staircase with a dominated point under it
    p = points([(1, 0.5), (2, 0.7), (2, 0.6), (3, 0.7), (4, 0.9), (3.5, 0.4)])
    assert views.pareto_front(p, "cost").tolist() == [True, True, False, False, True, False]


def test_pareto_front_ties_duplicates_single_and_nan():
    # exact duplicates of a front point are both on it; duplicates of a dominated point both off
    p = points([(1, 0.5), (1, 0.5), (2, 0.4), (2, 0.4), (3, 0.8)])
    assert views.pareto_front(p, "cost").tolist() == [True, True, False, False, True]
    assert views.pareto_front(points([(7, 0.1)]), "cost").tolist() == [True]
    with_nan = points([(1, math.nan), (2, 0.5), (math.nan, 0.9)])
    assert views.pareto_front(with_nan, "cost").tolist() == [False, True, False]
    assert views.pareto_front(points([]), "cost").tolist() == []


def test_pareto_front_when_a_higher_cost_column_is_better():
    p = points([(100, 0.5), (50, 0.7), (100, 0.6)])  # e.g. throughput: higher is cheaper
    assert views.pareto_front(p, "cost", cost_lower_is_better=False).tolist() == [False, True, True]


def test_pareto_front_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    p = points(
        [
            (float(c), float(q))
            for c, q in zip(rng.integers(0, 8, 60), rng.integers(0, 8, 60) / 8, strict=True)
        ]
    )
    front = views.pareto_front(p, "cost")
    for i, row in p.iterrows():
        dominated = any(
            (o.cost <= row.cost and o.value >= row.value and (o.cost < row.cost or o.value > row.value))
            for j, o in p.iterrows()
            if j != i
        )
        assert front[i] == (not dominated), (i, row.cost, row.value)


def test_curve_points_costs_and_diagonal_flags():
    frame = pd.concat([results(GRID), results({(1, 32): 0.15}, precision="binary")])
    pts = views.curve_points(frame, "m", {"fp-a": [(1, 32), (2, 64)]}, ["float32", "binary"])
    assert len(pts) == 5
    row = pts[(pts.layer == 1) & (pts.dim == 32) & (pts.precision == "binary")].iloc[0]
    assert row.bytes_per_vector == 4 and row.layers_used == 1 and bool(row.on_diagonal)
    full = pts[(pts.layer == 2) & (pts.dim == 64)].iloc[0]
    assert full.bytes_per_vector == 256 and bool(full.on_diagonal)
    assert not pts[(pts.layer == 1) & (pts.dim == 64)].iloc[0].on_diagonal
    assert views.curve_points(frame, "absent", {}).empty


def test_measured_costs_join_and_become_axes():
    pts = views.curve_points(results(GRID), "m", {})
    assert [a.column for a in views.cost_axes(pts)] == ["layers_used", "dim", "bytes_per_vector"]
    measured = pd.DataFrame(
        {"checkpoint_fp": ["fp-a", "fp-a"], "layer": [1, 2], "latency_ms_p50": [1.5, 3.0]}
    )
    joined = views.with_measured_costs(pts, measured)
    assert joined.set_index(["layer", "dim"]).loc[(2, 32), "latency_ms_p50"] == 3.0
    assert "latency_ms_p50" in [a.column for a in views.cost_axes(joined)]
    assert views.with_measured_costs(pts, None) is pts
    with pytest.raises(ValueError, match="key column"):
        views.with_measured_costs(pts, pd.DataFrame({"latency_ms_p50": [1.0]}))


def test_runs_table_cells_and_durations():
    start = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    done = SimpleNamespace(
        id=1, checkpoint_fp="fp", checkpoint_name="/x/model", dataset_name="d", kind="evaluate",
        status="completed", cells_done=30, cells_total=30, started_at=start, ended_at=start, wall_time_s=12.34,
    )  # fmt: skip
    running = SimpleNamespace(
        id=2, checkpoint_fp="fp", checkpoint_name="/x/model", dataset_name=None, kind="evaluate",
        status="running", cells_done=3, cells_total=12, started_at=start, ended_at=None, wall_time_s=None,
    )  # fmt: skip
    table = views.runs_table([done, running], now=start + timedelta(seconds=90), names={"fp": "model"})
    assert table["done"].tolist() == ["30/30 cells", "3/12 cells"]
    assert table["progress"].tolist() == [1.0, 0.25]
    assert table["duration_s"].tolist() == [12.3, 90.0]
    assert table["checkpoint"].tolist() == ["model", "model"] and table["dataset"].tolist() == ["d", ""]
    assert table["started"].iloc[0] == "2025-01-01 12:00 UTC"


def test_export_csv_and_json_round_trip_with_nan():
    frame = results({(1, 32): 0.25, (2, 64): math.nan})
    rows = json.loads(views.export_json(frame))
    assert rows[0]["value"] == 0.25 and rows[1]["value"] is None and rows[1]["layer"] == 2
    assert set(rows[0]) == set(views.EXPORT_COLUMNS)
    back = pd.read_csv(StringIO(views.export_csv(frame)))
    assert back["value"].iloc[0] == 0.25 and math.isnan(back["value"].iloc[1])
