"""Progress bars that say how long: counts, elapsed time and an estimate of the time left.

``progress_text`` is the pure part (tested by hand-worked values); ``Bar`` wraps ``st.progress`` and
restarts its clock when the phase changes (encoding, then scoring). Times are formatted by tqdm's
``format_interval`` (``01:05``, ``1:02:03``), the CLI's progress bars' format.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx
from tqdm import tqdm


def progress_text(label: str, done: int, total: int, elapsed_s: float, unit: str = "") -> str:
    """``label: done/total · mm:ss elapsed, about mm:ss left`` (no estimate before the first item).

    >>> progress_text("Scoring cells", 3, 12, 30.0)
    'Scoring cells: 3/12 · 00:30 elapsed, about 01:30 left'
    >>> progress_text("Training", 10, 120, 25.0, unit="step")
    'Training: 10/120 · 00:25 elapsed · 2.5 s/step, about 04:35 left'
    >>> progress_text("Encoding texts", 0, 100, 2.0)
    'Encoding texts: 0/100 · 00:02 elapsed'
    """
    text = f"{label}: {done}/{total} · {tqdm.format_interval(elapsed_s)} elapsed"
    if done <= 0 or total <= 0:
        return text
    per_item = elapsed_s / done
    if unit:
        text += f" · {per_item:.1f} s/{unit}"
    if done < total:
        text += f", about {tqdm.format_interval(per_item * (total - done))} left"
    return text


class Bar:
    """An ``st.progress`` bar with counts, elapsed time and time left, per phase."""

    def __init__(self, text: str, where: Any = None) -> None:
        self._bar = (where if where is not None else st).progress(0.0, text=text)
        self._phase: str | None = None
        self._started = time.monotonic()
        self._value, self._done = 0.0, ""

    def update(self, label: str, done: int, total: int, unit: str = "") -> None:
        """Show ``done`` of ``total`` under ``label`` (a new label restarts the clock)."""
        if label != self._phase:
            self._phase, self._started = label, time.monotonic()
        fraction = min(1.0, done / total) if total else 1.0
        self._value, self._done = fraction, f"{done}/{total}"
        self._bar.progress(
            fraction, text=progress_text(label, done, total, time.monotonic() - self._started, unit)
        )

    def empty(self) -> None:
        """Remove the bar."""
        self._bar.empty()

    def stopped(self, note: str) -> None:
        """After Streamlit's Stop: the bar says ``Stopped at <phase> <done/total>. <note>``.

        Once Stop is pressed, every ``st`` call on the script thread raises Streamlit's StopException
        again, so the bar could neither be updated nor removed and stayed frozen mid-way. Calls from
        another thread carrying the script's context are delivered (Streamlit's documented way for
        threads), so the last word is written from one, before the script ends.
        """
        ctx = get_script_run_ctx(suppress_warning=True)
        if ctx is None:  # bare mode (no app): nothing is shown anyway
            return
        value = self._value
        where = f" at {self._phase.lower()} {self._done}" if self._phase else ""
        text = f"Stopped{where}. {note}"

        def write() -> None:
            self._bar.progress(value, text=text)

        thread = threading.Thread(target=write, name="mlab-progress-stopped")
        add_script_run_ctx(thread, ctx)
        thread.start()
        thread.join(timeout=5)
