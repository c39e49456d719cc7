"""``python -m core cost``: measure (or reuse stored) encoding and search cost of a checkpoint's sub-models."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from common.jsonsafe import json_ready
from core import ann, scoring
from core.cli.output import stdout_to_stderr, tqdm_progress
from core.cost import ENCODING_KEYS, EXACT, SEARCH_KEYS, CostError
from core.lab.cost import CostReport, measure_checkpoint_cost
from core.lab.store import open_store


def add_parser(subparsers: Any) -> None:
    """Register ``python -m core cost`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "cost",
        help="measure encoding latency, throughput, FLOPs and params per layer (and search cost per cell)",
        description="Measure (or reuse stored) cost of a checkpoint's sub-models on this machine. With --json, "
        "stdout is a JSON list: one object per layer (keys " + ", ".join(ENCODING_KEYS) + ", ...); with "
        "--dataset one object per (layer, dim, precision, index kind), adding the search columns.",
    )
    p.add_argument("--checkpoint", required=True, help="'default', a local folder, or org/name[@revision]")
    p.add_argument("--layers", default="all", help="comma-separated layers or 'all' (default: 1..L)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size for throughput (default 32)")
    p.add_argument("--seq-len", type=int, default=32, help="synthetic input length in tokens (default 32)")
    p.add_argument("--repeats", type=int, default=30, help="timed single-query runs per layer (default 30)")
    p.add_argument("--batch-repeats", type=int, default=5, help="timed batches per layer (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per layer first (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch (and faiss) threads (default: torch's)")
    p.add_argument("--dataset", help="also measure index bytes and search time on this retrieval dataset")
    p.add_argument("--dims", default=None, help="dims for search cost (default: 32, 64, ... full)")
    p.add_argument("--precision", default="float32,float16,int8,binary", help="precisions for search cost")
    p.add_argument("--k", type=int, default=10, help="hits per query for search cost (default 10)")
    p.add_argument(
        "--rescore", type=int, default=0, help="also int8/binary with float rescoring of top rescore*k"
    )
    p.add_argument(
        "--ann", default="", help="approximate indexes too: hnsw,ivf (knobs: hnsw:m=16:ef_search=128)"
    )
    p.add_argument(
        "--backend",
        default="torch",
        help="what runs each k-layer sub-model: torch (float32), torch-bf16, onnx, onnx-int8 (default torch)",
    )
    p.add_argument("--remeasure", action="store_true", help="measure again even when stored")
    p.add_argument("--json", action="store_true", help="print a JSON list on stdout (nothing else)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_cost, keys=(*ENCODING_KEYS, "batch_size", "seq_len"))


def cost_rows(report: CostReport) -> list[dict[str, Any]]:
    """The CLI rows of a report: per layer, or per (layer, dim, precision, index kind) with search costs."""
    layer_rows = []
    for rec in report.encoding.to_dict("records"):
        row = {key: json_ready(rec[key]) for key in ENCODING_KEYS}
        row.update(
            checkpoint=report.checkpoint.name,
            checkpoint_fingerprint=report.checkpoint.fingerprint,
            latency_ms_mean=json_ready(rec["latency_ms_mean"]),
            batch_ms_p50=json_ready(rec["batch_ms_p50"]),
            batch_size=int(rec["batch_size"]),
            seq_len=int(rec["seq_len"]),
            threads=report.machine.torch_threads,
            machine_fingerprint=report.machine.fingerprint,
            machine=report.machine.label,
            backend=rec.get("backend", "torch"),
            model_bytes=json_ready((rec.get("details") or {}).get("model_bytes")),
        )
        layer_rows.append(row)
    if report.dataset_fp is None:
        return layer_rows
    search_keys = (
        *SEARCH_KEYS,
        "recall_vs_float32",
        "search_ms_p50",
        "search_ms_p95",
        "n_docs",
        "n_queries",
        "k",
    )
    search_rows = [
        {key: json_ready(rec[key]) for key in search_keys} for rec in report.search.to_dict("records")
    ]
    rank = {p: i for i, p in enumerate(("float32", "float16", "int8", "binary"))}
    search_rows.sort(
        key=lambda r: (r["index_kind"] != EXACT, r["index_kind"], rank.get(r["precision"], 9), r["dim"])
    )
    return [
        {**layer, **search, "dataset_fingerprint": report.dataset_fp}
        for layer in layer_rows
        for search in search_rows
    ]


def cmd_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``python -m core cost``: measure or reuse, then return the rows to print."""
    if args.threads is not None:
        if args.threads < 1:
            raise CostError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    layers = scoring.parse_int_list(args.layers, "--layers")
    dims = scoring.parse_int_list(args.dims, "--dims")
    precisions = scoring.parse_precisions(args.precision)
    ann_specs = ann.parse_ann(args.ann)
    for name in ("batch_size", "seq_len", "repeats", "batch_repeats", "k"):
        if getattr(args, name) < 1:
            raise CostError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    with stdout_to_stderr():
        report = measure_checkpoint_cost(
            args.checkpoint,
            layers=layers,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            repeats=args.repeats,
            batch_repeats=args.batch_repeats,
            warmup=args.warmup,
            dataset=args.dataset,
            dims=dims,
            precisions=precisions,
            k=args.k,
            rescore=args.rescore,
            ann_specs=ann_specs,
            remeasure=args.remeasure,
            backend=args.backend,
            session_factory=open_store(),
            progress=tqdm_progress(not args.quiet),
        )
    print(
        f"{report.checkpoint.name} on {report.machine.label}: {report.measured} measured, {report.reused} reused"
        + (f" (run {report.run_id})" if report.run_id else ""),
        file=sys.stderr,
    )
    if args.dataset and not args.json:
        args.keys = (*ENCODING_KEYS, *SEARCH_KEYS)
    return cost_rows(report)
