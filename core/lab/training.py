"""Training a checkpoint end to end: validate, train (``core.training``), save, register.

A training run is a ``runs`` row of kind ``train`` (status running -> completed / failed / cancelled /
interrupted; ``cells_done``/``cells_total`` count optimizer steps). A trained model is registered like
any other checkpoint (by content fingerprint, name = its folder path) with its training card attached,
so every page lists it. Only finished folders are registered: a cancelled or failed run registers none.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core import checkpoints, datasets
from core.lab.registry import checkpoint_values, dataset_values
from core.lab.runs import RunHandle, run_lifecycle
from core.submodels import truncated_copy
from core.training import card as cards
from core.training import data as training_data
from core.training.loop import (
    ProgressFn,
    StopFn,
    TrainConfig,
    TrainedModel,
    TrainResult,
    check_config,
    check_output_location,
    fit,
    objective_for,
    output_lock,
    prepare_output,
    resolve_pairs,
    run_provenance,
    total_steps,
    training_card,
)
from storage import repository

PROGRESS_EVERY_S = 2.0  # how often a training run stores its step count


def start_train_run(
    factory: sessionmaker[Session],
    base: checkpoints.CheckpointInfo,
    spec: datasets.DatasetSpec,
    dataset_fp: str,
    params: dict[str, Any],
    total_steps: int,
    provenance: dict[str, Any],
) -> int:
    """Register the base checkpoint and the dataset, open a 'running' train run; return its id."""
    with factory() as s, s.begin():
        repository.upsert_checkpoint(s, **checkpoint_values(base))
        repository.upsert_dataset(s, **dataset_values(spec))
        repository.mark_interrupted_runs(s)
        run = repository.start_run(
            s,
            kind="train",
            checkpoint_fp=base.fingerprint,
            dataset_fp=dataset_fp,
            params=params,
            cells_total=total_steps,
            provenance=provenance,
        )
        return run.id


def describe_trained(folder: Path, model: SentenceTransformer) -> checkpoints.CheckpointInfo:
    """Describe a just-saved checkpoint folder (fingerprint of its files) without loading it again."""
    spec = checkpoints.parse_checkpoint(str(folder))
    return checkpoints.describe_model(
        spec, Path(spec.location), checkpoints.fingerprint_folder(folder), model
    )


def register_trained(
    factory: sessionmaker[Session], info: checkpoints.CheckpointInfo, card: dict[str, Any]
) -> None:
    """Register a trained checkpoint and attach its training card, in one transaction."""
    with factory() as s, s.begin():
        repository.upsert_checkpoint(s, **checkpoint_values(info))
        repository.set_training_card(s, info.fingerprint, card)


def train(
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    session_factory: sessionmaker[Session] | None,
) -> TrainResult:
    """Run a training job end to end: validate, train, save, write cards, register. See the module doc.

    ``progress(step, total, loss)`` is called after every optimizer step (steps count across all
    models of a ``separate`` run). Raises ``TrainingError`` for a bad request before any work,
    ``TrainingCancelled`` when ``should_stop()`` turned true; in both cases nothing is saved.
    """
    settings.ensure_writable("training a checkpoint")
    check_config(config)
    output_dir = Path(config.output_dir).expanduser().resolve()
    check_output_location(output_dir)
    with output_lock(output_dir):
        return _train_locked(config, output_dir, progress, should_stop, session_factory)


def _train_locked(
    config: TrainConfig,
    output_dir: Path,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
    session_factory: sessionmaker[Session] | None,
) -> TrainResult:
    """``train`` while holding the output folder's lock."""
    check_output_location(output_dir)  # again: another training may have finished into it meanwhile
    loaded = checkpoints.load(config.base)
    info = loaded.info
    pairs = resolve_pairs(config.pairs, info.num_layers, info.embedding_dim)
    examples = training_data.load_examples(config.dataset, limit=config.limit)
    steps_each = total_steps(config, len(examples))
    models_pairs: list[tuple[int, int] | None] = list(pairs) if config.method == "separate" else [None]
    grand_total = steps_each * len(models_pairs)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    provenance = run_provenance(info, examples.fingerprint)
    params = {
        "method": config.method,
        "pairs": [list(p) for p in pairs],
        "config": {k: v for k, v in config.to_dict().items() if k != "register"},
    }

    factory = session_factory if config.register else None
    if config.register and factory is None:
        raise TypeError("train(config with register=True) needs the session_factory to register into")
    lifecycle: contextlib.AbstractContextManager[RunHandle | None] = contextlib.nullcontext(None)
    if factory is not None:
        run_id = start_train_run(
            factory, info, examples.spec, examples.fingerprint, params, grand_total, provenance
        )
        lifecycle = run_lifecycle(factory, run_id, every_s=PROGRESS_EVERY_S)
    with lifecycle as run:
        saved, curve_all = _train_into(
            output_dir, config, loaded, pairs, examples, steps_each, models_pairs, provenance, started, t0,
            progress, should_stop, run,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        models = _finalize(output_dir, saved, wall, factory, config.method)
        if run is not None:
            run.progress(grand_total, grand_total, force=True)
    return TrainResult(output_dir, models, run.run_id if run else None, wall, curve_all)


Saved = tuple[Path, SentenceTransformer, dict[str, Any], tuple[int, int] | None]


def _train_into(
    output_dir: Path,
    config: TrainConfig,
    loaded: checkpoints.LoadedCheckpoint,
    pairs: tuple[tuple[int, int], ...],
    examples: training_data.TrainingExamples,
    steps_each: int,
    models_pairs: list[tuple[int, int] | None],
    provenance: dict[str, Any],
    started: datetime,
    t0: float,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
    run: RunHandle | None,
) -> tuple[list[Saved], list[float]]:
    """Train every model of the run in a hidden work folder, then rename it to ``output_dir``.

    On any failure or cancel the work folder is removed, so no half checkpoint is left behind.
    """
    info = loaded.info
    grand_total = steps_each * len(models_pairs)
    work = prepare_output(output_dir)
    saved: list[Saved] = []
    curve_all: list[float] = []
    try:
        for index, pair in enumerate(models_pairs):
            offset = index * steps_each

            def on_step(step: int, loss: float, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + step, grand_total, loss)
                if run is not None:
                    run.progress(offset + step, grand_total)

            if pair is None:
                model = copy.deepcopy(loaded.model)
                objective = objective_for(
                    config, pairs, info.num_layers, info.embedding_dim, examples.base_loss
                )
                folder = work
            else:
                model = truncated_copy(loaded.model, pair[0])
                objective = objective_for(config, (pair,), pair[0], info.embedding_dim, examples.base_loss)
                folder = work / f"layer{pair[0]}-dim{pair[1]}"
            if config.max_length is not None:
                model.max_seq_length = config.max_length
            curve = fit(model, objective, examples, config, steps_each, on_step, should_stop)
            curve_all.extend(curve)
            folder.mkdir(parents=True, exist_ok=True)
            model.save(str(folder), create_model_card=False)
            card = training_card(
                config, objective, pairs if pair is None else (pair,), info, examples, steps_each, provenance,
                started, time.perf_counter() - t0, curve,
            )  # fmt: skip
            if pair is not None:
                card["separate"] = {"layer": pair[0], "dim": pair[1], "run_pairs": [list(p) for p in pairs]}
            cards.save_card(folder, card)
            saved.append((folder, model, card, pair))
        if config.method == "separate":
            cards.save_manifest(
                work,
                {
                    "method": "separate",
                    "base_checkpoint": info.name,
                    "pairs": [list(p) for p in pairs],
                    "models": [{"layer": p[0], "dim": p[1], "folder": f.name} for f, _, _, p in saved if p],
                },
            )
        if output_dir.exists():
            output_dir.rmdir()  # checked empty above
        os.replace(work, output_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return [
        (output_dir / f.relative_to(work) if f != work else output_dir, m, c, p) for f, m, c, p in saved
    ], curve_all


def _finalize(
    output_dir: Path,
    saved: list[Saved],
    wall: float,
    factory: sessionmaker[Session] | None,
    method: str,
) -> list[TrainedModel]:
    """Write the final cards (with the wall time), register each model, fill the separate manifest."""
    models: list[TrainedModel] = []
    for folder, model, card, pair in saved:
        card["wall_time_s"] = round(wall, 3)
        cards.save_card(folder, card)
        described = describe_trained(folder, model)
        models.append(TrainedModel(folder, described.fingerprint, card, pair))
        if factory is not None:
            register_trained(factory, described, card)
    if method == "separate":
        manifest = cards.load_manifest(output_dir)
        by_folder = {m.path.name: m.fingerprint for m in models}
        for entry in manifest["models"]:
            entry["fingerprint"] = by_folder[entry["folder"]]
        cards.save_manifest(output_dir, {k: v for k, v in manifest.items() if k not in {"format", "version"}})
    return models
