"""Pure table builders for the pages: results frame in, small DataFrames and dataclasses out.

Every function takes the long results frame of ``storage.repository.results_frame`` (columns
checkpoint, checkpoint_fp, dataset, dataset_fp, split, layer, dim, precision, metric, value, run_id)
or a table made from it, and never renders, reads files or touches the database. The pages and
``core/figures.py`` draw what these return.

- grid: ``grid_pivot`` (layers x dims), ``share_of_full``, ``missing_cells``, ``cell_summary``;
- comparing checkpoints: ``shared_cells``, ``delta_pivot``, ``diagonal_table`` (Starbucks-style);
- accuracy vs cost: ``curve_points``, ``cost_axes`` (built-in and measured cost columns),
  ``with_measured_costs``, ``pareto_front``;
- runs: ``runs_table``, ``export_csv``, ``export_json``.

Out of scope: significance tests and per-query views (they read per-item scores), drawing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core import quantize, submodels

Cell = tuple[int, int]  # (layer, dim)


# ------------------------------------------------------------------------------------------- grid


default_grid_dims = submodels.default_grid_dims  # the one definition lives with the engine


def metric_rows(frame: pd.DataFrame, metric: str, precision: str = "float32") -> pd.DataFrame:
    """Rows of one metric at one precision."""
    if frame.empty:
        return frame
    return frame[(frame["metric"] == metric) & (frame["precision"] == precision)]


def grid_pivot(frame: pd.DataFrame, metric: str, precision: str = "float32") -> pd.DataFrame:
    """Layers (rows, ascending) x dims (columns, ascending) of one metric; absent cells are NaN.

    >>> f = pd.DataFrame({"layer": [1, 2], "dim": [32, 32], "precision": "float32",
    ...                   "metric": "m", "value": [0.5, 0.7]})
    >>> grid_pivot(f, "m").loc[2, 32]
    np.float64(0.7)
    """
    rows = metric_rows(frame, metric, precision)
    if rows.empty:
        return pd.DataFrame(dtype="float64")
    pivot = rows.pivot_table(index="layer", columns="dim", values="value", aggfunc="first", dropna=False)
    pivot = pivot.sort_index().sort_index(axis=1).astype("float64")
    pivot.index.name, pivot.columns.name = "layer", "dim"
    return pivot


def cell_value(frame: pd.DataFrame, metric: str, cell: Cell, precision: str = "float32") -> float:
    """The stored value of one cell (NaN when absent or stored as NaN)."""
    rows = metric_rows(frame, metric, precision)
    hit = rows[(rows["layer"] == cell[0]) & (rows["dim"] == cell[1])]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def share_of_full(pivot: pd.DataFrame, full_value: float) -> pd.DataFrame:
    """Each cell as a fraction of the full model's value (NaN when the full value is 0 or unknown)."""
    if not np.isfinite(full_value) or full_value == 0:
        return pivot * math.nan
    return pivot / full_value


def missing_cells(
    frame: pd.DataFrame, metric: str, cells: Iterable[Cell], precision: str = "float32"
) -> list[Cell]:
    """Cells of ``cells`` with no stored row for ``metric`` (a stored NaN counts as present)."""
    rows = metric_rows(frame, metric, precision)
    present = (
        set(zip(rows["layer"].astype(int), rows["dim"].astype(int), strict=True)) if len(rows) else set()
    )
    return sorted({(int(k), int(d)) for k, d in cells} - present)


def nearest(value: int, options: Sequence[int]) -> int:
    """The option closest to ``value`` (the smaller one on a tie): snaps a knob to the evaluated list."""
    if not options:
        raise ValueError("no options to snap to")
    return min(options, key=lambda o: (abs(o - value), o))


@dataclass(frozen=True)
class CellSummary:
    """One sub-model: every metric beside the full model's, and what it costs."""

    layer: int
    dim: int
    precision: str
    table: pd.DataFrame  # columns metric, value, full, share
    num_layers: int
    width: int
    bytes_per_vector: int
    full_bytes_per_vector: int

    def value(self, metric: str) -> float:
        """The cell's value of ``metric`` (NaN when absent)."""
        hit = self.table[self.table["metric"] == metric]
        return float(hit["value"].iloc[0]) if len(hit) else math.nan

    def share(self, metric: str) -> float:
        """The cell's ``metric`` as a fraction of the full model's."""
        hit = self.table[self.table["metric"] == metric]
        return float(hit["share"].iloc[0]) if len(hit) else math.nan


def cell_summary(
    frame: pd.DataFrame,
    cell: Cell,
    full: Cell,
    precision: str = "float32",
    metrics: Sequence[str] | None = None,
) -> CellSummary:
    """Every metric of ``cell`` with the full model's value (``full`` at float32) and the share of it."""
    layer, dim = cell
    names = list(metrics) if metrics is not None else sorted(set(frame["metric"])) if len(frame) else []
    rows = []
    for name in names:
        value = cell_value(frame, name, cell, precision)
        full_value = cell_value(frame, name, full, "float32")
        share = value / full_value if np.isfinite(full_value) and full_value != 0 else math.nan
        rows.append({"metric": name, "value": value, "full": full_value, "share": share})
    table = pd.DataFrame(rows, columns=["metric", "value", "full", "share"])
    return CellSummary(
        layer=layer,
        dim=dim,
        precision=precision,
        table=table,
        num_layers=full[0],
        width=full[1],
        bytes_per_vector=quantize.bytes_per_vector(dim, precision),
        full_bytes_per_vector=quantize.bytes_per_vector(full[1], "float32"),
    )


# ---------------------------------------------------------------------------------- comparing


def cells_of(frame: pd.DataFrame, metric: str, precision: str = "float32") -> set[Cell]:
    """The (layer, dim) cells with a stored ``metric``."""
    rows = metric_rows(frame, metric, precision)
    if rows.empty:
        return set()
    return set(zip(rows["layer"].astype(int), rows["dim"].astype(int), strict=True))


def shared_cells(cells_by_checkpoint: Mapping[str, set[Cell]]) -> tuple[list[Cell], dict[str, list[Cell]]]:
    """Cells every checkpoint has, and per checkpoint the cells some other one has but it lacks.

    >>> shared, missing = shared_cells({"a": {(1, 32), (2, 32)}, "b": {(1, 32)}})
    >>> shared, missing
    ([(1, 32)], {'a': [], 'b': [(2, 32)]})
    """
    if not cells_by_checkpoint:
        return [], {}
    sets = list(cells_by_checkpoint.values())
    shared = set.intersection(*sets)
    union = set.union(*sets)
    missing = {name: sorted(union - cells) for name, cells in cells_by_checkpoint.items()}
    return sorted(shared), missing


def delta_pivot(pivot_a: pd.DataFrame, pivot_b: pd.DataFrame) -> pd.DataFrame:
    """B - A on the layers and dims both grids have (cells missing in either stay NaN)."""
    layers = [k for k in pivot_a.index if k in pivot_b.index]
    dims = [d for d in pivot_a.columns if d in pivot_b.columns]
    delta = pivot_b.loc[layers, dims] - pivot_a.loc[layers, dims]
    delta.index.name, delta.columns.name = "layer", "dim"
    return delta.astype("float64")


@dataclass(frozen=True)
class DiagonalTable:
    """Per-size table along the Starbucks diagonal.

    ``table``: rows are sizes (small to full) then ``mean``; columns are checkpoints (then any extra
    columns). ``best``: per row label, the checkpoint columns holding the row's highest value.
    ``pairs``: per checkpoint, its (layer, dim) pair of each size row.
    """

    table: pd.DataFrame
    best: dict[str, list[str]]
    pairs: dict[str, list[Cell]]


def _size_labels(pairs_by_checkpoint: Mapping[str, Sequence[Cell]], steps: int) -> list[str]:
    """ "(layer, dim)" when every checkpoint uses the same pairs, else "size 1", "size 2", ..."""
    distinct = {tuple((int(k), int(d)) for k, d in pairs) for pairs in pairs_by_checkpoint.values()}
    if len(distinct) == 1:
        return [f"({k}, {d})" for k, d in next(iter(distinct))]
    return [f"size {i + 1}" for i in range(steps)]


def diagonal_table(
    pivots: Mapping[str, pd.DataFrame],
    pairs: Mapping[str, Sequence[Cell]],
    extra: pd.DataFrame | None = None,
) -> DiagonalTable:
    """Rows: diagonal sizes (labelled "(layer, dim)" when every checkpoint uses the same pairs, else
    "size i"); columns: checkpoints; a ``mean`` row over sizes where every checkpoint has a value.

    ``extra`` (e.g. a paper's published numbers) is indexed by the same size labels and appended as
    columns; it does not take part in ``best``.
    """
    steps = max((len(p) for p in pairs.values()), default=0)
    labels = _size_labels(pairs, steps)
    table = pd.DataFrame(index=pd.Index(labels, name="size"), dtype="float64")
    for name, pivot in pivots.items():
        values = []
        for i in range(steps):
            own = pairs.get(name, [])
            if i >= len(own):
                values.append(math.nan)
                continue
            layer, dim = own[i]
            has = layer in pivot.index and dim in pivot.columns
            values.append(float(pivot.loc[layer, dim]) if has else math.nan)
        table[name] = values
    complete = table.dropna()
    mean = complete.mean() if len(complete) else table.mean() * math.nan
    table.loc["mean"] = mean
    best: dict[str, list[str]] = {}
    for label, row in table[list(pivots)].iterrows():
        finite = row.dropna()
        if finite.empty:
            best[str(label)] = []
            continue
        top = finite.max()
        best[str(label)] = [str(c) for c, v in finite.items() if v == top]
    if extra is not None and not extra.empty:
        table = table.join(extra, how="left")
    return DiagonalTable(
        table=table, best=best, pairs={k: [(int(p[0]), int(p[1])) for p in v] for k, v in pairs.items()}
    )


# ------------------------------------------------------------------------------ accuracy vs cost


@dataclass(frozen=True)
class CostAxis:
    """A column usable as the x axis of accuracy-vs-cost curves."""

    column: str
    label: str
    lower_is_better: bool = True
    measured: bool = False


BUILTIN_COST_AXES: tuple[CostAxis, ...] = (
    CostAxis("layers_used", "layers used"),
    CostAxis("dim", "embedding dims"),
    CostAxis("bytes_per_vector", "bytes per vector"),
)
# Measured costs (core/cost) merged into the points by ``with_measured_costs`` appear when present.
MEASURED_COST_AXES: tuple[CostAxis, ...] = (
    CostAxis("latency_ms_p50", "latency p50 (ms)", measured=True),
    CostAxis("latency_ms_p95", "latency p95 (ms)", measured=True),
    CostAxis("throughput_per_s", "throughput (sentences/s)", lower_is_better=False, measured=True),
    CostAxis("flops_per_token", "FLOPs per token", measured=True),
    CostAxis("params", "parameters used", measured=True),
    CostAxis("index_bytes", "index bytes", measured=True),
    CostAxis("search_ms_per_query", "exact search time per query (ms)", measured=True),
)
POINT_COLUMNS: tuple[str, ...] = (
    "checkpoint",
    "checkpoint_fp",
    "layer",
    "dim",
    "precision",
    "value",
    "layers_used",
    "bytes_per_vector",
    "on_diagonal",
)


def curve_points(
    frame: pd.DataFrame,
    metric: str,
    diagonals: Mapping[str, Sequence[Cell]],
    precisions: Sequence[str] = ("float32",),
) -> pd.DataFrame:
    """One row per (checkpoint, layer, dim, precision) with the metric and the built-in cost columns.

    ``diagonals`` maps checkpoint fingerprints to their Starbucks pairs (``on_diagonal`` marks them).
    """
    rows = (
        frame[(frame["metric"] == metric) & frame["precision"].isin(list(precisions))]
        if len(frame)
        else frame
    )
    if rows.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    points = rows[["checkpoint", "checkpoint_fp", "layer", "dim", "precision", "value"]].copy()
    points["layer"] = points["layer"].astype(int)
    points["dim"] = points["dim"].astype(int)
    points["layers_used"] = points["layer"]
    points["bytes_per_vector"] = [
        quantize.bytes_per_vector(int(d), str(p))
        for d, p in zip(points["dim"], points["precision"], strict=True)
    ]
    diagonal_keys = {(fp, int(k), int(d)) for fp, pairs in diagonals.items() for k, d in pairs}
    points["on_diagonal"] = [
        (fp, int(k), int(d)) in diagonal_keys
        for fp, k, d in zip(points["checkpoint_fp"], points["layer"], points["dim"], strict=True)
    ]
    return points.sort_values(["checkpoint", "precision", "layer", "dim"]).reset_index(drop=True)


def with_measured_costs(points: pd.DataFrame, measured: pd.DataFrame | None) -> pd.DataFrame:
    """Left-join measured cost columns onto the points, on the key columns both frames share.

    ``measured`` has some of checkpoint_fp, layer, dim, precision as keys (latency is per layer; index
    bytes per dim and precision) and any of the ``MEASURED_COST_AXES`` columns.
    """
    if measured is None or measured.empty or points.empty:
        return points
    keys = [k for k in ("checkpoint_fp", "layer", "dim", "precision") if k in measured.columns]
    if not keys:
        raise ValueError("measured costs need at least one key column (checkpoint_fp, layer, dim, precision)")
    wanted = [a.column for a in MEASURED_COST_AXES if a.column in measured.columns]
    right = measured[keys + wanted].drop_duplicates(subset=keys, keep="last")
    return points.drop(columns=[c for c in wanted if c in points.columns]).merge(right, on=keys, how="left")


def unmeasured(points: pd.DataFrame, column: str) -> list[str]:
    """Checkpoints (``checkpoint`` names) none of whose points has a value in the cost ``column``.

    >>> p = pd.DataFrame({"checkpoint": ["a", "a", "b"], "latency_ms_p50": [1.0, 2.0, float("nan")]})
    >>> unmeasured(p, "latency_ms_p50"), unmeasured(p.drop(columns="latency_ms_p50"), "latency_ms_p50")
    (['b'], ['a', 'b'])
    """
    names = list(dict.fromkeys(points["checkpoint"]))
    if column not in points.columns:
        return names
    has = points.groupby("checkpoint", sort=False)[column].apply(lambda v: bool(v.notna().any()))
    return [n for n in names if not has.get(n, False)]


def cost_axes(points: pd.DataFrame) -> list[CostAxis]:
    """The cost columns the points offer: built-in ones, then measured ones with any value."""
    axes = [a for a in BUILTIN_COST_AXES if a.column in points.columns]
    for axis in MEASURED_COST_AXES:
        if axis.column in points.columns and points[axis.column].notna().any():
            axes.append(axis)
    return axes


def pareto_front(
    points: pd.DataFrame,
    cost: str,
    quality: str = "value",
    cost_lower_is_better: bool = True,
) -> pd.Series:
    """True for points no other point beats: cost no worse and quality no lower, one strictly better.

    Exact duplicates of a front point are on the front too; a point with the same cost and a lower
    quality, or the same quality at a higher cost, is not. NaN quality or cost is never on the front.

    >>> p = pd.DataFrame({"c": [1, 2, 2, 3], "value": [0.5, 0.7, 0.6, 0.7]})
    >>> pareto_front(p, "c").tolist()
    [True, True, False, False]
    """
    on_front = pd.Series(False, index=points.index, dtype=bool)
    if points.empty:
        return on_front
    valid = points[[cost, quality]].apply(pd.to_numeric, errors="coerce").dropna()
    if valid.empty:
        return on_front
    costs = valid[cost] if cost_lower_is_better else -valid[cost]
    best = -math.inf
    for c in sorted(set(costs)):
        group = valid.loc[costs[costs == c].index, quality]
        top = float(group.max())
        if top > best:
            on_front.loc[group[group == top].index] = True
            best = top
    return on_front


# ------------------------------------------------------------------------------------------ runs


RUN_TABLE_COLUMNS: tuple[str, ...] = (
    "id",
    "checkpoint",
    "dataset",
    "kind",
    "status",
    "done",
    "progress",
    "started",
    "duration_s",
)


def _duration(record: Any, now: datetime | None) -> float:
    if getattr(record, "wall_time_s", None) is not None:
        return float(record.wall_time_s)
    if record.status == "running" and now is not None:
        return max(0.0, (now - record.started_at).total_seconds())
    ended = getattr(record, "ended_at", None)
    return (ended - record.started_at).total_seconds() if ended is not None else math.nan


RUN_UNITS = {"evaluate": "cells", "cost": "measurements", "train": "steps"}


def run_done(kind: str, done: int, total: int) -> str:
    """How far a run got, in its own unit.

    >>> run_done("train", 34, 120), run_done("evaluate", 3, 12)
    ('34/120 steps', '3/12 cells')
    """
    return f"{done}/{total} {RUN_UNITS.get(kind, 'items')}"


def run_title(kind: str, checkpoint: str, dataset: str | None) -> str:
    """What a run did, in words (no `` on -`` when it had no dataset).

    >>> run_title("cost", "default", None), run_title("evaluate", "sb-120", "stsb-test")
    ('cost of default', 'evaluation of sb-120 on stsb-test')
    >>> run_title("train", "sb-120", "stsb-train")
    'training of sb-120 on stsb-train'
    """
    what = {"evaluate": "evaluation", "cost": "cost", "train": "training"}.get(kind, kind)
    return f"{what} of {checkpoint}" + (f" on {dataset}" if dataset else "")


def runs_table(
    records: Sequence[Any], now: datetime | None = None, names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per run (``RunRecord``-like objects): status, done (``34/120 steps``), start and duration.

    ``names`` maps checkpoint fingerprints to display names (default: the stored checkpoint name);
    a running run's duration counts up to ``now``.
    """
    names = names or {}
    rows = [
        {
            "id": int(r.id),
            "checkpoint": names.get(r.checkpoint_fp, r.checkpoint_name),
            "dataset": r.dataset_name or "",
            "kind": r.kind,
            "status": r.status,
            "done": run_done(r.kind, r.cells_done, r.cells_total),
            "progress": (r.cells_done / r.cells_total) if r.cells_total else 0.0,
            "started": r.started_at.strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(_duration(r, now), 1),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(RUN_TABLE_COLUMNS))


EXPORT_COLUMNS: tuple[str, ...] = (
    "checkpoint",
    "dataset",
    "split",
    "layer",
    "dim",
    "precision",
    "metric",
    "value",
    "run_id",
    "checkpoint_fp",
    "dataset_fp",
)


def export_csv(frame: pd.DataFrame) -> str:
    """Results as CSV text (the columns of ``EXPORT_COLUMNS`` that are present; NaN as empty)."""
    columns = [c for c in EXPORT_COLUMNS if c in frame.columns]
    return frame[columns].to_csv(index=False)


def export_json(frame: pd.DataFrame) -> str:
    """Results as a JSON list of objects (NaN as null), keys as in ``python -m core results``."""
    columns = [c for c in EXPORT_COLUMNS if c in frame.columns]
    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict(orient="records")
    return json.dumps(
        [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in records], indent=1
    )


def style_best(
    table: pd.DataFrame,
    best: Mapping[str, Sequence[str]],
    digits: int = 4,
    marks: Mapping[tuple[str, str], str] | None = None,
) -> Any:
    """A pandas Styler of ``table``: numbers to ``digits`` places, missing as "-", each row's best bold.

    ``marks`` appends a symbol to single cells, keyed by (row label, column), e.g. a significance mark
    from ``core.lab.insight.significance_marks``.
    """

    def bold(row: pd.Series) -> list[str]:
        winners = set(best.get(str(row.name), ()))
        return ["font-weight: bold" if col in winners else "" for col in row.index]

    styler = table.style.apply(bold, axis=1).format(f"{{:.{digits}f}}", na_rep="-")
    for (row, column), mark in (marks or {}).items():
        if row in table.index and column in table.columns:
            styler = styler.format(
                lambda v, m=mark: f"{v:.{digits}f} {m}", subset=([row], [column]), na_rep="-"
            )
    return styler
