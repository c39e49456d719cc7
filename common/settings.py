"""Process-wide settings, each read from one environment variable with a documented default.

| variable | meaning | default |
| --- | --- | --- |
| MLAB_HOME | folder for the lab's own files (database, caches, trained checkpoints) | the user data dir |
| MLAB_DATABASE_URL | SQLAlchemy URL of the results database | sqlite:///$MLAB_HOME/lab.sqlite3 |
| MLAB_CACHE_DIR | embedding cache folder | $MLAB_HOME/embedding-cache |
| MLAB_READ_ONLY | "1" opens the lab for an audience: no registering, uploads, training, deleting | off |
| MLAB_TRUST_REMOTE_CODE | comma-separated checkpoint names allowed to run their own code | none |
| MLAB_HUB_TIMEOUT | seconds to wait for the Hugging Face hub before calling it unreachable | 3 |
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from common.errors import LabError

APP_NAME = "matryoshka-lab"


class SettingsError(LabError):
    """An MLAB_* environment variable names something the lab cannot use; the message names it."""


def _folder(variable: str, path: Path) -> Path:
    """Create (if needed) the folder an environment variable names, or say why it cannot be one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SettingsError(
            f"{variable}={str(path)!r} is a file, not a folder: point it at a folder"
        ) from None
    except NotADirectoryError:
        raise SettingsError(
            f"{variable}={str(path)!r}: part of that path is a file, so it cannot be a folder"
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"{variable}={str(path)!r} cannot be used as a folder ({exc.strerror or exc})"
        ) from None
    if not path.is_dir():
        raise SettingsError(f"{variable}={str(path)!r} is not a folder")
    return path


def lab_home() -> Path:
    """The lab's own folder (created on first use)."""
    if os.environ.get("MLAB_HOME"):
        return _folder("MLAB_HOME", Path(os.environ["MLAB_HOME"]).expanduser())
    return _folder("the lab's data folder", Path(platformdirs.user_data_dir(APP_NAME)))


def database_url() -> str:
    """SQLAlchemy URL of the results database."""
    url = os.environ.get("MLAB_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{lab_home() / 'lab.sqlite3'}"


def cache_dir() -> Path:
    """Folder of the on-disk embedding cache (created on first use)."""
    if os.environ.get("MLAB_CACHE_DIR"):
        return _folder("MLAB_CACHE_DIR", Path(os.environ["MLAB_CACHE_DIR"]).expanduser())
    return _folder("MLAB_HOME (its embedding-cache)", lab_home() / "embedding-cache")


def read_only() -> bool:
    """True when the lab runs in read-only demo mode."""
    return os.environ.get("MLAB_READ_ONLY", "").strip().lower() in {"1", "true", "yes", "on"}


def trusted_remote_code() -> frozenset[str]:
    """Checkpoint names (hub ids or paths) allowed to load with ``trust_remote_code=True``."""
    raw = os.environ.get("MLAB_TRUST_REMOTE_CODE", "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def hub_timeout_s() -> float:
    """Seconds to wait for the Hugging Face hub before declaring it unreachable."""
    try:
        return max(0.1, float(os.environ.get("MLAB_HUB_TIMEOUT", "3")))
    except ValueError:
        return 3.0


class ReadOnlyError(LabError):
    """Raised by core when a write is attempted in read-only demo mode."""


def ensure_writable(action: str) -> None:
    """Refuse ``action`` in read-only demo mode (enforced in core, not only hidden in the UI)."""
    if read_only():
        raise ReadOnlyError(f"the lab is in read-only demo mode (MLAB_READ_ONLY): {action} is disabled")
