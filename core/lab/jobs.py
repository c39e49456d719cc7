"""Background training jobs: ``python -m core train`` in its own process, followed through files.

A job is a folder ``$MLAB_HOME/training-jobs/<id>/`` holding ``job.json`` (what was asked),
``progress.json`` (kept current by the training process: status, step, total, loss curve, output,
error), ``stdout.log``/``stderr.log``, and ``cancel`` once a cancel was asked. The process runs in its
own session, so it outlives the web page that started it; a page reload finds the job again by
listing the folder. A job whose process died without a final status reads as ``interrupted``.

Out of scope: the training itself (core/training/loop.py) and drawing (the Train page, core/figures).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import settings
from common.processes import pid_alive
from core import datasets
from core.training import loop

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = "training-jobs"
FINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted")
QUEUE_LOCK = "train.lock"  # held by the one training process that runs (core.lab.train_queue)
_children: dict[int, subprocess.Popen[bytes]] = {}  # jobs started by this process (reaped on poll)


@dataclass(frozen=True)
class TrainJob:
    """What a job's files say now."""

    id: str
    folder: Path
    status: str  # starting | running | completed | failed | cancelled | interrupted
    step: int
    total: int
    losses: list[float]
    output: str
    method: str
    error: str | None
    pid: int | None
    started_at: str
    fingerprints: list[str] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Share of steps done, in [0, 1]."""
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        """True while the job may still make progress."""
        return self.status not in FINAL_STATUSES


def jobs_dir() -> Path:
    """Folder of all training jobs (created on first use)."""
    path = settings.lab_home() / JOBS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_output_dir(method: str, now: datetime | None = None) -> Path:
    """Where a trained checkpoint goes when the user names no folder: ``$MLAB_HOME/trained/<method>-<time>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return settings.lab_home() / "trained" / f"{method}-{stamp}"


def command(
    config_file: Path, progress_file: Path, cancel_file: Path, threads: int | None = None
) -> list[str]:
    """The ``python -m core train --config FILE`` command line of a job (the config file holds every field),
    behind the lab's training queue (``core.lab.train_queue``: one job trains at a time)."""
    lock = str(jobs_dir() / QUEUE_LOCK)
    cmd = [sys.executable, "-m", "core.lab.train_queue", lock, "--",
           sys.executable, "-m", "core", "train", "--config", str(config_file), "--progress-file",
           str(progress_file), "--cancel-file", str(cancel_file), "--quiet"]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(threads)]
    return cmd


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, path)


def start_job(config: loop.TrainConfig, threads: int | None = None) -> TrainJob:
    """Validate ``config`` and start it in a background process; return the job as it starts.

    Raises:
        ReadOnlyError: in read-only demo mode.
        TrainingError: a bad option or a non-empty output folder (checked before starting).
    """
    settings.ensure_writable("training a checkpoint")
    loop.check_config(config)
    output = Path(config.output_dir).expanduser().resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise loop.TrainingError(f"output folder {str(output)!r} already exists and is not empty")
    now = datetime.now(UTC)
    waiting = [j for j in list_jobs() if j.active]  # another job trains (or waits): this one queues
    job_id = f"{now:%Y%m%d-%H%M%S-%f}-{config.method}"
    folder = jobs_dir() / job_id
    folder.mkdir()
    progress_file, cancel_file = folder / "progress.json", folder / "cancel"
    cmd = command(config.save(folder / "config.json"), progress_file, cancel_file, threads)
    _write_json(  # before the process starts, so the process only ever overwrites it
        progress_file,
        {
            "status": "queued" if waiting else "starting",
            "step": 0,
            "total": 0,
            "losses": [],
            "output": str(output),
            "method": config.method,
            "pid": None,
            "error": None,
            "started_at": now.isoformat(timespec="seconds"),
        },
    )
    try:
        with (folder / "stdout.log").open("wb") as out, (folder / "stderr.log").open("wb") as err:
            child = subprocess.Popen(  # our own interpreter and module
                cmd, cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
    except OSError as exc:
        _write_json(progress_file, {"status": "failed", "error": f"cannot start training: {exc}"})
        raise
    _children[child.pid] = child
    request = {"id": job_id, "config": config.to_dict(), "command": cmd, "pid": child.pid,
               "created_at": now.isoformat(timespec="seconds")}  # fmt: skip
    _write_json(folder / "job.json", request)
    return read_job(folder)


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` still runs (children of this process are polled, so they never linger as zombies)."""
    child = _children.get(pid) if pid is not None else None
    if child is not None:
        return child.poll() is None
    return pid_alive(pid)


def read_job(folder: str | Path) -> TrainJob:
    """The job in ``folder`` as its files say now (``interrupted`` if its process died mid-run)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {"status": "starting"}
    try:
        request = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        request = {}
    status = str(state.get("status", "starting"))
    error = state.get("error")
    pid = state.get("pid") or request.get("pid")
    if (
        status not in FINAL_STATUSES
        and not (status in ("starting", "queued") and pid is None)
        and not _alive(pid)
    ):
        # Re-read: the process may have written its final status just before exiting.
        try:
            state = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
            status, error = str(state.get("status")), state.get("error")
        except (OSError, ValueError):
            pass
        if status not in FINAL_STATUSES:
            status = "interrupted"
            tail = _tail(folder / "stderr.log")
            error = error or (
                f"the training process ended without a result: {tail}"
                if tail
                else "the training process ended without a result"
            )
    return TrainJob(
        id=folder.name,
        folder=folder,
        status=status,
        step=int(state.get("step", 0)),
        total=int(state.get("total", 0)),
        losses=[float(v) for v in state.get("losses", [])],
        output=str(state.get("output", "")),
        method=str(state.get("method", request.get("config", {}).get("method", ""))),
        error=error,
        pid=pid,
        started_at=str(state.get("started_at", "")),
        fingerprints=list(state.get("fingerprints", [])),
        request=request.get("config", {}),
    )


def _tail(path: Path, limit: int = 300) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-limit:] if lines else ""


def list_jobs() -> list[TrainJob]:
    """Every job, newest first."""
    folders = sorted((p for p in jobs_dir().iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
    return [read_job(p) for p in folders]


def evaluation_dataset(training_dataset: str) -> datasets.DatasetSpec | None:
    """Where a trained checkpoint is scored: the built-in test split of its training set (``stsb-train`` ->
    ``stsb-test``), else the training set itself when it is a built-in evaluation split; None otherwise."""
    builtins = datasets.builtin_datasets()
    name = str(training_dataset)
    if name.endswith("-train") and f"{name[: -len('-train')]}-test" in builtins:
        return builtins[f"{name[: -len('-train')]}-test"]
    spec = builtins.get(name)
    return spec if spec is not None and spec.split != "train" else None


def evaluated_marker(job: TrainJob) -> Path:
    """The file that records (as JSON) that a finished job's checkpoint was evaluated, so it happens once."""
    return job.folder / "evaluated.json"


def mark_evaluated(job: TrainJob, summary: dict[str, Any]) -> None:
    """Record that the job's checkpoint was evaluated (``summary``: dataset, cells)."""
    _write_json(evaluated_marker(job), summary)


def cancel_job(job: TrainJob | str | Path) -> None:
    """Ask a running job to stop at its next step (it then removes its partial output)."""
    settings.ensure_writable("cancelling training")
    folder = job.folder if isinstance(job, TrainJob) else Path(job)
    if not folder.is_absolute():
        folder = jobs_dir() / folder
    (folder / "cancel").touch()
    current = read_job(folder)
    if current.status == "queued" and current.pid is not None:  # still waiting for the lock: end it now
        with contextlib.suppress(ProcessLookupError):
            os.kill(current.pid, signal.SIGTERM)
        child = _children.get(current.pid)
        if child is not None:
            child.wait(timeout=10)
        state = json.loads((folder / "progress.json").read_text(encoding="utf-8"))
        _write_json(
            folder / "progress.json", {**state, "status": "cancelled", "error": "cancelled while queued"}
        )
