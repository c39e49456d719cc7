"""Progress bars that say how long: counts, elapsed time and an estimate of the time left.

``progress_text`` is the pure part (tested by hand-worked values); ``Bar`` wraps ``st.progress`` and
restarts its clock when the phase changes (encoding, then scoring). Times are formatted by tqdm's
``format_interval`` (``01:05``, ``1:02:03``), the CLI's progress bars' format.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st
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

    def update(self, label: str, done: int, total: int, unit: str = "") -> None:
        """Show ``done`` of ``total`` under ``label`` (a new label restarts the clock)."""
        if label != self._phase:
            self._phase, self._started = label, time.monotonic()
        fraction = min(1.0, done / total) if total else 1.0
        self._bar.progress(
            fraction, text=progress_text(label, done, total, time.monotonic() - self._started, unit)
        )

    def empty(self) -> None:
        """Remove the bar."""
        self._bar.empty()
