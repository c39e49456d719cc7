"""Demo: two sub-models side by side on a live query, or one sentence pair across the whole grid.

The URL holds the whole view (mode, corpus, both sub-models, query or sentences), so a link restores it.
"""

from __future__ import annotations

import streamlit as st

from core import datasets, demo
from ui import demo_widgets, errors, resources, state
from ui import progress as progress_bar

# ---- sidebar inputs
try:  # A: the full model; B: the second Starbucks pair of its checkpoint, e.g. (2, 64) of 6 x 384
    model_a = demo_widgets.model_picker("a", "Sub-model A")
    model_b = demo_widgets.model_picker("b", "Sub-model B", default_step=1)
except Exception as exc:
    errors.show(exc, "loading the sub-models")
    st.stop()

# ---- title
st.title("Demo: what a smaller sub-model gives up, and what it saves")

# ---- state
state.init_page("demo", {"docs": "", "mode": "Search"})
url_mode = state.url_value("mode")
if url_mode in ("Search", "Sentence pair"):
    st.session_state["demo_mode"] = url_mode
elif url_mode:
    state.warn_link("mode", url_mode, "the modes are Search and Sentence pair", st.session_state["demo_mode"])

# ---- render
mode = st.radio(
    "Mode", ["Search", "Sentence pair"], key="demo_mode", horizontal=True, label_visibility="collapsed"
)
state.show_in_url("mode", mode)
if mode == "Search":
    choices = {c.name: c.spec for c in resources.dataset_choices() if c.kind == datasets.RETRIEVAL and c.spec}
    options = [*choices, "Paste documents"]
    url_corpus = state.url_value("corpus")
    if url_corpus and url_corpus not in options:
        state.warn_link("corpus", url_corpus, f"the documents here are {', '.join(options)}", options[0])
    state.bind_widget("demo_corpus", None, options, url_corpus if url_corpus in options else options[0])
    corpus_name = st.selectbox("Documents", options, key="demo_corpus")
    state.show_in_url("corpus", corpus_name)
    corpus: demo.DemoCorpus | None = None
    with errors.user_errors(f"documents {corpus_name!r}"):
        if corpus_name == "Paste documents":
            text = st.text_area("One document per line (kept in memory only)", key="demo_docs", height=150)
            corpus = demo.corpus_from_text(text) if text.strip() else None
        else:
            corpus = demo_widgets.dataset_corpus(choices[corpus_name])
    if corpus is not None and corpus.query_texts:
        examples = ["(type your own)", *corpus.query_texts[:200]]

        def use_example() -> None:
            if st.session_state["demo_example"] != examples[0]:
                st.session_state["demo_query"] = st.session_state["demo_example"]

        st.selectbox("Example queries from the dataset", examples, key="demo_example", on_change=use_example)
    demo_widgets.seed_text("q", "demo_query")
    query = st.text_input("Query", key="demo_query", placeholder="Type a query and press Enter")
    state.show_in_url("q", query.strip() or None)
    if corpus is None or not query.strip():
        st.info("Pick documents and type a query to see both top-10 lists.", icon=":material/search:")
        st.stop()
    bar = progress_bar.Bar("Encoding the corpus once (then cached) ...")

    def progress(done: int, total: int) -> None:
        bar.update("Encoding the corpus once (then cached)", done, total)

    with errors.user_errors(f"searching {corpus.name}"):
        both = demo.side_by_side(model_a, model_b, corpus, query, progress=progress)
        bar.empty()
        demo_widgets.search_results(both)
else:
    pair_precision = st.radio(
        "Precision", ["float32", "float16", "binary"], key="demo_pair_prec", horizontal=True
    )
    demo_widgets.seed_text("s1", "demo_s1")
    demo_widgets.seed_text("s2", "demo_s2")
    left, right = st.columns(2)
    s1 = left.text_input("Sentence 1", key="demo_s1", placeholder="A man is playing a guitar.")
    s2 = right.text_input("Sentence 2", key="demo_s2", placeholder="Someone plays an instrument.")
    state.show_in_url("s1", s1.strip() or None)
    state.show_in_url("s2", s2.strip() or None)
    if not s1.strip() or not s2.strip():
        st.info(
            "Type two sentences to see their similarity at every (layers, dims) cell.",
            icon=":material/compare_arrows:",
        )
        st.stop()
    with errors.user_errors("sentence pair"):
        demo_widgets.pair_view(model_a, model_b, s1, s2, pair_precision)
