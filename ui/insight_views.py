"""Insight sections for Explore, Compare and Curves (logic in ``core.lab.insight`` / ``core.reference``).

- :func:`losses_section` (Explore): the pairs or queries where the selected cell loses most against the
  full model or another checkpoint's cell, with a CSV download of all of them;
- :func:`per_size_table` (Compare): the per-size table with paired-significance marks against its
  first column and, on request, the Starbucks paper's published numbers as extra columns;
- :func:`significance_section` (Compare): paired bootstrap and randomization tests of any two cells;
- :func:`paper_overlay` (Curves): the paper's per-size points as a labelled overlay, on request.

Reads are cached with ``st.cache_data`` keyed by the database URL and write generation, like
``ui.resources``; the dataset spec rides along unhashed (its content fingerprint is in the key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from common import settings
from core import backends, datasets, figures, reference, significance, views
from core.lab import insight
from core.lab.insight import CellRef
from core.lab.queries import CheckpointRecord
from ui import errors, pickers, resources

TORCH = backends.DEFAULT_BACKEND
MARK_RESAMPLES = 2000
MARK_TEST = (f"paired randomization test (STS: swap each pair's within-model ranks; retrieval: each query's "
             f"scores), {MARK_RESAMPLES:,} resamples, p < 0.05, no multiple-comparison correction.")  # fmt: skip
TEST_RESAMPLES = (1000, 2000, 5000, 10_000)
Cell = tuple[int, int]
CellKey = tuple[str, int, int, str, str]  # (checkpoint fp, layer, dim, precision, backend): hashable
# Curves x axis -> the paper overlay's x (``reference.X_KINDS``)
OVERLAY_X: dict[str, str] = {
    "layers_used": "layers",
    "dim": "dim",
    "bytes_per_vector": "bytes_per_vector",
    "params": "params",
}


def _ref(key: CellKey, label: str = "") -> CellRef:
    return CellRef(key[0], key[1], key[2], key[3], label, key[4])


@st.cache_data(ttl=resources.TTL_S, max_entries=32, show_spinner=False)
def _losses(url: str, gen: int, _spec: datasets.DatasetSpec, dataset_fp: str, cell: CellKey, base: CellKey,
            metric: str) -> pd.DataFrame:  # fmt: skip
    return insight.item_losses(
        _spec, dataset_fp, _ref(cell), _ref(base), metric, session_factory=resources.session_factory()
    )


@st.cache_data(ttl=resources.TTL_S, max_entries=32, show_spinner=False)
def _tests(url: str, gen: int, _spec: datasets.DatasetSpec, dataset_fp: str, a: CellKey, b: CellKey, metric: str,
           resamples: int) -> dict[str, significance.PairedResult]:  # fmt: skip
    return insight.compare_cells(
        _spec, dataset_fp, _ref(a), _ref(b), metric, resamples, session_factory=resources.session_factory()
    )


@st.cache_data(ttl=resources.TTL_S, max_entries=16, show_spinner=False)
def _diagonal_tests(url: str, gen: int, _spec: datasets.DatasetSpec, dataset_fp: str,
                    columns: tuple[tuple[str, tuple[CellKey, ...]], ...], baseline: str, metric: str,
                    labels: tuple[str, ...]) -> pd.DataFrame:  # fmt: skip
    cells = {name: [_ref(c, name) for c in keys] for name, keys in columns}
    return insight.diagonal_significance(_spec, dataset_fp, cells, baseline, metric, labels, MARK_RESAMPLES,
                                         session_factory=resources.session_factory())  # fmt: skip


def _key(record: CheckpointRecord, cell: Cell, precision: str, backend: str = TORCH) -> CellKey:
    return (record.fingerprint, int(cell[0]), int(cell[1]), precision, backend)


def losses_section(
    record: CheckpointRecord,
    records: Sequence[CheckpointRecord],
    choice: resources.DatasetChoice,
    cell: Cell,
    precision: str,
    metric: str,
    backend: str = TORCH,
) -> None:
    """Explore: where the selected cell (on ``backend``) loses most, against the full model or another
    checkpoint on the same backend, or against the same cell on torch."""
    names = pickers.short_names(records)
    full = (record.num_layers, record.embedding_dim)
    st.subheader(f"Where ({cell[0]}, {cell[1]}) loses" + ("" if backend == TORCH else f" on {backend}"))
    if choice.spec is None:
        st.caption(f"The files of dataset {choice.name} are missing: per-item views need its texts.")
        return
    options: dict[str, CellKey] = {}
    if backend != TORCH:  # what the backend costs, item by item
        torch_cells = views.cells_of(
            resources.results(record.fingerprint, choice.fingerprint), metric, precision
        )
        if cell in torch_cells:
            options[f"this cell on {TORCH}"] = _key(record, cell, precision)
    own = views.cells_of(
        resources.results(record.fingerprint, choice.fingerprint, backend=backend), metric, "float32"
    )
    if (cell, precision) != (full, "float32") and full in own:  # only a stored full cell can be compared
        options[f"the full model {full}"] = _key(record, full, "float32", backend)
    for other in records:
        if other.fingerprint == record.fingerprint:
            continue
        frame = resources.results(other.fingerprint, choice.fingerprint, backend=backend)
        stored = views.cells_of(frame, metric, precision)
        for other_cell in dict.fromkeys([cell, (other.num_layers, other.embedding_dim)]):
            if other_cell in stored:
                options[f"{names[other.fingerprint]} {other_cell}"] = _key(
                    other, other_cell, precision, backend
                )
    if not options:
        st.caption(
            "This is the full model and no other checkpoint has results here: nothing to compare with."
        )
        return
    left, right = st.columns([3, 1])
    against = left.selectbox("Against", list(options), key="explore_loss_baseline")
    top = right.number_input("Rows", 5, 500, 20, step=5, key="explore_loss_top")
    with errors.user_errors("per-item view"):
        table = _losses(settings.database_url(), resources.generation(), choice.spec, choice.fingerprint,
                        _key(record, cell, precision, backend), options[against], metric)  # fmt: skip
        shown = table.head(int(top))  # st.table wraps long sentences and documents (a dataframe cuts them)
        st.table(shown.style.format({c: "{:.4f}" for c in shown.columns if shown[c].dtype.kind == "f"})
                 .hide(axis="index"))  # fmt: skip
        st.download_button(f"Download all {len(table)} rows as CSV", insight.losses_csv(table),
                           file_name=f"losses-{choice.name.replace('/', '_')}-{cell[0]}x{cell[1]}.csv",
                           mime="text/csv", key="explore_loss_csv")  # fmt: skip
        if choice.kind == datasets.STS:
            st.caption("Rank error: how far (as a share of all pairs) a pair's similarity rank sits from its gold "
                       "rank; loss = rank error minus the baseline's. Pairs with large rank errors pull Spearman down.")  # fmt: skip
        else:
            st.caption(f"Loss: the baseline's per-query {figures.metric_label(metric)} minus this cell's.")


def per_size_table(
    pivots: Mapping[str, pd.DataFrame],
    diagonals: Mapping[str, Sequence[Cell]],
    records: Mapping[str, CheckpointRecord],
    choice: resources.DatasetChoice,
    metric: str,
    precision: str,
    backend: str = TORCH,
) -> views.DiagonalTable:
    """Compare: the per-size table, significance marks against its first column (tests on ``backend``'s
    stored item scores), paper columns on request."""
    table = views.diagonal_table(pivots, diagonals)
    labels = tuple(str(label) for label in table.table.index[:-1])
    names = list(pivots)
    left, right = st.columns(2)
    show_marks = left.toggle(f"Mark significant differences from {names[0]}", value=True, key="compare_marks")
    show_paper = right.toggle("Add the Starbucks paper's numbers", key="compare_paper")
    marks: dict[tuple[str, str], str] = {}
    tests: pd.DataFrame | None = None
    if show_marks and len(names) > 1 and choice.spec is not None:
        columns = tuple(
            (n, tuple(_key(records[n], c, precision, backend) for c in diagonals[n])) for n in names
        )
        with errors.user_errors("significance marks"):
            tests = _diagonal_tests(settings.database_url(), resources.generation(), choice.spec,
                                    choice.fingerprint, columns, names[0], metric, labels)  # fmt: skip
            marks = insight.significance_marks(tests)
    extra = reference.reference_columns(choice.name, metric, labels=list(labels)) if show_paper else None
    if extra is not None and not extra.empty:
        table = views.diagonal_table(pivots, diagonals, extra=extra)
    st.table(views.style_best(table.table, table.best, marks=marks))
    if show_marks and len(names) > 1:
        for line in insight.significance_summary(tests, names[0]) if tests is not None else []:
            st.markdown(line)
        st.caption(f"▲/▼: significantly higher/lower than {names[0]} at that size: {MARK_TEST}")
    if show_paper:
        if extra is None or extra.empty:
            st.caption(
                f"The Starbucks paper reports no {figures.metric_label(metric)} on {choice.name} for these sizes."
            )
        else:
            st.caption("Paper columns: published BERT-base results at Demi (2, 32) ... Trenta (12, 768), row by row "
                       f"in size order; context, not the same model. {reference.CITATION}")  # fmt: skip
    return table


def delta_section(
    pivots: Mapping[str, pd.DataFrame],
    records: Mapping[str, CheckpointRecord],
    diagonals: Mapping[str, Sequence[Cell]],
    choice: resources.DatasetChoice,
    metric: str,
    precision: str,
    a: str,
    b: str,
    backend: str = TORCH,
) -> None:
    """Compare: the B - A heatmap, its diagonal cells marked where the difference (tested on ``backend``'s
    stored item scores) is significant."""
    delta = views.delta_pivot(pivots[a], pivots[b])
    shared = {(int(k), int(d)) for k in delta.index for d in delta.columns if pd.notna(delta.loc[k, d])}
    cells = [c for c in dict.fromkeys([*diagonals[a], *diagonals[b]]) if c in shared]
    marks: dict[Cell, str] = {}
    summary: list[str] = []
    if cells and choice.spec is not None:
        labels = tuple(f"({k}, {d})" for k, d in cells)
        columns = tuple((n, tuple(_key(records[n], c, precision, backend) for c in cells)) for n in (a, b))
        with errors.user_errors("significance marks"):
            tests = _diagonal_tests(settings.database_url(), resources.generation(), choice.spec,
                                    choice.fingerprint, columns, a, metric, labels)  # fmt: skip
            by_label = dict(zip(labels, cells, strict=True))
            marks = {by_label[row]: mark for (row, _), mark in insight.significance_marks(tests).items()}
            summary = insight.significance_summary(tests, a)
    title = figures.chart_title(f"{b} - {a}", choice.name, metric, figures.precision_on(precision, backend))
    st.plotly_chart(
        figures.delta_heatmap(delta, metric=metric, title=title, marks=marks),
        key="compare_delta",
        config={"displaylogo": False},
    )
    for line in summary:
        st.markdown(line)
    st.caption(f"Blue: {b} scores higher than {a}; red: lower. Blank: a cell one of them lacks. ▲/▼ on the "
               f"Starbucks diagonal cells: {b} significantly higher/lower there: {MARK_TEST}")  # fmt: skip


def significance_section(
    records: Mapping[str, CheckpointRecord],
    frames: Mapping[str, pd.DataFrame],
    choice: resources.DatasetChoice,
    metric: str,
    precision: str,
    backend: str = TORCH,
) -> None:
    """Compare: paired bootstrap and randomization tests of any two stored cells on this dataset
    (``frames`` and the per-item scores of deployment ``backend``)."""
    st.subheader("Is a difference significant?")
    if choice.spec is None:
        st.caption(f"The files of dataset {choice.name} are missing: the tests need its gold labels.")
        return
    names = list(records)
    picks: list[CellKey] = []
    for side, column in zip(("A", "B"), st.columns(2), strict=True):
        name = column.selectbox(f"{side}: checkpoint", names, index=0 if side == "A" else min(1, len(names) - 1),
                                key=f"compare_sig_{side}_ckpt")  # fmt: skip
        cells = sorted(views.cells_of(frames[name], metric, precision))
        record = records[name]
        full = (record.num_layers, record.embedding_dim)
        cell = column.selectbox(f"{side}: cell (layers, dims)", cells, index=cells.index(full) if full in cells else 0,
                                key=f"compare_sig_{side}_cell", format_func=lambda c: f"({c[0]}, {c[1]})")  # fmt: skip
        picks.append(_key(record, cell, precision, backend))
    resamples = st.select_slider("Resamples", TEST_RESAMPLES, value=2000, key="compare_sig_resamples")
    if picks[0] == picks[1]:
        st.info("Pick two different cells.", icon=":material/info:")
        return
    with errors.user_errors("paired tests"), st.spinner("Resampling ..."):
        results = _tests(settings.database_url(), resources.generation(), choice.spec, choice.fingerprint,
                         picks[0], picks[1], metric, int(resamples))  # fmt: skip
        st.dataframe(insight.significance_table(results), hide_index=True, key="compare_sig_table",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("A", "B", "B - A", "CI low", "CI high", "p-value")})  # fmt: skip
        what = (
            "Spearman over pairs"
            if choice.kind == datasets.STS
            else f"mean per-query {figures.metric_label(metric)}"
        )
        swapped = "each pair's within-model ranks" if choice.kind == datasets.STS else "each query's scores"
        st.caption(f"B - A in {what} (positive: B is better), recomputed on each resample of the "
                   f"{results['bootstrap'].n_items:,} shared items; 95% interval: paired bootstrap percentiles; "
                   f"p-values: bootstrap (shifted null) and paired randomization (swap {swapped}), two-sided. "
                   f"Per-item scores of the {backend} backend.")  # fmt: skip


def paper_overlay(fig: go.Figure, dataset: str, metric: str, x: str, where: object = None) -> None:
    """Curves: a toggle that adds the Starbucks paper's per-size points to ``fig`` (x axes it can match)."""
    target = st if where is None else where
    if not target.toggle("Starbucks paper reference", key="curves_paper"):  # type: ignore[attr-defined]
        return
    if x not in OVERLAY_X:
        st.caption(
            "The paper's points can be placed by layers used, embedding dims, bytes per vector or parameters."
        )
        return
    points = reference.overlay_points(dataset, metric, OVERLAY_X[x])
    if points.empty:
        st.caption(f"The Starbucks paper reports no {figures.metric_label(metric)} on {dataset}.")
        return
    figures.add_reference_overlay(fig, points)
    st.caption(f"Dashed, one colour per method: published BERT-base results per size (x: {OVERLAY_X[x]} of the paper's sub-models"
               f"{', encoder parameters computed' if x == 'params' else ''}). {reference.CITATION}")  # fmt: skip
