"""Error display: a user mistake is one ``st.error`` line naming the bad input; anything else is a bug.

A user mistake is a ``common.errors.LabError`` (the one base class of user errors: a bad checkpoint,
dataset, knob, read-only mode ...): its message names the input. Every other exception, plain
``ValueError``/``KeyError``/``IndexError``/``LookupError`` included, is a bug: it is logged with its
traceback on the server and the page says so, with the traceback in a closed expander (left out in
read-only demo mode, where the page never shows server paths).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from common import settings
from common.errors import LabError, RedactCredentials, redact

logger = logging.getLogger("mlab.ui")
logger.addFilter(RedactCredentials())  # no URL password reaches the log


def show(exc: BaseException, what: str = "") -> None:
    """Show an exception: a user error as one line, prefixed with what was being done; a bug in full."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, LabError):
        st.error(redact(f"{prefix}{exc}"), icon=":material/error:")
        return
    logger.error("unexpected error%s", f" while {what}" if what else "", exc_info=exc)
    st.error(
        redact(
            f"{prefix}unexpected {type(exc).__name__}: {exc}. This is a bug in the lab, not a problem with "
            "your input; the traceback is in the server log."
        ),
        icon=":material/bug_report:",
    )
    if not settings.read_only():
        with st.expander("Traceback"):
            st.code(redact("".join(traceback.format_exception(exc)), one_line=False), language="text")


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
