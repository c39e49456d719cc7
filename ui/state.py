"""Cross-page state: a few shared session-state keys mirrored in the URL so a link reproduces a view.

Shared keys (plain session-state values, never widget keys, so they survive page switches):

| key | holds | URL |
| --- | --- | --- |
| ``checkpoint`` | a checkpoint ref: its name, or a fingerprint prefix when names repeat | ``?checkpoint=default`` |
| ``checkpoints`` | comma-separated refs for multi-checkpoint pages (Compare, Curves) | ``?checkpoints=a,b`` |
| ``dataset`` | a dataset name (built-in or registered) | ``?dataset=stsb-test`` |
| ``metric`` | a metric key | ``?metric=cosine_spearman`` |
| ``precision`` | a precision | ``?precision=float32`` |
| ``backend`` | a deployment backend (torch, torch-bf16, onnx, onnx-int8) | ``?backend=onnx`` |

On the first run of a session the URL wins (a shared link); afterwards session state wins and every
page writes its values back to the URL (``publish``). Every other session-state key is prefixed with
its page (``explore_cell``, ``demo_query``); a page value that also travels in the URL under its public
name (``?layer=3``, ``?q=...``) is read from the URL once (``url_value("layer")``) and written back with
``show_in_url`` only, never stored under the unprefixed name.

Widgets own separate keys (``explore_checkpoint``); ``bind_widget`` seeds a widget from the shared
value before it is drawn and ``publish`` copies the chosen value back, which avoids Streamlit's clean-up
of widget state on pages that do not draw that widget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

SHARED_KEYS: tuple[str, ...] = ("checkpoint", "checkpoints", "dataset", "metric", "precision", "backend")
_URL_READ = "state_url_read"  # set of url keys already consumed this session
_URL_PENDING = "state_url_pending"  # shared values taken from a link, not yet checked against a picker


def init_shared() -> None:
    """Initialise every shared key once per session, from the URL when it carries one."""
    for key in SHARED_KEYS:
        if key not in st.session_state:
            value = st.query_params.get(key)
            st.session_state[key] = value if value else None
            if value:
                st.session_state.setdefault(_URL_PENDING, {})[key] = value


def warn_link(key: str, value: str, reason: str, instead: str = "") -> None:
    """Say that a link's ``key=value`` cannot be honoured, why, and what is shown instead."""
    shown = f"; showing {instead} instead" if instead else ""
    st.warning(f"Link value {key}={value[:80]!r} was not used: {reason}{shown}.", icon=":material/link_off:")


def _take_link_value(shared_key: str | None) -> str | None:
    """The link's value of a shared key the first time a picker binds it (then never again)."""
    pending: dict[str, str] = st.session_state.get(_URL_PENDING, {})
    return pending.pop(shared_key, None) if shared_key else None


def get(key: str) -> Any:
    """A shared value (None when unset)."""
    return st.session_state.get(key)


def url_value(key: str) -> str | None:
    """A page-specific URL value, returned only on the first call of the session for that key."""
    seen: set[str] = st.session_state.setdefault(_URL_READ, set())
    if key in seen:
        return None
    seen.add(key)
    value = st.query_params.get(key)
    return value or None


def url_int(key: str, low: int | None = None, high: int | None = None) -> int | None:
    """``url_value`` as an int in ``[low, high]``; None when absent.

    A value that is not an integer or lies outside the bounds is refused with a warning naming it (a
    shared link must never select a sub-model the checkpoint does not have) and None is returned.
    """
    value = url_value(key)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        warn_link(key, value, "it is not a whole number")
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        warn_link(key, value, f"it is outside {low}..{high} for this checkpoint")
        return None
    return number


def publish(key: str, value: Any) -> None:
    """Store a value under a shared key (``SHARED_KEYS``) and mirror it in the URL (None removes it)."""
    if key not in SHARED_KEYS:
        raise KeyError(f"{key!r} is not a shared key; page values go through show_in_url")
    st.session_state[key] = value
    show_in_url(key, value)


def show_in_url(key: str, value: Any) -> None:
    """Mirror a value in the URL under ``key`` (a list as a comma list; None or empty removes it)."""
    text = ",".join(str(v) for v in value) if isinstance(value, list | tuple) else value
    if text is None or text == "":
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != str(text):
        st.query_params[key] = str(text)


def bind_widget(
    widget_key: str, shared_key: str | None, options: Sequence[Any], default: Any, reason: str = ""
) -> None:
    """Before drawing a single-choice widget: make its value valid, preferring the shared value.

    A shared value that came from a link and is not among ``options`` is named in a warning with
    ``reason`` (default: the choices there are), once.
    """
    init_shared()
    linked = _take_link_value(shared_key)
    if linked is not None and linked not in options and shared_key is not None:
        choices = ", ".join(str(o) for o in options[:8]) + (" ..." if len(options) > 8 else "")
        warn_link(shared_key, linked, reason or f"the choices here are {choices}", repr(default))
    current = st.session_state.get(widget_key)
    if current in options:
        return
    shared = st.session_state.get(shared_key) if shared_key else None
    st.session_state[widget_key] = shared if shared in options else default


def bind_multi(
    widget_key: str, shared_key: str | None, options: Sequence[Any], default: Sequence[Any], reason: str = ""
) -> None:
    """Before drawing a multiselect: keep valid choices, else take the shared comma list or ``default``.

    Values of a link's comma list that are not among ``options`` are named in a warning, once.
    """
    init_shared()
    linked = _take_link_value(shared_key)
    unknown = [v for v in (linked or "").split(",") if v and v not in options]
    if unknown and shared_key is not None:
        what = ", ".join(repr(v) for v in unknown)
        st.warning(
            f"Link value {shared_key}: {what} {'was' if len(unknown) == 1 else 'were'} left out: "
            f"{reason or 'not among the choices here'}.",
            icon=":material/link_off:",
        )
    current = st.session_state.get(widget_key)
    if isinstance(current, list) and current and all(c in options for c in current):
        return
    shared = st.session_state.get(shared_key) if shared_key else None
    if isinstance(shared, str):
        shared = [s for s in shared.split(",") if s]
    chosen = [s for s in (shared or []) if s in options]
    st.session_state[widget_key] = chosen or [d for d in default if d in options]


def init_page(prefix: str, defaults: dict[str, Any]) -> None:
    """Initialise a page's own keys (``{prefix}_{name}``) once per session."""
    init_shared()
    for name, value in defaults.items():
        st.session_state.setdefault(f"{prefix}_{name}", value)
