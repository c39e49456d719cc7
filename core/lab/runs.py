"""The one run lifecycle: open a run row, record progress (a heartbeat), close it as it ended.

Evaluation, cost measurement and training all go through :func:`run_lifecycle`::

    with run_lifecycle(session_factory, run_id) as run:
        ...                     # work, committed piece by piece
        run.progress(done)      # cells/steps done so far, also a heartbeat
    # completed on a normal exit; 'interrupted' on Ctrl-C or Streamlit's Stop; 'failed' on any error

A run killed outright (``kill -9``) cannot close itself: the next ``repository.mark_interrupted_runs``
(called before new work and when runs are listed) marks it interrupted from its dead pid.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from common import settings
from core.training.loop import TrainingCancelled
from storage import repository
from storage.repository import RESUMABLE_STATUSES

__all__ = ["RESUMABLE_STATUSES", "RunHandle", "delete_run", "is_user_stop", "run_lifecycle"]

# Exceptions that mean "stopped by the user", not "broken": the run can be resumed.
STOP_EXCEPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt,)


def is_user_stop(exc: BaseException) -> bool:
    """A user's stop: Ctrl-C, or Streamlit's Stop button / rerun (which raise their own control-flow errors)."""
    return isinstance(exc, STOP_EXCEPTIONS) or type(exc).__name__ in {"StopException", "RerunException"}


@dataclass
class RunHandle:
    """An open run: ``progress`` stores how far it got (throttled to every ``every_s`` seconds)."""

    session_factory: sessionmaker[Session]
    run_id: int
    every_s: float = 0.0
    _last: float = field(default=0.0, repr=False)

    def progress(self, done: int, total: int | None = None, force: bool = False) -> None:
        """Store ``done`` (and a new ``total``) with a heartbeat, unless one was stored < ``every_s`` ago."""
        now = time.monotonic()
        if not force and self.every_s and now - self._last < self.every_s and (total is None or done < total):
            return
        self._last = now
        with self.session_factory() as s, s.begin():
            repository.record_progress(s, self.run_id, done, total)


@contextmanager
def run_lifecycle(
    session_factory: sessionmaker[Session], run_id: int, every_s: float = 0.0
) -> Iterator[RunHandle]:
    """Close run ``run_id`` as completed, interrupted (a user's stop) or failed (with the error text)."""
    handle = RunHandle(session_factory, run_id, every_s)
    try:
        yield handle
    except BaseException as exc:
        status = "interrupted" if is_user_stop(exc) else "failed"
        text = "stopped by the user" if is_user_stop(exc) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TrainingCancelled):
            status, text = "cancelled", str(exc)
        with session_factory() as s, s.begin():
            repository.finish_run(s, run_id, status, error_text=text)
        raise
    with session_factory() as s, s.begin():
        repository.finish_run(s, run_id, "completed")


def delete_run(session_factory: sessionmaker[Session], run_id: int) -> None:
    """Delete a run with the results and item scores it wrote (refused in read-only demo mode).

    Raises:
        ReadOnlyError: in read-only demo mode.
        NotFoundError: no such run.
    """
    settings.ensure_writable("deleting a run")
    with session_factory() as s, s.begin():
        repository.delete_run(s, run_id)
