"""``ui.errors``: a user error is one line; any other exception is a bug, logged with its traceback and
shown with the traceback in an expander (never in read-only demo mode)."""

from __future__ import annotations

import logging

import pytest
from streamlit.testing.v1 import AppTest


def _page(kind: str) -> None:
    from core import datasets
    from ui import errors

    with errors.user_errors("loading the thing"):
        if kind == "user":
            raise datasets.DatasetError("dataset 'x.tsv' line 2: score 'abc' is not a number")
        if kind == "key":
            raise KeyError("layer")  # a bug: a lookup that should not fail
        if kind == "value":
            raise ValueError("math domain error")  # a plain ValueError is a bug too: not a LabError
        [][0]  # an IndexError raised by the interpreter


def run(kind: str) -> AppTest:
    return AppTest.from_function(_page, args=(kind,), default_timeout=30).run()


def test_a_user_error_is_one_line_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mlab.ui"):
        at = run("user")
    assert not at.exception
    assert [e.value for e in at.error] == [
        "loading the thing: dataset 'x.tsv' line 2: score 'abc' is not a number"
    ]
    assert not at.expander and not caplog.records


@pytest.mark.parametrize("kind", ["key", "index", "value"])
def test_a_bug_is_logged_with_its_traceback_and_shown_as_one(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mlab.ui"):
        at = run(kind)
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    expected = {"key": "KeyError", "index": "IndexError", "value": "ValueError"}[kind]
    assert message.startswith(f"loading the thing: unexpected {expected}") and "bug" in message
    assert [e.label for e in at.expander] == ["Traceback"]
    shown = at.expander[0].code[0].value
    assert "Traceback (most recent call last)" in shown and expected in shown
    (record,) = [r for r in caplog.records if r.name == "mlab.ui"]
    assert record.exc_info is not None and record.exc_info[0].__name__ == expected
    assert "while loading the thing" in record.getMessage()


def test_read_only_mode_keeps_the_traceback_in_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    with caplog.at_level(logging.ERROR, logger="mlab.ui"):
        at = run("key")
    assert len(at.error) == 1 and not at.expander
    assert any(r.exc_info for r in caplog.records)


def test_url_passwords_never_reach_the_page_or_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 15: credentials are redacted in every message and log line (user errors and bugs)."""

    def page() -> None:
        from common.errors import LabError
        from ui import errors

        with errors.user_errors("opening"):
            raise LabError("cannot reach postgresql://bob:s3cr3t-Pa55@db:5432/lab")
        with errors.user_errors("reading"):
            raise RuntimeError("driver said: postgresql://bob:s3cr3t-Pa55@db:5432/lab refused")

    with caplog.at_level(logging.ERROR, logger="mlab.ui"):
        at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception and len(at.error) == 2
    shown = " ".join(e.value for e in at.error) + " ".join(c.value for c in at.expander[0].code)
    assert "s3cr3t-Pa55" not in shown and "bob:***@db" in shown
    logged = caplog.text + " ".join(r.exc_text or "" for r in caplog.records)
    assert caplog.records and "s3cr3t-Pa55" not in logged and "bob:***@db" in logged
