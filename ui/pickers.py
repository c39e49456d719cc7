"""Pickers bound to the shared state: checkpoint(s), dataset, metric, precision.

Each takes the widget key the page owns (``explore_checkpoint``) and a container (default: the
sidebar), seeds the widget from the shared value (``ui.state``), and publishes the choice back to the
shared key and the URL. A checkpoint is referred to (in the URL and the widget state) by its stable name,
or by a fingerprint prefix when two registered checkpoints share a name, and shown by its display name
(``core.lab.registry.display_name``: editable on Home, so a rename never breaks a shared link); the
widgets' help tooltip gives the full name and path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from core import figures, metrics, submodels
from core.lab import registry
from core.lab.queries import CheckpointRecord
from ui import state
from ui.resources import DatasetChoice

FP_REF_LEN = 12


def checkpoint_refs(records: Sequence[CheckpointRecord]) -> dict[str, CheckpointRecord]:
    """Ref -> record (``default`` first): the name when unique, else the fingerprint prefix."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.name] = counts.get(r.name, 0) + 1
    ordered = sorted(records, key=lambda r: r.kind != "default")  # stable: keeps the name order otherwise
    return {(r.name if counts[r.name] == 1 else r.fingerprint[:FP_REF_LEN]): r for r in ordered}


def checkpoint_label(record: CheckpointRecord, short: str | None = None) -> str:
    """``default (6 x 384)``: the display name (``short`` when given) and the shape."""
    return f"{short or registry.display_name(record)} ({record.num_layers} x {record.embedding_dim})"


def checkpoints_help(records: Sequence[CheckpointRecord], intro: str = "") -> str:
    """A widget tooltip naming what each display name stands for (full name, path, fingerprint)."""
    names = short_names(records)
    lines = [f"- **{names[r.fingerprint]}**: `{registry.full_name(r)}`" for r in records]
    return "\n".join(([intro, ""] if intro else []) + lines + ["", "Rename checkpoints on Home."])


def _container(where: Any) -> Any:
    return st.sidebar if where is None else where


def checkpoint(
    records: Sequence[CheckpointRecord], key: str, where: Any = None, label: str = "Checkpoint"
) -> CheckpointRecord:
    """A single checkpoint (default: the shared one, else ``default``, else the first)."""
    refs = checkpoint_refs(records)
    options = list(refs)
    fallback = "default" if "default" in refs else options[0]
    state.bind_widget(key, "checkpoint", options, fallback, "no registered checkpoint has this name")
    names = short_names(records)
    chosen = _container(where).selectbox(
        label,
        options,
        key=key,
        format_func=lambda r: checkpoint_label(refs[r], names[refs[r].fingerprint]),
        help=checkpoints_help(list(refs.values())),
    )
    state.publish("checkpoint", chosen)
    return refs[chosen]


def checkpoints(
    records: Sequence[CheckpointRecord],
    key: str,
    default: Sequence[str],
    where: Any = None,
    label: str = "Checkpoints",
) -> list[CheckpointRecord]:
    """Several checkpoints (shared as the comma list ``checkpoints``; the first also as ``checkpoint``)."""
    refs = checkpoint_refs(records)
    options = list(refs)
    state.bind_multi(key, "checkpoints", options, default, "no registered checkpoint has this name")
    names = short_names(records)
    chosen = _container(where).multiselect(
        label,
        options,
        key=key,
        format_func=lambda r: checkpoint_label(refs[r], names[refs[r].fingerprint]),
        help=checkpoints_help(list(refs.values())),
    )
    state.publish("checkpoints", list(chosen))
    if chosen:
        state.publish("checkpoint", chosen[0])
    return [refs[r] for r in chosen]


def dataset(choices: Sequence[DatasetChoice], key: str, where: Any = None) -> DatasetChoice:
    """A dataset (default: the shared one, else ``stsb-test``, else the first)."""
    by_name = {c.name: c for c in choices}
    options = list(by_name)
    fallback = "stsb-test" if "stsb-test" in by_name else options[0]
    state.bind_widget(key, "dataset", options, fallback, "no built-in or registered dataset has this name")
    chosen = _container(where).selectbox("Dataset", options, key=key, format_func=lambda n: by_name[n].label)
    state.publish("dataset", chosen)
    return by_name[chosen]


def metric_options(kind: str, frame: pd.DataFrame) -> list[str]:
    """Metrics of a dataset kind that are stored (all of the kind when none is), then any other stored."""
    stored = set(frame["metric"]) if len(frame) else set()
    known = list(metrics.METRICS.get(kind, ()))
    options = [m for m in known if m in stored] or known
    return options + sorted(stored - set(options))


def metric(kind: str, frame: pd.DataFrame, key: str, where: Any = None) -> str:
    """A metric of the dataset's kind (stored ones first; default: the main score)."""
    options = metric_options(kind, frame)
    state.bind_widget(key, "metric", options, metrics.MAIN_SCORE.get(kind, options[0]),
                      f"not a metric of {kind} datasets ({', '.join(options)})")  # fmt: skip
    chosen = _container(where).selectbox("Metric", options, key=key, format_func=figures.metric_label)
    state.publish("metric", chosen)
    return str(chosen)


def precision(frame: pd.DataFrame, key: str, where: Any = None) -> str:
    """A precision among the stored ones (float32 when only that is stored: shown, not a choice)."""
    stored = set(frame["precision"]) if len(frame) else set()
    options = [p for p in submodels.PRECISIONS if p in stored] or ["float32"]
    known = "is not stored here" if precision_known(state.get("precision")) else "is not a precision"
    state.bind_widget(key, "precision", options, "float32" if "float32" in options else options[0],
                      f"it {known} (stored: {', '.join(options)})")  # fmt: skip
    chosen = _container(where).selectbox(
        "Precision",
        options,
        key=key,
        disabled=len(options) == 1,
        help="Evaluate other precisions (int8, binary, ...) to compare them here.",
    )
    state.publish("precision", chosen)
    return str(chosen)


def display_name(record: CheckpointRecord) -> str:
    """One checkpoint's display name (``core.lab.registry.display_name``)."""
    return registry.display_name(record)


def precision_known(value: object) -> bool:
    """True for one of the lab's precisions (float32, float16, int8, binary, ...)."""
    return value in submodels.PRECISIONS


def short_names(records: Sequence[CheckpointRecord]) -> dict[str, str]:
    """Fingerprint -> unique display name (``core.lab.registry.display_names``)."""
    return registry.display_names(records)
