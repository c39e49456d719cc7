"""Every table of the results database: import this (not a single table module) for the full metadata."""

from __future__ import annotations

from storage import cost_models, models, reference_models
from storage.base import Base

metadata = Base.metadata
TABLE_MODULES = (models, cost_models, reference_models)  # each defines its tables on ``Base.metadata``
