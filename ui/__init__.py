"""Shared Streamlit helpers for the pages (the only package besides pages/ that imports streamlit).

- ``ui.state``: session-state keys shared across pages and synced with URL query params;
- ``ui.resources``: cached database session factory and cached reads (checkpoints, datasets, results);
- ``ui.pickers``: checkpoint / dataset / metric / precision widgets bound to the shared state;
- ``ui.errors``: ``user_errors()`` turns user mistakes into ``st.error`` messages, never tracebacks;
- ``ui.actions``: evaluate with a progress bar, register checkpoints and datasets, delete/resume runs.
"""
