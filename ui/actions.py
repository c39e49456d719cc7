"""Actions the pages trigger: evaluate a grid with a progress bar, register checkpoints and datasets,
delete and resume runs. Each calls core (storage only through ``core.lab``), invalidates the cached reads and returns plain values;
errors propagate to the caller (wrap calls in ``ui.errors.user_errors``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from common import settings
from core import checkpoints, datasets, scoring, submodels, views
from core.lab import cost, evaluate, queries, registry, runs
from core.lab.evaluate import GridReport
from core.lab.queries import CheckpointRecord, DatasetRecord, RunRecord
from ui import errors, resources
from ui import progress as progress_bar

PAGE_COST_RUNS = {"repeats": 10, "batch_repeats": 2, "warmup": 1}  # per layer; the CLI default is 30/5/3
READ_ONLY_NOTE = "Read-only demo mode: only stored results are shown; evaluating is off."
STOPPED_NOTE = "Stored cells are kept (the run is interrupted); press the same button to resume."
PHASE_LABELS = {"encode": "Encoding texts", "score": "Scoring cells"}


def evaluate_with_progress(
    checkpoint: str,
    dataset: datasets.DatasetSpec,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32",),
    backend: str = "torch",
) -> GridReport:
    """Evaluate (and store) a grid on ``backend``, drawing a progress bar with counts, elapsed time and
    time left; dims default to the default grid plus the Starbucks diagonal dims."""
    bar = progress_bar.Bar(f"Loading checkpoint {checkpoint} ...")

    def progress(phase: str, done: int, total: int) -> None:
        bar.update(PHASE_LABELS.get(phase, phase), done, total)

    stopped = False
    try:
        loaded = checkpoints.load(checkpoint)
        if dims is None:
            dims = views.default_grid_dims(loaded.info.num_layers, loaded.info.embedding_dim)
        report = evaluate.evaluate_grid(
            loaded,
            dataset,
            layers=layers,
            dims=dims,
            precisions=precisions,
            session_factory=resources.session_factory(),
            cache=submodels.EmbeddingCache(),
            progress=progress,
            backend=backend,
        )
    except BaseException as exc:
        stopped = runs.is_user_stop(exc)
        raise
    finally:
        resources.bump()
        if stopped:  # the run is kept as interrupted; the same button resumes it
            bar.stopped(STOPPED_NOTE)
        else:
            bar.empty()
    return report


def checkpoint_name(record: CheckpointRecord) -> str:
    """What ``checkpoints.load`` takes for a stored checkpoint (default, folder path or hub id@rev)."""
    return record.name


def register_checkpoint(text: str) -> CheckpointRecord:
    """Load (validate, fingerprint, describe) a checkpoint and store its description."""
    record = registry.register_checkpoint(text, session_factory=resources.session_factory())
    resources.bump()
    return record


def rename_checkpoint(record: CheckpointRecord, alias: str) -> CheckpointRecord:
    """Give a checkpoint a new display name (validated: non-empty, unique, bounded)."""
    renamed = registry.rename_checkpoint(
        record.fingerprint, alias, session_factory=resources.session_factory()
    )
    resources.bump()
    return renamed


def _friendly_name(spec: datasets.DatasetSpec) -> str:
    path = Path(spec.path)
    return f"{path.parent.name}/{path.stem}" if spec.kind == datasets.STS else path.name


def register_dataset(spec: datasets.DatasetSpec) -> DatasetRecord:
    """Validate (load) a dataset and store its description."""
    record = registry.register_dataset(spec, session_factory=resources.session_factory())
    resources.bump()
    return record


def register_dataset_path(text: str, split: str | None = None) -> DatasetRecord:
    """Register an STS .tsv file or a BEIR folder given by path."""
    settings.ensure_writable("registering a dataset")
    raw = text.strip()
    if not raw:
        raise datasets.DatasetError("no dataset path given: type an STS .tsv file or a BEIR folder")
    spec = datasets.resolve_dataset(raw, split or None)
    if spec.name == str(Path(spec.path)):  # a path, not a built-in: give it a readable name
        spec = dataclasses.replace(spec, name=_friendly_name(spec))
    return register_dataset(spec)


def register_upload(data: bytes, filename: str) -> DatasetRecord:
    """Store an uploaded STS .tsv or zipped BEIR folder under the lab's home and register it."""
    spec = datasets.save_upload(data, filename, settings.lab_home() / "datasets")
    return register_dataset(spec)


def delete_run(run_id: int) -> None:
    """Delete a run and the results it wrote."""
    runs.delete_run(resources.session_factory(), run_id)
    resources.bump()


def resume_run(run: RunRecord) -> GridReport:
    """Run an interrupted or failed evaluation again; stored cells are kept, the rest computed."""
    if run.kind != "evaluate":
        raise scoring.EvaluationError(f"run {run.id} is a {run.kind} run; only evaluate runs resume here")
    record = queries.checkpoint(resources.session_factory(), run.checkpoint_fp)
    if record is None:
        raise scoring.EvaluationError(f"run {run.id}: its checkpoint is no longer registered")
    choice = resources.dataset_by_fingerprint(run.dataset_fp)
    if choice is None or choice.spec is None:
        raise datasets.DatasetError(f"run {run.id}: the files of dataset {run.dataset_name!r} are gone")
    params = run.params
    return evaluate_with_progress(
        checkpoint_name(record),
        choice.spec,
        layers=params.get("layers"),
        dims=params.get("dims"),
        precisions=params.get("precisions") or ("float32",),
        backend=params.get("backend") or "torch",  # torch runs store no backend param
    )


def compute_button(
    label: str,
    key: str,
    checkpoint: str,
    dataset: resources.DatasetChoice,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    precisions: Sequence[str] = ("float32",),
    primary: bool = False,
    backend: str = "torch",
) -> None:
    """A button that evaluates (and stores) the given cells with a progress bar, then redraws the page.

    In read-only demo mode there is no button (visitors see stored cells only), just a caption.
    """
    if settings.read_only():
        st.caption(READ_ONLY_NOTE)
        return
    if dataset.spec is None:
        st.caption(f"Cannot compute: the files of dataset {dataset.name} are missing.")
        return
    if not st.button(label, key=key, type="primary" if primary else "secondary"):
        return
    with errors.user_errors(f"evaluating {checkpoint} on {dataset.name}"):
        evaluate_with_progress(checkpoint, dataset.spec, layers, dims, precisions, backend)
        st.rerun()


def evaluate_more(
    checkpoint: str,
    dataset: resources.DatasetChoice,
    prefix: str,
    precision: str = "float32",
    backend: str = "torch",
) -> None:
    """An expander to evaluate any layers, dims and precisions on ``backend`` on request (bad knobs shown
    as errors)."""
    if settings.read_only():
        return
    on = "" if backend == "torch" else f" on {backend}"
    with st.expander(f"Evaluate more cells (other dims, precisions, layers){on}"):
        left, middle, right = st.columns(3)
        layers_text = left.text_input(
            "Layers", "all", key=f"{prefix}_more_layers", help="Comma-separated, or all."
        )
        dims_text = middle.text_input(
            "Dims",
            "",
            key=f"{prefix}_more_dims",
            placeholder="the default grid",
            help="Comma-separated, e.g. 48,96.",
        )
        st.session_state.setdefault(f"{prefix}_more_precisions", [precision])
        chosen = right.multiselect("Precisions", list(submodels.PRECISIONS), key=f"{prefix}_more_precisions")
        if dataset.spec is None or not st.button("Evaluate these cells", key=f"{prefix}_more_go"):
            return
        with errors.user_errors(f"evaluating {checkpoint} on {dataset.name}"):
            layers = scoring.parse_int_list(layers_text, "layers")
            dims = scoring.parse_int_list(dims_text, "dims")
            evaluate_with_progress(
                checkpoint, dataset.spec, layers, dims, scoring.parse_precisions(chosen or None), backend
            )
            st.rerun()


def measure_latency(
    records: Sequence[CheckpointRecord], names: dict[str, str], backend: str = "torch"
) -> int:
    """Measure (and store) each checkpoint's encoding latency per layer with a progress bar; how many.

    The measurement of ``python -m core cost --checkpoint ...`` (32 tokens; p50/p95 of timed single
    queries and batches of 32 after a warm-up) with fewer repeats (``PAGE_COST_RUNS``: a page should
    answer within a minute or two on a busy CPU; the CLI's 30 repeats are the reference), so Curves can
    put latency on its x axis. ``backend`` runs each k-layer sub-model (its costs are stored apart).
    """
    settings.ensure_writable("measuring latency")
    for record in records:
        name = names.get(record.fingerprint, record.name)
        bar = progress_bar.Bar(f"Loading {name} to measure its latency ...")

        def progress(
            phase: str, done: int, total: int, name: str = name, bar: progress_bar.Bar = bar
        ) -> None:
            bar.update(f"Measuring {name} ({phase})", done, total)

        stopped = False
        try:
            cost.measure_checkpoint_cost(
                record.name,
                repeats=PAGE_COST_RUNS["repeats"],
                batch_repeats=PAGE_COST_RUNS["batch_repeats"],
                warmup=PAGE_COST_RUNS["warmup"],
                session_factory=resources.session_factory(),
                progress=progress,
                backend=backend,
            )
        except BaseException as exc:
            stopped = runs.is_user_stop(exc)
            raise
        finally:
            resources.bump()
            if stopped:
                bar.stopped("Nothing half-measured is stored; press Measure latency again.")
            else:
                bar.empty()
    return len(records)


def measure_button(
    records: Sequence[CheckpointRecord], names: dict[str, str], key: str, backend: str = "torch"
) -> None:
    """ "Measure latency" (on ``backend``) for the given checkpoints (none: nothing drawn; read-only: a note)."""
    if not records:
        return
    listed = ", ".join(names.get(r.fingerprint, r.name) for r in records)
    if backend != "torch":
        listed += f" on {backend}"
    if settings.read_only():
        st.caption(f"Latency not measured for {listed}. {READ_ONLY_NOTE}")
        return
    st.caption(f"Latency not measured for: {listed}.")
    if st.button("Measure latency", key=key, icon=":material/timer:"):
        with errors.user_errors(f"measuring the latency of {listed}"):
            measure_latency(records, names, backend)
            st.rerun()
