"""Provenance of a run: what software, machine and inputs produced its numbers.

Scope: one JSON-able dict per run (stored in ``runs.provenance``). Static parts (package versions, CPU
model, git revision of the lab) are computed once per process; a call costs well under a millisecond
after the first. torch is never imported here: its thread count is read only if torch is loaded.

Example::

    >>> p = collect_provenance({"name": "default", "fingerprint": "ab12"}, "cd34")
    >>> sorted(p)[:3]
    ['checkpoint', 'cpu_count', 'cpu_model']
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_VERSION = 1

# package key -> distribution names to try (the first installed one wins)
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "sentence-transformers": ("sentence-transformers",),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
    "numpy": ("numpy",),
    "scipy": ("scipy",),
    "sqlalchemy": ("SQLAlchemy",),
    "alembic": ("alembic",),
    "pandas": ("pandas",),
}

CHECKPOINT_KEYS = ("name", "kind", "location", "revision", "fingerprint", "num_layers", "embedding_dim")
LAB_ROOT = Path(__file__).resolve().parent.parent


def _version(candidates: tuple[str, ...]) -> str | None:
    for dist in candidates:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results (None when absent)."""
    return {key: _version(dists) for key, dists in PACKAGES.items()}


@functools.cache
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=LAB_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def lab_git_revision() -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes to tracked files) of the lab's repository, or (None, None)."""
    revision = _git("rev-parse", "HEAD")
    if revision is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return revision, (bool(status) if status is not None else None)


def torch_threads() -> int | None:
    """torch's intra-op thread count, if torch is loaded in this process."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return int(torch.get_num_threads())
    except Exception:  # a half-imported or stubbed torch
        return None


def _checkpoint_summary(checkpoint_info: Any) -> dict[str, Any] | None:
    if checkpoint_info is None:
        return None
    if not isinstance(checkpoint_info, dict) and hasattr(checkpoint_info, "to_dict"):
        checkpoint_info = checkpoint_info.to_dict()
    return {key: checkpoint_info.get(key) for key in CHECKPOINT_KEYS if key in checkpoint_info}


def collect_provenance(
    checkpoint_info: dict[str, Any] | None, dataset_fingerprint: str | None
) -> dict[str, Any]:
    """Software, machine, lab revision and inputs of a run starting now (a JSON-able dict)."""
    revision, dirty = lab_git_revision()
    return {
        "provenance_version": PROVENANCE_VERSION,
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads(),
        "packages": dict(package_versions()),
        "lab_git_revision": revision,
        "lab_git_dirty": dirty,
        "checkpoint": _checkpoint_summary(checkpoint_info),
        "dataset_fingerprint": dataset_fingerprint,
    }
