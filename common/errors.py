"""``LabError``: the one base class of user mistakes.

A ``LabError`` (a missing checkpoint, a malformed dataset, an out-of-range knob, read-only mode...) is
shown as one line: ``error: ...`` on the command line, one ``st.error`` on a page. Any other exception
is a bug: it reaches the log with its traceback.
"""

from __future__ import annotations

import logging
import re
import traceback


class LabError(ValueError):
    """A user-facing error: the input or the request cannot be honoured, and nothing was stored.

    Subclasses ``ValueError`` so callers that caught the older per-module ``ValueError`` subclasses keep
    working.

    >>> isinstance(LabError("no such dataset"), ValueError)
    True
    """


MAX_ECHO_CHARS = 80  # longest value quoted back in an error message


def clip(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr`` of a value for an error message, cut to about ``limit`` characters.

    >>> clip("x" * 200, 10)
    "'xxxxxxxxxx'... (200 characters)"
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


_CREDENTIALS = re.compile(r"(?P<head>(?:[A-Za-z][\w+.-]*://)?[^\s:/?#@'\"]*):(?P<secret>[^@\s]+)@")


def redact(text: str, one_line: bool = True) -> str:
    """``text`` with the password of any URL in it replaced by ``***`` (parseable or not).

    ``one_line`` also folds line breaks and runs of spaces (an error line); tracebacks keep their lines.

    >>> redact("cannot use postgresql://bob:s3cret@db:5x/lab")
    'cannot use postgresql://bob:***@db:5x/lab'
    >>> redact("no scheme: bob:s3cret@db/lab")
    'no scheme: bob:***@db/lab'
    """
    return _CREDENTIALS.sub(r"\g<head>:***@", " ".join(text.split()) if one_line else text)


class RedactCredentials(logging.Filter):
    """A logging filter that removes URL passwords from a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), one_line=False), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)), one_line=False)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, one_line=False)
        return True
