"""Train: fine-tune a 2D Matryoshka checkpoint in a background process, with live progress and cancel."""

from __future__ import annotations

import streamlit as st

from common import settings
from common.errors import LabError
from core import datasets, submodels
from core.lab import jobs
from core.training import METHODS, LossConfig, TrainConfig, parse_pairs
from core.training.loop import resolve_pairs
from ui import errors, pickers, resources, state, train_widgets

METHOD_HELP = {
    "starbucks": "fixed (layer, dim) pairs small to full, plus a KL term to the full model (Starbucks)",
    "2dmse": "one random layer per step, all dims (sentence-transformers Matryoshka2dLoss)",
    "mrl": "all dims at full depth only (MatryoshkaLoss)",
    "full": "plain fine-tuning of the full model",
    "separate": "one truncated model per pair, trained at its dim only",
}
OTHER = "(a file or folder path)"

state.init_page("train", {"job": None})
st.title("Train")
st.caption("Fine-tune a checkpoint so its small sub-models work well. Training runs in the background: "
           "reloading this page or closing the tab does not stop it.")  # fmt: skip
if settings.read_only():
    st.info("Training is disabled in read-only demo mode.", icon=":material/lock:")
    st.stop()

# ---- inputs
records = resources.checkpoints()
refs = pickers.checkpoint_refs(records)
options = list(refs) if "default" in refs else ["default", *refs]
left, middle, right = st.columns(3)
base_ref = left.selectbox(
    "Base checkpoint", options, key="train_base",
    format_func=lambda r: pickers.checkpoint_label(refs[r]) if r in refs else "default (6 x 384)",
)  # fmt: skip
method = middle.selectbox(
    "Method", METHODS, key="train_method", help="; ".join(f"{k}: {v}" for k, v in METHOD_HELP.items())
)
sts_paths = {c.name: (c.name if c.builtin else str(c.spec.path))  # the job resolves built-in names or paths
             for c in resources.dataset_choices() if c.kind == "sts" and c.spec is not None}  # fmt: skip
sts_names = list(sts_paths)
data_options = [*dict.fromkeys(["stsb-train", *sts_names]), OTHER]
data_choice = right.selectbox("Training data", data_options, key="train_dataset")
if data_choice == OTHER:
    dataset = st.text_input(
        "Path: an STS .tsv, or a BEIR folder with qrels/train.tsv", key="train_path"
    ).strip()
else:
    dataset = sts_paths.get(data_choice, data_choice)
st.caption(METHOD_HELP[method] + (". STS data trains with CoSENT, BEIR pairs with MultipleNegativesRanking."))

record = refs.get(base_ref)
shape = (record.num_layers, record.embedding_dim) if record else (6, 384)
diagonal = ",".join(f"{k}:{d}" for k, d in submodels.default_diagonal(*shape))
pairs_text = st.text_input("Pairs (layer:dim)", key="train_pairs", placeholder=diagonal,
                           help=f"Empty: the scaled Starbucks diagonal {diagonal}.")  # fmt: skip
c1, c2, c3, c4, c5, c6 = st.columns(6)
epochs = c1.number_input("Epochs", 1, 100, 1, key="train_epochs")
max_steps = c2.number_input(
    "Max steps", 0, 1_000_000, 0, key="train_max_steps", help="0: no limit (epochs decide)"
)
batch = c3.number_input("Batch size", 2, 1024, 32, key="train_batch")
lr = c4.number_input("Learning rate", 1e-7, 1e-2, 2e-5, format="%.1e", key="train_lr")
warmup = c5.number_input("Warmup ratio", 0.0, 0.9, 0.1, step=0.05, key="train_warmup")
seed = c6.number_input("Seed", 0, 2**31 - 1, 42, key="train_seed")
with st.expander("Loss options"):
    k1, k2, k3, k4 = st.columns(4)
    kl_weight = k1.number_input("KL weight", 0.0, 10.0, 0.3, step=0.1, key="train_kl_weight")
    kl_mode = k2.selectbox("KL mode (starbucks)", ["embedding", "similarity"], key="train_kl_mode",
                           help="embedding: the paper's KL over embedding dims; similarity: over in-batch "
                           "similarity distributions (temperature below)")  # fmt: skip
    kl_temperature = k3.number_input("KL temperature", 0.01, 10.0, 0.3, step=0.05, key="train_kl_temperature")
    full_weight = k4.number_input("Full-model weight", 0.0, 10.0, 1.0, step=0.1, key="train_full_weight")
    detach = st.checkbox("Detach the full-model teacher in the KL term", True, key="train_detach")
output = st.text_input("Output folder", key="train_output", placeholder=str(jobs.default_output_dir(method)),
                       help="Empty: a new folder under the lab's home.")  # fmt: skip

if st.button("Start training", type="primary", key="train_start", icon=":material/play_arrow:"):
    with errors.user_errors("cannot start training"):
        if not dataset:
            raise LabError("give the path of the training data")
        pairs = resolve_pairs(parse_pairs(pairs_text), *shape)  # refused here, before any job starts
        if data_choice == OTHER:
            datasets.resolve_dataset(dataset)  # a missing file or folder is named now, not by a failed job
        config = TrainConfig(
            output_dir=output.strip() or str(jobs.default_output_dir(method)),
            base=(record.path if record.kind == "local" else record.name) if record else "default",
            method=method, dataset=dataset, pairs=pairs, epochs=int(epochs),
            max_steps=int(max_steps) or None, batch_size=int(batch), learning_rate=float(lr),
            warmup_ratio=float(warmup), seed=int(seed),
            loss=LossConfig(kl_weight=float(kl_weight), kl_mode=kl_mode, kl_temperature=float(kl_temperature),
                            full_weight=float(full_weight), detach_teacher=detach),
        )  # fmt: skip
        started = jobs.start_job(config)
        st.session_state["train_job"] = started.id
        st.session_state["train_job_select"] = started.id

# ---- jobs
st.subheader("Training jobs")
all_jobs = jobs.list_jobs()
if not all_jobs:
    st.caption("No training job yet.")
    st.stop()
by_id = {j.id: j for j in all_jobs}
if st.session_state.get("train_job_select") not in by_id:
    st.session_state["train_job_select"] = (
        st.session_state["train_job"] if st.session_state["train_job"] in by_id else all_jobs[0].id
    )
# No status in the option labels: Streamlit keeps a keyed selectbox's first labels in the browser, so
# a changing status would show stale there; the panel below shows the live status.
chosen = st.selectbox(
    "Job", list(by_id), key="train_job_select", format_func=lambda i: train_widgets.job_label(by_id[i])
)
st.session_state["train_job"] = chosen


running = by_id[chosen].active
st.fragment(train_widgets.job_panel, run_every=2.0 if running else None)(chosen, running)
