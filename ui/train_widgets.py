"""Widgets of the Train page: one background job's panel (progress, live loss chart, Cancel)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core import figures
from core.lab import jobs
from ui import actions, errors, nav, pickers, resources, state
from ui.progress import progress_text


def job_progress_text(job: jobs.TrainJob, now: datetime | None = None) -> str:
    """``running: 10/120 · 00:25 elapsed · 2.5 s/step, about 04:35 left`` (from the job's start time)."""
    if not job.total:
        return f"{job.status}: step {job.step} of ?"
    try:
        started = datetime.fromisoformat(job.started_at)
    except (TypeError, ValueError):
        return f"{job.status}: step {job.step} of {job.total}"
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
    return progress_text(job.status, job.step, job.total, max(0.0, elapsed), unit="step")


def job_label(job: jobs.TrainJob) -> str:
    """A job as the picker names it: base checkpoint (display name), method, start time (no status: it
    would go stale)."""
    base_name = str(job.request.get("base", "?"))
    records = resources.checkpoints()
    display = pickers.short_names(records)
    names = {r.name: display[r.fingerprint] for r in records}
    base = names.get(base_name) or base_name.rstrip("/").rsplit("/", 1)[-1]
    when = job.id[:13].replace("-", " ", 1)  # 20261203-101500 -> 20261203 101500
    return f"{base} · {job.method} · {when[:4]}-{when[4:6]}-{when[6:8]} {when[9:11]}:{when[11:13]}"


def evaluate_trained(job: jobs.TrainJob) -> None:
    """Once per finished job: evaluate the new checkpoint's grid (and its base's, if missing) on the
    evaluation split of its training data, so Compare shows it against its base at once."""
    trained_on = str(job.request.get("dataset", ""))
    spec = jobs.evaluation_dataset(trained_on) or next(  # a registered evaluation split: scored on itself
        (
            c.spec
            for c in resources.dataset_choices()
            if c.spec and trained_on in (c.name, str(c.spec.path)) and c.split != "train"
        ),
        None,
    )
    marker = jobs.evaluated_marker(job)
    if spec is None:
        st.caption("No built-in evaluation split for this training data: evaluate it on Explore.")
        return
    if not marker.exists():
        with errors.user_errors(f"evaluating the new checkpoint on {spec.name}"):
            report = actions.evaluate_with_progress(job.output, spec)
            base = str(job.request.get("base", "default"))
            actions.evaluate_with_progress(base, spec)  # stored cells are reused: only what is missing
            jobs.mark_evaluated(job, {"dataset": spec.name, "cells": report.computed + report.reused})
    if marker.exists():
        state.publish("dataset", spec.name)
        state.publish("checkpoints", [str(job.request.get("base", "default")), job.output])
        st.caption(f"Evaluated on {spec.name} with its base checkpoint.")
        nav.link(nav.COMPARE, f"Compare it with its base on {spec.name}", icon=":material/compare:")


def job_panel(job_id: str, refreshing: bool) -> None:
    """Progress, live loss chart and the Cancel button of one job (re-run every 2 s while it runs)."""
    job = jobs.read_job(jobs.jobs_dir() / job_id)
    request = job.request
    st.caption(
        f"{job.method} from {request.get('base', '?')} on {request.get('dataset', '?')} -> {job.output}"
    )
    st.progress(job.fraction, text=job_progress_text(job))
    if job.losses:
        st.plotly_chart(figures.training_loss_figure(job.losses), key="train_loss_chart")
    if job.status == "queued":
        st.info(
            "Queued: another training job is running; this one starts when it ends.",
            icon=":material/schedule:",
        )
    if job.active:
        if st.button("Cancel", key="train_cancel", icon=":material/stop:"):
            jobs.cancel_job(job)
            st.toast("Cancel requested: the job stops at its next step.")
    elif job.status == "cancelled":
        st.info(f"Cancelled ({job.error or 'by request'}); nothing was saved.", icon=":material/cancel:")
    elif job.status == "completed":
        st.success(f"Saved and registered: {job.output}", icon=":material/check_circle:")
        if job.method != "separate":
            state.publish("checkpoint", job.output)
            evaluate_trained(job)
        nav.link(nav.EXPLORE, "Explore the new checkpoint", icon=":material/grid_on:")
    else:
        st.error(f"{job.status}: {job.error or 'no details'}", icon=":material/error:")
    if refreshing and not job.active:
        resources.bump()
        st.rerun()
