"""Printing for ``python -m core``: rows as JSON, CSV or an aligned table; tqdm progress on stderr."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm import tqdm

from common.jsonsafe import json_ready

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send anything libraries print to stderr, so ``--json`` output stays clean."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def tqdm_progress(enabled: bool) -> ProgressFn | None:
    """A progress callback drawing one tqdm bar per phase on stderr (None when disabled)."""
    if not enabled:
        return None
    bars: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = bars[phase] = tqdm(
                total=total,
                desc=phase,
                unit="text" if phase == "encode" else "cell",
                file=sys.stderr,
                leave=False,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def print_rows(rows: list[dict[str, Any]], fmt: str, keys: Sequence[str] | None = None) -> None:
    """Print ``rows`` on stdout as ``json`` (only the document), ``csv`` or an aligned ``table``."""
    if fmt == "json":  # the bytes of json.dump(rows, indent=1), written a row at a time
        for i, row in enumerate(rows):
            text = json.dumps(json_ready(row), indent=1, allow_nan=False).replace("\n", "\n ")
            sys.stdout.write(("[\n " if i == 0 else ",\n ") + text)
        sys.stdout.write("\n]\n" if rows else "[]\n")
        return
    columns = list(keys or (rows[0].keys() if rows else []))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
        return
    if not rows:
        print("(nothing stored yet)")
        return
    widths = {c: max(len(c), *(len(fmt_value(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(fmt_value(row.get(c)).ljust(widths[c]) for c in columns))


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
