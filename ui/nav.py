"""Page navigation: the page list ``app.py`` hands to ``st.navigation``, and links between pages.

Every page is a file under ``pages/`` (numbered names give the order; pages added later appear without
touching this module). ``0_Home.py`` is the default page (served at ``/``); the others are served at
their name without the number (``1_Explore.py`` -> ``/Explore``): these paths are public, shared links
use them. In read-only demo mode the pages that only write (Train) are left out of the navigation.
Links go through ``link``, which falls back to bold text when a page runs on its own (a unit test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"
HOME = "pages/0_Home.py"
EXPLORE = "pages/1_Explore.py"
COMPARE = "pages/2_Compare.py"
CURVES = "pages/3_Curves.py"
RUNS = "pages/4_Runs.py"
DEMO = "pages/5_Demo.py"
TRAIN = "pages/6_Train.py"
HOME_URL_PATH = "home"  # the default page answers at "/"; its own path stays what it was
ICONS: dict[str, str] = {
    "0_Home.py": ":material/home:",
    "1_Explore.py": ":material/grid_on:",
    "2_Compare.py": ":material/compare:",
    "3_Curves.py": ":material/show_chart:",
    "4_Runs.py": ":material/history:",
    "5_Demo.py": ":material/search:",
    "6_Train.py": ":material/model_training:",
}
WRITE_ONLY_PAGES = frozenset({"6_Train.py"})  # hidden in read-only demo mode


def page_files(read_only: bool = False) -> list[Path]:
    """Every page file under ``pages/`` in file-name order (without write-only pages when read-only)."""
    files = sorted(p for p in PAGES_DIR.glob("*.py") if not p.name.startswith("_"))
    return [p for p in files if not (read_only and p.name in WRITE_ONLY_PAGES)]


def page_objects(read_only: bool = False) -> list[Any]:
    """``st.Page`` objects of the page files (title and URL from the file name: 1_Explore -> Explore)."""
    pages = []
    for path in page_files(read_only):
        relative = str(path.relative_to(ROOT))
        if relative == HOME:
            pages.append(st.Page(relative, title="Home", icon=ICONS[path.name], url_path=HOME_URL_PATH,
                                 default=True))  # fmt: skip
        else:
            pages.append(st.Page(relative, icon=ICONS.get(path.name)))
    return pages


def icon_of(page: str) -> str | None:
    """The navigation icon of a page path (``pages/1_Explore.py``)."""
    return ICONS.get(Path(page).name)


def link(page: str, label: str, icon: str | None = None, where: Any = None) -> None:
    """A link to another page (bold text when the page is not part of a navigation, e.g. in tests)."""
    target = where if where is not None else st
    try:
        target.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        target.markdown(f"**{label}**")
