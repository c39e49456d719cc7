"""Page navigation: the page list of ``app.py`` and links between pages.

``app.py`` builds ``st.navigation`` from its Home function and every ``pages/*.py`` file (numbered
names give the order; pages added later by others appear without touching this module). Links go
through ``link``, which falls back to bold text when a page runs on its own (as in a unit test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"
HOME = "app.py"
EXPLORE = "pages/1_Explore.py"
COMPARE = "pages/2_Compare.py"
CURVES = "pages/3_Curves.py"
RUNS = "pages/4_Runs.py"
ICONS: dict[str, str] = {
    "1_Explore.py": ":material/grid_on:",
    "2_Compare.py": ":material/compare:",
    "3_Curves.py": ":material/show_chart:",
    "4_Runs.py": ":material/history:",
    "5_Demo.py": ":material/search:",
    "6_Train.py": ":material/model_training:",
}


def page_files() -> list[Path]:
    """Every page file under ``pages/``, in file-name order."""
    return sorted(p for p in PAGES_DIR.glob("*.py") if not p.name.startswith("_"))


def page_objects() -> list[Any]:
    """``st.Page`` objects of the page files (title and URL from the file name: 1_Explore -> Explore)."""
    return [st.Page(str(p.relative_to(ROOT)), icon=ICONS.get(p.name)) for p in page_files()]


def link(page: str, label: str, icon: str | None = None, where: Any = None) -> None:
    """A link to another page (bold text when the page is not part of a navigation, e.g. in tests)."""
    target = where if where is not None else st
    try:
        target.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        target.markdown(f"**{label}**")
