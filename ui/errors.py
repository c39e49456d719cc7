"""Error display: user mistakes become one ``st.error`` line naming the bad input, never a traceback.

Every user-facing error of the engine is a ``ValueError`` subclass whose message names the input
(``CheckpointError``, ``DatasetError``, ``EvaluationError``, ``StorageError``, ``PrecisionError``) or
the read-only ``PermissionError``; anything else is a bug: it is logged with its traceback on the
server and shown as one line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.settings import ReadOnlyError

logger = logging.getLogger("mlab.ui")
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, ReadOnlyError, FileNotFoundError, LookupError)


def show(exc: BaseException, what: str = "") -> None:
    """Show an exception as one error line, prefixed with what was being done."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, USER_ERRORS):
        st.error(f"{prefix}{exc}", icon=":material/error:")
        return
    logger.exception("unexpected error%s", f" while {what}" if what else "", exc_info=exc)
    st.error(
        f"{prefix}unexpected {type(exc).__name__}: {exc} (details are in the server log)",
        icon=":material/bug_report:",
    )


@contextmanager
def user_errors(what: str = "") -> Iterator[None]:
    """Run a block; show any error with ``show`` instead of raising (``st.stop``/``st.rerun`` pass)."""
    try:
        yield
    except Exception as exc:  # Streamlit's stop/rerun are BaseExceptions and pass through
        show(exc, what)


def fail(message: str) -> None:
    """Show an error and stop the page."""
    st.error(message, icon=":material/error:")
    st.stop()
