"""Widgets of the Runs page: the export of selected runs, and one run's provenance, resume and delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from common import settings
from core import views
from core.lab.queries import RESUMABLE_STATUSES, RunRecord
from ui import actions, errors, resources, state


def export_section(ids: Sequence[int]) -> None:
    """Download the stored results of the selected runs as CSV or JSON."""
    state.bind_multi("runs_selected", None, ids, ids)
    selected = st.multiselect("Runs to export", ids, key="runs_selected", format_func=lambda i: f"#{i}")
    export = (
        pd.concat([resources.results(run_id=i) for i in selected], ignore_index=True)
        if selected
        else pd.DataFrame()
    )
    if export.empty:
        st.caption("The selected runs hold no results (yet).")
        return
    st.caption(
        f"{len(export)} stored values from {len(selected)} runs (a cell re-evaluated later belongs to the later run)."
    )
    stem = export_name(export, selected)
    csv_col, json_col, _ = st.columns([1, 1, 4])
    csv_col.download_button(
        "Download CSV", views.export_csv(export), f"{stem}.csv", "text/csv", key="runs_export_csv"
    )
    json_col.download_button(
        "Download JSON", views.export_json(export), f"{stem}.json", "application/json", key="runs_export_json"
    )


def export_name(export: pd.DataFrame, run_ids: Sequence[int]) -> str:
    """A file name that says what is inside: ``mlab-results-<dataset>-runs-3-5-8``.

    >>> export_name(pd.DataFrame({"dataset": ["stsb-test", "stsb-test"]}), [3, 5])
    'mlab-results-stsb-test-runs-3-5'
    """
    names = sorted(set(export["dataset"].dropna().astype(str))) if "dataset" in export else []
    what = names[0] if len(names) == 1 else f"{len(names)}-datasets" if names else "results"
    ids = "-".join(str(i) for i in list(run_ids)[:6]) + ("-and-more" if len(run_ids) > 6 else "")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in what)
    return f"mlab-results-{safe}-runs-{ids}"


def run_details(run: RunRecord, names: Mapping[str, str]) -> None:
    """One run: its status, error, provenance and parameters, and the Resume / Delete buttons."""
    title = views.run_title(run.kind, f"**{names.get(run.checkpoint_fp, run.checkpoint_name)}**",
                            f"**{run.dataset_name}**" if run.dataset_name else None)  # fmt: skip
    st.markdown(
        f"**#{run.id}** {title}: {run.status}, {views.run_done(run.kind, run.cells_done, run.cells_total)}."
    )
    if run.error_text:
        st.caption(f"Error: {run.error_text}")
    with st.expander("Provenance and parameters"):
        where = (
            {}
            if settings.read_only()
            else {"checkpoint": run.checkpoint_name, "pid": run.pid, "host": run.host}
        )
        st.json({**where, "params": run.params, "provenance": run.provenance})

    resumable = run.status in RESUMABLE_STATUSES and run.kind == "evaluate" and not settings.read_only()
    buttons = iter(st.columns([1, 1, 3]))
    if resumable and next(buttons).button(f"Resume run #{run.id}", key="runs_resume", type="primary"):
        with errors.user_errors(f"resuming run #{run.id}"):
            report = actions.resume_run(run)
            st.session_state["runs_message"] = (
                f"Run #{run.id}: {report.computed} cells computed, {report.reused} reused."
            )
            st.rerun()
    if settings.read_only():
        return
    if next(buttons).button(f"Delete run #{run.id}", key="runs_delete"):
        st.session_state["runs_confirm_delete"] = run.id
    if st.session_state["runs_confirm_delete"] == run.id:
        st.warning(f"Delete run #{run.id} and the {len(resources.results(run_id=run.id))} values it stored?")
        yes, no = st.columns(2)
        if yes.button("Yes, delete", key="runs_delete_yes", type="primary"):
            with errors.user_errors(f"deleting run #{run.id}"):
                actions.delete_run(run.id)
                st.session_state["runs_confirm_delete"] = None
                st.session_state["runs_message"] = f"Deleted run #{run.id}."
                st.rerun()
        if no.button("Cancel", key="runs_delete_no"):
            st.session_state["runs_confirm_delete"] = None
            st.rerun()
