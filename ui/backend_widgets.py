"""Deployment backends on the pages: pick one like the precision, see a cell's deviation from torch,
and export the selected sub-model as a zip.

Pages call three functions (a few lines each): :func:`picker` in the sidebar, :func:`deviation` beside
a selected cell, :func:`export_button` under it (hidden in read-only demo mode). Curves picks several
backends with :func:`multi_picker`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from common import settings
from core import backends, figures, views
from core.lab import export as lab_export
from ui import actions, errors, resources, state

HELP = (
    "What runs the encoder: torch (float32, the reference), torch-bf16 (CPU bfloat16 autocast), onnx "
    "(ONNX Runtime, float32) or onnx-int8 (int8 weights). Each backend's cells are stored apart."
)


def _stored(checkpoint_fps: Sequence[str], dataset_fp: str | None) -> set[str]:
    found: set[str] = set()
    for fp in checkpoint_fps:
        found.update(resources.stored_backends(fp, dataset_fp))
    return found


def picker(checkpoint_fps: Sequence[str], dataset_fp: str | None, key: str, where: Any = None) -> str:
    """A backend selectbox (every backend; those without stored results are marked so)."""
    stored = _stored(checkpoint_fps, dataset_fp)
    options = list(backends.BACKENDS)
    state.bind_widget(key, "backend", options, backends.DEFAULT_BACKEND)
    chosen = (where or st.sidebar).selectbox(
        "Backend",
        options,
        key=key,
        help=HELP,
        format_func=lambda b: b if b in stored or b == backends.DEFAULT_BACKEND else f"{b} (not evaluated)",
    )
    state.publish("backend", None if chosen == backends.DEFAULT_BACKEND else chosen)
    return str(chosen)


def multi_picker(checkpoint_fps: Sequence[str], dataset_fp: str | None, key: str) -> list[str]:
    """Backends to plot together (those with stored results; torch by default)."""
    stored = _stored(checkpoint_fps, dataset_fp)
    options = [b for b in backends.BACKENDS if b in stored] or [backends.DEFAULT_BACKEND]
    state.bind_multi(key, "backend", options, [backends.DEFAULT_BACKEND])
    return list(st.sidebar.multiselect("Backends", options, key=key, help=HELP))


def deviation(
    checkpoint_fp: str, dataset_fp: str, cell: tuple[int, int], metric: str, precision: str, backend: str
) -> None:
    """The cell's value on ``backend`` beside the torch reference, as a metric with its delta."""
    if backend == backends.DEFAULT_BACKEND:
        return
    frames = {b: resources.results(checkpoint_fp, dataset_fp, backend=b) for b in (backend, "torch")}
    values = {b: _value(frame, cell, metric, precision) for b, frame in frames.items()}
    if math.isnan(values["torch"]):
        st.caption(
            f"No torch reference of ({cell[0]}, {cell[1]}) at {precision} yet: evaluate it to see the delta."
        )
        return
    delta = values[backend] - values["torch"]
    st.metric(
        f"{figures.metric_label(metric)} on {backend} vs torch",
        f"{values[backend]:.4f}",
        delta=f"{delta:+.4f}",
        delta_color="off" if abs(delta) < 5e-5 else "normal",
        help=f"torch float32 reference: {values['torch']:.4f}. Deviations are measured, never hidden.",
    )
    both = frames[backend].merge(
        frames["torch"], on=["layer", "dim", "precision", "metric"], suffixes=("", "_torch")
    )
    both = both[(both["metric"] == metric) & (both["precision"] == precision)]
    if not both.empty:
        worst = (both["value"] - both["value_torch"]).abs().max()
        st.caption(f"Largest |{backend} - torch| over the {len(both)} cells evaluated on both: {worst:.4f}.")


def _value(frame: pd.DataFrame, cell: tuple[int, int], metric: str, precision: str) -> float:
    if frame.empty:
        return math.nan
    rows = frame[
        (frame["layer"] == cell[0])
        & (frame["dim"] == cell[1])
        & (frame["metric"] == metric)
        & (frame["precision"] == precision)
    ]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan


def export_button(checkpoint: str, cell: tuple[int, int], backend: str, key: str) -> None:
    """'Export this sub-model': writes and registers the folder, then offers it as a zip (not in read-only)."""
    if settings.read_only():
        return
    layer, dim = cell
    ready = st.session_state.get(f"{key}_zip")
    if ready is not None and ready[0] != (checkpoint, layer, dim, backend):
        ready = None
    if ready is None:
        if st.button(
            "Export this sub-model",
            key=key,
            icon=":material/package_2:",
            help=f"A standalone sentence-transformers folder of ({layer}, {dim}) for {backend}, with a model card.",
        ):
            with (
                errors.user_errors(f"exporting ({layer}, {dim}) of {checkpoint}"),
                st.spinner("Exporting ..."),
            ):
                name, data, _ = lab_export.export_zip(
                    checkpoint, layer, dim, backend, session_factory=resources.session_factory()
                )
                st.session_state[f"{key}_zip"] = ((checkpoint, layer, dim, backend), name, data)
                resources.bump()  # the exported folder is a registered checkpoint now
                st.rerun()
        return
    _, name, data = ready
    st.download_button(
        f"Download {name} ({len(data) / 2**20:.0f} MiB)",
        data,
        file_name=name,
        mime="application/zip",
        key=f"{key}_download",
        icon=":material/download:",
    )
    st.caption("Registered in the lab: it appears on every page as its own checkpoint.")


def curve_points(
    chosen: Sequence[Any],
    dataset_fp: str,
    metric: str,
    precisions: Sequence[str],
    backend_list: Sequence[str],
    names: dict[str, str],
    diagonals: dict[str, Any],
) -> pd.DataFrame:
    """Curve points of every chosen checkpoint on every chosen backend, with that backend's measured
    costs; a checkpoint is labelled ``name [backend]`` unless torch alone is shown, so each backend is
    its own line and every point competes on one Pareto front."""
    fps = [r.fingerprint for r in chosen]
    parts = []
    for backend in backend_list or [backends.DEFAULT_BACKEND]:
        frames = [resources.results(fp, dataset_fp, backend=backend) for fp in fps]
        frame = pd.concat([f for f in frames if not f.empty] or [frames[0]], ignore_index=True)
        if frame.empty:
            continue
        alone = list(backend_list) in ([], [backends.DEFAULT_BACKEND])
        labels = names if alone else {fp: f"{name} [{backend}]" for fp, name in names.items()}
        points = views.curve_points(
            frame.assign(checkpoint=frame["checkpoint_fp"].map(labels)), metric, diagonals, precisions
        )
        points = views.with_measured_costs(points, resources.measured_costs(fps, dataset_fp, backend=backend))
        parts.append(points.assign(backend=backend))
    if not parts:
        return views.curve_points(pd.DataFrame(), metric, diagonals, precisions).assign(
            backend=pd.Series(dtype=str)
        )
    return pd.concat(parts, ignore_index=True)


def measure_buttons(points: pd.DataFrame, chosen: Sequence[Any], names: dict[str, str], key: str) -> None:
    """'Measure latency' per shown backend, for the checkpoints whose points on it have no latency yet
    (each backend's costs are measured and stored apart; torch keeps the button ``key``)."""
    for backend in dict.fromkeys(points["backend"]) if "backend" in points else [backends.DEFAULT_BACKEND]:
        on = points[points["backend"] == backend] if "backend" in points else points
        lacking = set(views.unmeasured(on, "latency_ms_p50"))
        todo = [
            r
            for r in chosen
            if on.loc[on["checkpoint_fp"] == r.fingerprint, "checkpoint"].isin(lacking).any()
        ]
        suffix = "" if backend == backends.DEFAULT_BACKEND else f"_{backend}"
        actions.measure_button(todo, names, key + suffix, str(backend))


def export_choice(front: pd.DataFrame, loadable: dict[str, str], key: str) -> None:
    """Pick a sub-model of the Pareto front and export it (hidden in read-only demo mode)."""
    if settings.read_only() or front.empty:
        return
    rows = front.drop_duplicates(["checkpoint_fp", "layer", "dim", "backend"]).to_dict("records")
    labels = [f"{r['checkpoint']} ({int(r['layer'])}, {int(r['dim'])})" for r in rows]
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    index = left.selectbox(
        "Sub-model to export", range(len(rows)), key=f"{key}_pick", format_func=lambda i: labels[i]
    )
    row = rows[int(index or 0)]
    with right:
        export_button(
            loadable[row["checkpoint_fp"]], (int(row["layer"]), int(row["dim"])), str(row["backend"]), key
        )
