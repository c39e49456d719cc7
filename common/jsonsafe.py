"""Plain JSON values: the one conversion used by storage (JSON columns), the CLI (--json) and cards."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON: NaN/inf become None, numpy and pandas values unwrapped, paths as text.

    >>> json_ready({"a": float("nan"), "b": (1, 2.5), 3: Path("/x")})
    {'a': None, 'b': [1, 2.5], '3': '/x'}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if all(type(v) is str for v in value):  # fast path: item ids, one list per stored cell
            return list(value)
        return [json_ready(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):  # datetime, pandas Timestamp
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def nan_to_none(value: float | None) -> float | None:
    """A float for JSON: NaN and inf (a constant-score correlation) become None.

    >>> nan_to_none(float("nan")), nan_to_none(0.5)
    (None, 0.5)
    """
    return json_ready(None if value is None else float(value))
