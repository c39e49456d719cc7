"""Is a process still alive? The one pid check of the lab (runs, training jobs, stale work folders)."""

from __future__ import annotations

import psutil

PID_REUSE_TOLERANCE_S = 5.0  # a process created this long after the thing it owns is a reused pid


def pid_alive(pid: int | None, started_at: float | None = None) -> bool:
    """True when ``pid`` runs on this host (zombies count as gone).

    With ``started_at`` (a POSIX timestamp), a process created more than ``PID_REUSE_TOLERANCE_S`` after
    it is a reused pid and counts as gone too.

    >>> import os
    >>> pid_alive(os.getpid()), pid_alive(None)
    (True, False)
    """
    if pid is None or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or proc.create_time() <= started_at + PID_REUSE_TOLERANCE_S
    except psutil.AccessDenied:
        return True  # exists, owned by someone else
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
