"""``LabError``: the one base class of user mistakes.

A ``LabError`` (a missing checkpoint, a malformed dataset, an out-of-range knob, read-only mode...) is
shown as one line: ``error: ...`` on the command line, one ``st.error`` on a page. Any other exception
is a bug: it reaches the log with its traceback.
"""

from __future__ import annotations


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
