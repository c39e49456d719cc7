"""Runs: every evaluation run with status and progress; provenance, export, delete, resume."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core import views
from ui import guards, pickers, resources, runs_widgets, state

TITLE = "Runs"

# ---- sidebar inputs: none (the filters sit above the table)
all_runs = resources.runs()
guards.need_runs(len(all_runs), TITLE)

# ---- title
st.title(TITLE)

# ---- state
state.init_page("runs", {"confirm_delete": None, "message": None})
if st.session_state["runs_message"]:
    st.success(st.session_state["runs_message"])
    st.session_state["runs_message"] = None
names = pickers.short_names(resources.checkpoints())

# ---- render: filter, table
left, middle, right = st.columns(3)
statuses = sorted({r.status for r in all_runs})
status = left.multiselect("Status", statuses, key="runs_status", placeholder="any status")
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
st.dataframe(
    views.runs_table(shown, now=datetime.now(UTC), names=names),
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

st.subheader("Export results")
ids = [r.id for r in shown]
runs_widgets.export_section(ids)

st.subheader("One run")
state.bind_widget("runs_detail", None, ids, ids[0])
by_id = {r.id: r for r in shown}


def run_label(i: int) -> str:  # no status: a keyed selectbox keeps its first labels (see pages/6_Train.py)
    r = by_id[i]
    return f"#{i} {views.run_title(r.kind, names.get(r.checkpoint_fp, r.checkpoint_name), r.dataset_name)}"


runs_widgets.run_details(by_id[st.selectbox("Run", ids, key="runs_detail", format_func=run_label)], names)
