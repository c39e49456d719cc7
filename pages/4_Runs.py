"""Runs: every evaluation run with status and progress; provenance, export, delete, resume."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from core import settings, views
from storage.repository import RESUMABLE_STATUSES
from ui import actions, errors, nav, pickers, resources, state

state.init_page("runs", {"confirm_delete": None, "message": None})
st.title("Runs")

all_runs = resources.runs()
if not all_runs:
    st.info(
        "No runs yet. Evaluate the default grid on the Home page; each evaluation is recorded here.",
        icon=":material/info:",
    )
    nav.link(nav.HOME, "Go to Home", icon=":material/home:")
    st.stop()
if st.session_state["runs_message"]:
    st.success(st.session_state["runs_message"])
    st.session_state["runs_message"] = None

# ---- filter
left, middle, right = st.columns(3)
statuses = sorted({r.status for r in all_runs})
status = left.multiselect("Status", statuses, key="runs_status", placeholder="any status")
names = pickers.short_names(resources.checkpoints())
ckpts = sorted({names.get(r.checkpoint_fp, r.checkpoint_name) for r in all_runs})
ckpt = middle.selectbox("Checkpoint", ["(any)", *ckpts], key="runs_checkpoint")
dsets = sorted({r.dataset_name or "" for r in all_runs})
dset = right.selectbox("Dataset", ["(any)", *dsets], key="runs_dataset")
shown = [
    r
    for r in all_runs
    if (not status or r.status in status)
    and ckpt in ("(any)", names.get(r.checkpoint_fp, r.checkpoint_name))
    and dset in ("(any)", r.dataset_name or "")
]
table = views.runs_table(shown, now=datetime.now(UTC), names=names)
st.dataframe(
    table,
    hide_index=True,
    key="runs_table",
    column_config={
        "progress": st.column_config.ProgressColumn(
            "progress", min_value=0.0, max_value=1.0, format="percent"
        ),
        "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
    },
)
st.caption(f"{len(shown)} of {len(all_runs)} runs.")
if any(r.status == "running" for r in all_runs) and st.button(
    "Refresh", key="runs_refresh", icon=":material/refresh:"
):
    resources.bump()
    st.rerun()
if not shown:
    st.stop()

# ---- export results of selected runs
st.subheader("Export results")
ids = [r.id for r in shown]
state.bind_multi("runs_selected", None, ids, ids)
selected = st.multiselect("Runs to export", ids, key="runs_selected", format_func=lambda i: f"#{i}")
export = (
    pd.concat([resources.results(run_id=i) for i in selected], ignore_index=True)
    if selected
    else pd.DataFrame()
)
if export.empty:
    st.caption("The selected runs hold no results (yet).")
else:
    st.caption(
        f"{len(export)} stored values from {len(selected)} runs (a cell re-evaluated later belongs to the later run)."
    )
    csv_col, json_col, _ = st.columns([1, 1, 4])
    csv_col.download_button(
        "Download CSV", views.export_csv(export), "results.csv", "text/csv", key="runs_export_csv"
    )
    json_col.download_button(
        "Download JSON", views.export_json(export), "results.json", "application/json", key="runs_export_json"
    )

# ---- one run: provenance, resume, delete
st.subheader("One run")
state.bind_widget("runs_detail", None, ids, ids[0])
by_id = {r.id: r for r in shown}


def run_label(i: int) -> str:  # no status: a keyed selectbox keeps its first labels (see pages/6_Train.py)
    r = by_id[i]
    return f"#{i} {r.kind} of {names.get(r.checkpoint_fp, r.checkpoint_name)} on {r.dataset_name or '-'}"


run = by_id[st.selectbox("Run", ids, key="runs_detail", format_func=run_label)]
st.markdown(
    f"**#{run.id}** {run.kind} of **{names.get(run.checkpoint_fp, run.checkpoint_name)}** on "
    f"**{run.dataset_name or '-'}**: {run.status}, {run.cells_done}/{run.cells_total} cells."
)
if run.error_text:
    st.caption(f"Error: {run.error_text}")
with st.expander("Provenance and parameters"):
    where = (
        {} if settings.read_only() else {"checkpoint": run.checkpoint_name, "pid": run.pid, "host": run.host}
    )
    st.json({**where, "params": run.params, "provenance": run.provenance})

resumable = run.status in RESUMABLE_STATUSES and run.kind == "evaluate"
buttons = iter(st.columns([1, 1, 3]))
if resumable and next(buttons).button(f"Resume run #{run.id}", key="runs_resume", type="primary"):
    with errors.user_errors(f"resuming run #{run.id}"):
        report = actions.resume_run(run)
        st.session_state["runs_message"] = (
            f"Run #{run.id}: {report.computed} cells computed, {report.reused} reused."
        )
        st.rerun()
if not settings.read_only():
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
