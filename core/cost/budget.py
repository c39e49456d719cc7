"""The best cell within a cost budget: a pure function over any (quality, cost) pair of columns."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.cost.keys import CostError

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class BudgetChoice:
    """The best sub-model within a cost budget."""

    checkpoint: str
    layer: int
    dim: int
    precision: str
    quality: float
    cost: float
    row: dict[str, Any] = field(default_factory=dict)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CostError(
            f"the table has no column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}"
        )


def best_under_budget(
    frame: pd.DataFrame, quality_col: str, cost_col: str, budget: float
) -> BudgetChoice | None:
    """The (checkpoint, layer, dim, precision) scoring highest with ``cost_col <= budget``; None if none fits.

    Ties on quality go to the cheaper cell, then to the first in (checkpoint, layer, dim, precision)
    order, so the answer is deterministic. Rows with NaN quality or cost are ignored. The checkpoint is
    named by the ``checkpoint`` column, else ``checkpoint_fp``.
    """
    name_col = "checkpoint" if "checkpoint" in frame.columns else "checkpoint_fp"
    _require_columns(frame, (quality_col, cost_col, name_col, "layer", "dim", "precision"))
    if budget is None or (isinstance(budget, float) and math.isnan(budget)):
        raise CostError(f"budget must be a number, got {budget!r}")
    quality = pd.to_numeric(frame[quality_col], errors="coerce")
    cost = pd.to_numeric(frame[cost_col], errors="coerce")
    fits = frame[quality.notna() & cost.notna() & (cost <= budget)].copy()
    if fits.empty:
        return None
    fits["_q"] = pd.to_numeric(fits[quality_col], errors="coerce")
    fits["_c"] = pd.to_numeric(fits[cost_col], errors="coerce")
    fits["_name"] = fits[name_col].astype(str)
    fits = fits.sort_values(
        ["_q", "_c", "_name", "layer", "dim", "precision"],
        ascending=[False, True, True, True, True, True],
        kind="stable",
    )
    best = fits.iloc[0]
    row = {k: v for k, v in fits.drop(columns=["_q", "_c", "_name"]).iloc[0].to_dict().items()}
    return BudgetChoice(
        checkpoint=str(best[name_col]),
        layer=int(best["layer"]),
        dim=int(best["dim"]),
        precision=str(best["precision"]),
        quality=float(best["_q"]),
        cost=float(best["_c"]),
        row=row,
    )
