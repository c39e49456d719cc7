"""Guards shared by the pages: each shows why a page has nothing to draw yet, links onward, and stops.

Written once here so every page says the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import streamlit as st

from core.lab.queries import CheckpointRecord
from ui import nav

NOTHING_EVALUATED = "Nothing is evaluated yet. First evaluate the default grid on the Home page."


def stop(message: str, page: str, label: str, title: str | None = None) -> NoReturn:
    """Show the page's ``title`` (guards run before it is drawn), ``message`` and a link to ``page``; stop."""
    if title:
        st.title(title)
    st.info(message, icon=":material/info:")
    nav.link(page, label, icon=nav.icon_of(page))
    st.stop()
    raise AssertionError("unreachable: st.stop raises")  # for type checkers; st.stop never returns


def need_checkpoints(records: Sequence[CheckpointRecord], title: str) -> None:
    """Stop with "nothing evaluated yet" (and a link Home) when no checkpoint is registered."""
    if not records:
        stop(NOTHING_EVALUATED, nav.HOME, "Go to Home", title)


def need_results(with_results: Sequence[str], dataset: str, title: str) -> None:
    """Stop when no checkpoint has results on ``dataset`` (with a link to Explore)."""
    if not with_results:
        stop(
            f"No checkpoint has results on **{dataset}** yet: evaluate a grid on the Explore page "
            "(or the default grid on Home), then come back.",
            nav.EXPLORE,
            "Go to Explore",
            title,
        )


def need_runs(count: int, title: str) -> None:
    """Stop when no run is recorded yet."""
    if not count:
        stop(
            "No runs yet. Evaluate the default grid on the Home page; each evaluation is recorded here.",
            nav.HOME,
            "Go to Home",
            title,
        )
