"""Plotly figures from the pandas tables of ``core/views.py``: heatmaps, line charts, cost curves.

Pure functions (DataFrame in, ``plotly.graph_objects.Figure`` out); they never read the database or
render. The pages pass the result to ``st.plotly_chart``; tests inspect the figure's traces and shapes.

Out of scope: computing the tables (core/views) and image export (plotly's toolbar does PNG).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from core.backends import DEFAULT_BACKEND
from core.views import Cell

PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
DIAGONAL_COLOR = "#ffffff"
SELECTED_COLOR = "#e4002b"
FRONT_COLOR = "#111111"
HEATMAP_HEIGHT = 380


def metric_label(metric: str) -> str:
    """``cosine_spearman`` -> ``cosine Spearman``, ``ndcg_at_10`` -> ``nDCG@10``."""
    special = {
        "cosine_spearman": "cosine Spearman",
        "cosine_pearson": "cosine Pearson",
        "ndcg_at_10": "nDCG@10",
        "mrr_at_10": "MRR@10",
        "recall_at_100": "recall@100",
        "map_at_100": "MAP@100",
    }
    return special.get(metric, metric.replace("_", " "))


def _cell_box(pivot: pd.DataFrame, cell: Cell, color: str, width: float, dash: str) -> dict | None:
    layer, dim = cell
    if layer not in pivot.index or dim not in pivot.columns:
        return None
    x = list(pivot.columns).index(dim)
    y = list(pivot.index).index(layer)
    return {
        "type": "rect",
        "xref": "x",
        "yref": "y",
        "x0": x - 0.5,
        "x1": x + 0.5,
        "y0": y - 0.5,
        "y1": y + 0.5,
        "line": {"color": color, "width": width, "dash": dash},
        "fillcolor": "rgba(0,0,0,0)",
    }


def _cell_text(pivot: pd.DataFrame, share: pd.DataFrame | None) -> list[list[str]]:
    text = []
    for layer in pivot.index:
        row = []
        for dim in pivot.columns:
            value = pivot.loc[layer, dim]
            if not np.isfinite(value):
                row.append("")
                continue
            part = f"{value:.3f}"
            if share is not None and np.isfinite(share.loc[layer, dim]):
                part += f"<br>{share.loc[layer, dim]:.0%}"
            row.append(part)
        text.append(row)
    return text


def grid_heatmap(
    pivot: pd.DataFrame,
    share: pd.DataFrame | None = None,
    *,
    metric: str = "",
    title: str = "",
    diagonal: Sequence[Cell] = (),
    selected: Cell | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = "Viridis",
    show_scale: bool = True,
) -> go.Figure:
    """Layers (y) x dims (x) heatmap with value and % of full in each cell.

    The diagonal cells get a dashed white outline, the selected cell a solid red one. Missing cells are
    blank. Axes are categorical, so rows and columns are evenly spaced whatever the dims are.
    """
    x = [str(d) for d in pivot.columns]
    y = [str(k) for k in pivot.index]
    z = pivot.to_numpy(dtype="float64")  # (layers, dims)
    share_z = share.to_numpy(dtype="float64") if share is not None else np.full_like(z, np.nan)
    hover = (
        "layer %{y}, dim %{x}<br>"
        + metric_label(metric)
        + " %{z:.4f}<br>%{customdata:.1%} of full<extra></extra>"
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            text=_cell_text(pivot, share),
            texttemplate="%{text}",
            customdata=share_z,
            hovertemplate=hover,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            showscale=show_scale,
            colorbar={"title": {"text": metric_label(metric)}, "thickness": 12},
            xgap=1,
            ygap=1,
        )
    )
    shapes = [_cell_box(pivot, c, DIAGONAL_COLOR, 2.5, "dash") for c in diagonal]
    if selected is not None:
        shapes.append(_cell_box(pivot, selected, SELECTED_COLOR, 4, "solid"))
    fig.update_layout(
        shapes=[s for s in shapes if s is not None],
        title={"text": title} if title else None,
        height=HEATMAP_HEIGHT,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        plot_bgcolor="#f0f0f0",
    )
    fig.update_xaxes(type="category", title_text="embedding dims")
    fig.update_yaxes(type="category", title_text="layers used")
    return fig


def chart_title(what: str, dataset: str, metric: str, precision: str | None = None) -> str:
    """A chart title that still says what it shows when pasted into a slide.

    >>> chart_title("default", "stsb-test", "cosine_spearman", "int8")
    'default: cosine Spearman on stsb-test (int8)'
    """
    return f"{what}: {metric_label(metric)} on {dataset}" + (f" ({precision})" if precision else "")


def precision_on(precision: str, backend: str = DEFAULT_BACKEND) -> str:
    """What a title says about the cells: ``int8``, or ``int8, onnx`` off the torch reference backend.

    >>> precision_on("int8"), precision_on("int8", "onnx")
    ('int8', 'int8, onnx')
    """
    return precision if backend == DEFAULT_BACKEND else f"{precision}, {backend}"


def signed(value: float, digits: int = 4) -> str:
    """``+0.0123`` / ``-0.0123``; a value that rounds to zero is ``0.0000``, never ``-0.0000``.

    >>> signed(-0.00001), signed(0.01234, 3), signed(-0.5, 2)
    ('0.0000', '+0.012', '-0.50')
    """
    if not np.isfinite(value):
        return ""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0.0 else text


def delta_heatmap(
    delta: pd.DataFrame,
    *,
    metric: str = "",
    title: str = "",
    marks: Mapping[Cell, str] | None = None,
) -> go.Figure:
    """B - A heatmap on a diverging scale centred at zero (red: B worse, blue: B better).

    ``marks`` appends a symbol to single cells, keyed by (layer, dim): the significance marks.
    """
    finite = delta.to_numpy(dtype="float64")
    bound = float(np.nanmax(np.abs(finite))) if np.isfinite(finite).any() else 1.0
    bound = bound or 1e-9
    marks = marks or {}
    text = [
        [
            (signed(v, 3) + (f" {marks[(int(k), int(d))]}" if (int(k), int(d)) in marks else ""))
            if np.isfinite(v)
            else ""
            for v, d in zip(row, delta.columns, strict=True)
        ]
        for row, k in zip(finite, delta.index, strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=finite,
            x=[str(d) for d in delta.columns],
            y=[str(k) for k in delta.index],
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0,
            zmin=-bound,
            zmax=bound,
            hovertemplate="layer %{y}, dim %{x}<br>delta %{z:+.4f}<extra></extra>",
            colorbar={"title": {"text": "delta " + metric_label(metric)}, "thickness": 12},
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        title={"text": title} if title else None,
        height=HEATMAP_HEIGHT,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        plot_bgcolor="#f0f0f0",
    )
    fig.update_xaxes(type="category", title_text="embedding dims")
    fig.update_yaxes(type="category", title_text="layers used")
    return fig


def _lines(pivot: pd.DataFrame, by: str, metric: str) -> go.Figure:
    """One line per layer (x: dims) when ``by == "layer"``, one per dim (x: layers) otherwise."""
    table = pivot if by == "layer" else pivot.T
    x_title = "embedding dims" if by == "layer" else "layers used"
    fig = go.Figure()
    for i, (key, row) in enumerate(table.iterrows()):
        fig.add_trace(
            go.Scatter(
                x=[int(c) for c in row.index],
                y=row.to_numpy(dtype="float64"),
                mode="lines+markers",
                name=f"{by} {key}",
                line={"color": PALETTE[i % len(PALETTE)]},
                connectgaps=False,
                hovertemplate=f"{by} {key}<br>%{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        height=340,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.25},
        xaxis_title=x_title,
        yaxis_title=metric_label(metric),
    )
    if by == "layer":
        fig.update_xaxes(type="log", tickvals=[int(c) for c in pivot.columns], tickformat="d")
    else:
        fig.update_xaxes(dtick=1)
    return fig


def metric_vs_dim(pivot: pd.DataFrame, metric: str = "") -> go.Figure:
    """The metric against dims (log2-spaced axis), one line per layer."""
    return _lines(pivot, "layer", metric)


def metric_vs_layer(pivot: pd.DataFrame, metric: str = "") -> go.Figure:
    """The metric against layers used, one line per dim."""
    return _lines(pivot, "dim", metric)


def cost_curve(
    points: pd.DataFrame,
    x: str,
    *,
    x_label: str = "",
    metric: str = "",
    front: pd.Series | None = None,
    log_x: bool = False,
    title: str = "",
) -> go.Figure:
    """Accuracy vs cost: per checkpoint its grid as points and its diagonal as a line; Pareto front.

    ``points`` as built by ``views.curve_points`` (columns checkpoint, layer, dim, precision, value,
    ``x`` and on_diagonal); ``front`` a boolean Series on the same index.
    """
    fig = go.Figure()
    x_label = x_label or x.replace("_", " ")
    hover = (
        "<b>%{customdata[0]}</b><br>layer %{customdata[1]}, dim %{customdata[2]} (%{customdata[3]})<br>"
        + metric_label(metric)
        + " %{y:.4f}<br>"
        + x_label
        + " %{x:,}<extra></extra>"
    )

    def custom(frame: pd.DataFrame) -> np.ndarray:
        return frame[["checkpoint", "layer", "dim", "precision"]].to_numpy(dtype=object)

    for i, (name, group) in enumerate(points.groupby("checkpoint", sort=True)):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=group[x],
                y=group["value"],
                mode="markers",
                name=f"{name}: grid",
                legendgroup=str(name),
                marker={"color": color, "size": 7, "opacity": 0.45},
                customdata=custom(group),
                hovertemplate=hover,
            )
        )
        diagonal = group[group["on_diagonal"].astype(bool)].sort_values([x, "value"])
        if len(diagonal):
            fig.add_trace(
                go.Scatter(
                    x=diagonal[x],
                    y=diagonal["value"],
                    mode="lines+markers",
                    name=f"{name}: diagonal",
                    legendgroup=str(name),
                    line={"color": color, "width": 2.5},
                    marker={"color": color, "size": 9},
                    customdata=custom(diagonal),
                    hovertemplate=hover,
                )
            )
    if front is not None and front.any():
        best = points[front.reindex(points.index, fill_value=False)].sort_values([x, "value"])
        fig.add_trace(
            go.Scatter(
                x=best[x],
                y=best["value"],
                mode="lines+markers",
                name="Pareto front",
                line={"color": FRONT_COLOR, "width": 1.5, "dash": "dot", "shape": "hv"},
                marker={"symbol": "circle-open", "size": 15, "color": FRONT_COLOR, "line": {"width": 2}},
                customdata=custom(best),
                hovertemplate=hover,
            )
        )
    fig.update_layout(
        height=480,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title=x_label,
        yaxis_title=metric_label(metric),
        legend={"orientation": "h", "y": -0.2},
        hovermode="closest",
    )
    if log_x:
        values = pd.to_numeric(points[x], errors="coerce")
        ticks = log_ticks(float(values[values > 0].min()), float(values.max())) if (values > 0).any() else []
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:,g}" for t in ticks])
    if title:
        fig.update_layout(title={"text": title}, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def log_ticks(low: float, high: float) -> list[float]:
    """Readable ticks for a log axis from ``low`` to ``high``: 1-2-5 steps per decade (all of them when
    the range is narrower than a decade), never plotly's bare "2 3 4 5 ... 1000 2 3" minor labels.

    >>> log_ticks(24, 1536)
    [20, 50, 100, 200, 500, 1000, 2000]
    >>> log_ticks(3.2, 14.5)
    [3, 4, 5, 6, 7, 8, 9, 10, 20]
    """
    if not (low > 0 and high > 0):
        return []
    steps = (1, 2, 5) if high / low >= 10 else (1, 2, 3, 4, 5, 6, 7, 8, 9)
    ticks: list[float] = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for step in steps:
            tick = step * 10.0**exponent
            ticks.append(int(tick) if tick >= 1 else tick)
    inside = [t for t in ticks if low <= t <= high]
    below = [t for t in ticks if t < low][-1:]
    above = [t for t in ticks if t > high][:1]
    return below + inside + above


def color_range(pivots: Sequence[pd.DataFrame]) -> tuple[float, float]:
    """One (min, max) over several grids, so their heatmaps share a colour scale."""
    values = np.concatenate([p.to_numpy(dtype="float64").ravel() for p in pivots]) if pivots else np.array([])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 1.0)
    low, high = float(values.min()), float(values.max())
    if math.isclose(low, high):
        low, high = low - 0.01, high + 0.01
    return (low, high)


REFERENCE_COLORS: tuple[str, ...] = tuple(qualitative.Dark2)  # the paper's methods, apart from PALETTE
REFERENCE_SYMBOLS: tuple[str, ...] = (
    "diamond-open",
    "square-open",
    "triangle-up-open",
    "x-thin-open",
    "star-open",
)


def add_reference_overlay(fig: go.Figure, points: pd.DataFrame, *, label: str = "paper") -> go.Figure:
    """Add published reference points (``core.reference.overlay_points``) as dashed lines, one colour and
    marker per method (distinct from the checkpoints' solid lines).

    ``points`` has columns method, size, layers, dim, x, value; the figure is changed in place and returned.
    """
    for i, (method, group) in enumerate(points.groupby("method", sort=False)):
        group = group.sort_values("x")
        fig.add_trace(
            go.Scatter(
                x=group["x"],
                y=group["value"],
                mode="lines+markers",
                name=f"{label}: {method}",
                legendgroup=f"{label}: {method}",
                line={"color": REFERENCE_COLORS[i % len(REFERENCE_COLORS)], "width": 1.5, "dash": "dash"},
                marker={
                    "symbol": REFERENCE_SYMBOLS[i % len(REFERENCE_SYMBOLS)],
                    "size": 9,
                    "color": REFERENCE_COLORS[i % len(REFERENCE_COLORS)],
                },
                customdata=group[["size", "layers", "dim"]].to_numpy(dtype=object),
                hovertemplate=(
                    f"<b>{label}: {method}</b><br>%{{customdata[0]}} (%{{customdata[1]}}, %{{customdata[2]}})"
                    "<br>%{y:.4f}<extra></extra>"
                ),
            )
        )
    return fig


REFERENCE_MODEL_COLOR = "#444444"


def short_model_name(model: str) -> str:
    """``BAAI/bge-small-en-v1.5`` -> ``bge-small-en-v1.5`` (the label beside a point)."""
    return model.rsplit("/", 1)[-1]


LABEL_POSITIONS: tuple[str, ...] = ("top center", "bottom center", "middle right", "middle left", "top right",
                                    "bottom right", "top left", "bottom left")  # fmt: skip


def _label_positions(points: pd.DataFrame) -> list[str]:
    """Text positions that alternate among points sharing an x (many published models have 384 dims)."""
    rank = points.groupby("x").cumcount() if len(points) else pd.Series(dtype=int)
    return [LABEL_POSITIONS[int(r) % len(LABEL_POSITIONS)] for r in rank]


def add_reference_models(fig: go.Figure, points: pd.DataFrame, *, label: str = "MTEB published") -> go.Figure:
    """Add published reference models (``core.mteb.reference_points``) as labelled points, one trace.

    ``points`` has columns model, revision, x, value (and embed_dim, n_parameters for the hover); each
    point is a grey star labelled with the model's short name. The figure is changed in place and returned.
    """
    if points.empty:
        return fig
    revisions = [r if r == "external" else r[:7] for r in points["revision"]]
    fig.add_trace(
        go.Scatter(
            x=points["x"],
            y=points["value"],
            mode="markers+text",
            name=label,
            text=[short_model_name(m) for m in points["model"]],
            textposition=_label_positions(points),
            textfont={"size": 10, "color": REFERENCE_MODEL_COLOR},
            marker={"symbol": "star", "size": 11, "color": REFERENCE_MODEL_COLOR},
            customdata=np.column_stack(
                [points["model"].to_numpy(dtype=object), np.asarray(revisions, dtype=object)]
            ),
            hovertemplate="<b>%{customdata[0]}</b> (%{customdata[1]})<br>x %{x:,}<br>%{y:.4f}<extra>"
            + label
            + "</extra>",
        )
    )
    return fig


def training_loss_figure(losses: Sequence[float], *, window: int = 20, title: str = "") -> go.Figure:
    """Per-step training loss (thin line) and its trailing mean over ``window`` steps (thick line).

    >>> [len(t.y) for t in training_loss_figure([3.0, 2.0, 1.0], window=2).data]
    [3, 3]
    """
    steps = np.arange(1, len(losses) + 1)
    values = np.asarray(losses, dtype=np.float64)
    smooth = pd.Series(values).rolling(max(1, window), min_periods=1).mean().to_numpy()
    fig = go.Figure(
        [
            go.Scatter(
                x=steps,
                y=values,
                mode="lines",
                name="loss",
                line={"color": PALETTE[0], "width": 1},
                opacity=0.45,
                hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>",
            ),
            go.Scatter(
                x=steps,
                y=smooth,
                mode="lines",
                name=f"mean of last {window}",
                line={"color": PALETTE[0], "width": 3},
                hovertemplate="step %{x}<br>mean %{y:.4f}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        title=title or None,
        xaxis_title="step",
        yaxis_title="training loss",
        height=320,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        legend={"orientation": "h"},
    )
    return fig
