"""The training card: how a checkpoint was trained, saved as ``training_card.json`` beside its weights.

A card is a plain JSON object with a format line (``format``, ``version``) checked on load, so an
unknown or newer card is refused with a clear message instead of being misread. The same dict is
stored in the database with the checkpoint (``storage.repository.set_training_card``).
``core.checkpoints.fingerprint_folder`` ignores the card file, so the checkpoint's fingerprint is
that of its weights and configs only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from common.errors import LabError

CARD_FILE = "training_card.json"
CARD_FORMAT = "mlab-training-card"
CARD_VERSION = 1
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "mlab-separate-manifest"


class TrainingCardError(LabError):
    """A training card or manifest that is missing, malformed or of an unknown version."""


def _atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, allow_nan=False)  # strict JSON, no Infinity
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_card(folder: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` (format/version added) to ``folder/training_card.json``; return the path."""
    path = Path(folder) / CARD_FILE
    _atomic_write_json(path, {**card, "format": CARD_FORMAT, "version": CARD_VERSION})
    return path


def _read(path: Path, fmt: str, version: int) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TrainingCardError(f"{path}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise TrainingCardError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise TrainingCardError(f"{path}: not a {fmt} file")
    if data.get("version") != version:
        raise TrainingCardError(
            f"{path}: version {data.get('version')!r} is not supported (expected {version})"
        )
    return data


def load_card(folder: str | Path) -> dict[str, Any]:
    """Read and check the training card of a checkpoint folder."""
    return _read(Path(folder) / CARD_FILE, CARD_FORMAT, CARD_VERSION)


def save_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest of a ``separate`` run (one sub-folder per (layer, dim) pair)."""
    path = Path(folder) / MANIFEST_FILE
    _atomic_write_json(path, {**manifest, "format": MANIFEST_FORMAT, "version": CARD_VERSION})
    return path


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """Read a ``separate`` run's manifest: ``models`` is a list of {layer, dim, folder, fingerprint}."""
    return _read(Path(folder) / MANIFEST_FILE, MANIFEST_FORMAT, CARD_VERSION)
