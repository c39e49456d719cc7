"""Cached resources and reads: the session factory (``st.cache_resource``) and bounded ``st.cache_data``
reads of checkpoints, datasets, runs and results, all through ``core.lab.queries`` (the UI never
imports ``storage``). Cached functions only read; the one write a page visit makes (settling runs
whose process died) happens outside the cache, in :func:`runs`.

Every cached read is keyed by the database URL and a write generation: after any write made from the
app (``bump()``), the next read sees it at once; writes by another process (the CLI) show up within
``TTL_S`` seconds. Returned values are copies (frozen records, DataFrames), safe to use anywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import datasets
from core.lab import queries
from core.lab.queries import CheckpointRecord, RunRecord
from core.lab.store import open_store
from ui import errors

TTL_S = 30
_generation = 0


def bump() -> None:
    """Invalidate the cached reads after a write (evaluate, register, delete)."""
    global _generation
    _generation += 1


def generation() -> int:
    """The current write generation (part of every cached read's key)."""
    return _generation


@st.cache_resource(show_spinner=False)
def _factory(url: str) -> sessionmaker[Session]:
    return open_store(url)


def session_factory() -> sessionmaker[Session]:
    """The migrated database's session factory; on a broken database the page shows why and stops."""
    url = settings.database_url()
    try:
        return _factory(url)
    except Exception as exc:
        errors.show(exc, f"cannot open the results database {queries.safe_url(url)}")
        st.stop()
        raise  # unreachable: st.stop raises


# ------------------------------------------------------------------------------ cached reads


@st.cache_data(ttl=TTL_S, max_entries=8, show_spinner=False)
def _checkpoints(url: str, gen: int) -> list[CheckpointRecord]:
    return queries.checkpoints(_factory(url))


def checkpoints() -> list[CheckpointRecord]:
    """Every registered checkpoint."""
    session_factory()
    return _checkpoints(settings.database_url(), _generation)


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False)
def _results(
    url: str, gen: int, checkpoint_fp: str | None, dataset_fp: str | None, run_id: int | None, backend: str
) -> pd.DataFrame:
    return queries.results(
        _factory(url), checkpoint_fp=checkpoint_fp, dataset_fp=dataset_fp, run_id=run_id, backend=backend
    )


def results(
    checkpoint_fp: str | None = None,
    dataset_fp: str | None = None,
    run_id: int | None = None,
    backend: str = "torch",
) -> pd.DataFrame:
    """Stored results (long format, ``repository.RESULT_COLUMNS``) of one deployment backend, filtered."""
    session_factory()
    return _results(settings.database_url(), _generation, checkpoint_fp, dataset_fp, run_id, backend)


@st.cache_data(ttl=TTL_S, max_entries=32, show_spinner=False)
def _stored_backends(url: str, gen: int, checkpoint_fp: str, dataset_fp: str | None) -> list[str]:
    return queries.stored_backends(_factory(url), checkpoint_fp, dataset_fp)


def stored_backends(checkpoint_fp: str, dataset_fp: str | None = None) -> list[str]:
    """Deployment backends with stored results of a checkpoint (on a dataset), torch first."""
    session_factory()
    return _stored_backends(settings.database_url(), _generation, checkpoint_fp, dataset_fp)


@st.cache_data(ttl=5, max_entries=8, show_spinner=False)
def _runs(url: str, gen: int) -> list[RunRecord]:
    return queries.runs(_factory(url))


def runs() -> list[RunRecord]:
    """Every run, newest first (dead 'running' runs are marked interrupted first, uncached)."""
    if queries.mark_interrupted_runs(session_factory()):
        bump()
    return _runs(settings.database_url(), _generation)


# ------------------------------------------------------------------------------ dataset choices


@dataclass(frozen=True)
class DatasetChoice:
    """A dataset the pickers offer: a built-in or a registered one (``spec`` None if its files are gone)."""

    name: str
    kind: str
    split: str
    fingerprint: str
    spec: datasets.DatasetSpec | None
    builtin: bool

    @property
    def label(self) -> str:
        """What the picker shows."""
        gone = "" if self.spec is not None else ", files missing"
        return f"{self.name} ({self.kind}{gone})"


@st.cache_data(ttl=TTL_S, max_entries=8, show_spinner=False)
def _dataset_choices(url: str, gen: int) -> list[DatasetChoice]:
    choices: list[DatasetChoice] = []
    for spec in datasets.builtin_datasets().values():
        try:
            fp = datasets.dataset_fingerprint(spec)
        except (OSError, ValueError):
            continue
        choices.append(DatasetChoice(spec.name, spec.kind, spec.split, fp, spec, True))
    known = {c.fingerprint for c in choices}
    names = {c.name for c in choices}
    for record in queries.datasets(_factory(url)):
        if record.fingerprint in known:
            continue
        spec = datasets.DatasetSpec(record.name, record.kind, record.path, record.split)
        files_ok = all(p.is_file() for p in spec.files())
        name = record.name if record.name not in names else f"{record.name}@{record.fingerprint[:8]}"
        spec = dataclasses.replace(spec, name=name)
        choices.append(
            DatasetChoice(
                name, record.kind, record.split, record.fingerprint, spec if files_ok else None, False
            )
        )
        known.add(record.fingerprint)
        names.add(name)
    return choices


def dataset_choices() -> list[DatasetChoice]:
    """Built-in datasets, then registered ones (same content listed once)."""
    session_factory()
    return _dataset_choices(settings.database_url(), _generation)


def dataset_by_fingerprint(fingerprint: str | None) -> DatasetChoice | None:
    """The dataset choice with this content fingerprint."""
    return next((c for c in dataset_choices() if c.fingerprint == fingerprint), None)


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False)
def _measured_costs(
    url: str, gen: int, checkpoint_fps: tuple[str, ...], dataset_fp: str | None, backend: str
) -> pd.DataFrame:
    return queries.measured_costs(_factory(url), checkpoint_fps, dataset_fp, backend)


def measured_costs(
    checkpoint_fps: list[str], dataset_fp: str | None = None, backend: str = "torch"
) -> pd.DataFrame | None:
    """Measured cost columns for curves (``views.MEASURED_COST_AXES``) keyed by checkpoint_fp/layer/dim/precision.

    From ``core.lab_cost.cost_frame`` (``python -m core cost`` or Curves' "Measure latency"): latency, throughput, FLOPs and params per layer
    from one machine configuration; index bytes and search time of ``dataset_fp``'s corpus when measured
    there. The Curves page offers them as x axes through ``views.with_measured_costs`` /
    ``views.cost_axes``. None when nothing is measured for these checkpoints.
    """
    session_factory()
    frame = _measured_costs(
        settings.database_url(), _generation, tuple(sorted(checkpoint_fps)), dataset_fp, backend
    )
    return None if frame.empty else frame


def safe_database_url() -> str:
    """The results database URL with any password masked."""
    return queries.safe_url(settings.database_url())
