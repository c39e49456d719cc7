"""Matryoshka Lab: the entry point (``streamlit run app.py``). It only builds the navigation.

Every page, Home included, is a file under ``pages/`` (see ``ui.nav``).
"""

from __future__ import annotations

import os
import sys

import streamlit as st

from common import settings
from ui import nav

# `streamlit run app.py -- --read-only` (or `./lab.sh start -- --read-only`) = MLAB_READ_ONLY=1:
# process-wide and one-way, so every page and every core call sees it.
if "--read-only" in sys.argv[1:]:
    os.environ["MLAB_READ_ONLY"] = "1"
st.set_page_config(page_title="Matryoshka Lab", page_icon=":material/stacks:", layout="wide")
st.navigation(nav.page_objects(read_only=settings.read_only())).run()
