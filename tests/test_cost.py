"""Cost model (core.cost, storage cost tables): FLOPs/params by hand, latency structure, upserts, migration,
cost frame, budget and Pareto on hand-made points, the ``python -m core cost`` contract.

No timing thresholds: measured numbers are only checked for structure (positive, p50 <= p95, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from core import checkpoints, cost, quantize, submodels, views
from core.checkpoints import LoadedCheckpoint
from core.lab import cost as lab_cost
from core.lab.store import open_store
from storage import cost_repository, db, repository
from storage.schema import metadata
from tests.tinymodel import build_tiny_checkpoint, run_core

REPO_ROOT = Path(__file__).resolve().parent.parent
CK_FP = "c" * 32
CK2_FP = "e" * 32
DS_FP = "d" * 32
H, I_SIZE, LAYERS = 48, 96, 3  # the tiny model: hidden 48, intermediate 2 * 48, 3 layers

# The cheapest timing knobs: these tests check what is stored, not how fast anything is.
QUICK: dict[str, Any] = {"batch_size": 2, "seq_len": 8, "batch_repeats": 1, "warmup": 0}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny", layers=LAYERS, hidden=H)


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path) -> LoadedCheckpoint:
    return checkpoints.load(str(tiny_folder))


def _beir(root: Path, n_docs: int = 30) -> Path:
    """A small BEIR folder: n_docs documents, 4 queries with judgments."""
    root.mkdir(parents=True, exist_ok=True)
    words = ["alpha", "beta", "gamma", "delta", "wing", "flow", "heat", "shock", "plate", "boundary"]
    docs = [
        {"_id": f"d{i}", "title": words[i % 10], "text": " ".join(words[(i * j) % 10] for j in range(1, 6))}
        for i in range(n_docs)
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": f"{words[i]} {words[i + 3]}"} for i in range(4)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


# ---------------------------------------------------------------- FLOPs and parameters


def test_flops_per_token_by_hand_on_the_tiny_model(tiny: LoadedCheckpoint) -> None:
    shape = cost.encoder_shape(tiny.model)
    assert shape.num_layers == LAYERS and shape.hidden_size == H and shape.attention_width == H
    # Q, K, V, output (4 h^2) + FFN up and down (2 h i) weights per layer
    assert shape.linear_weights == (4 * H * H + 2 * H * I_SIZE,) * LAYERS
    for seq_len in (1, 32, 128):
        per_layer = 8 * H * H + 4 * H * I_SIZE + 4 * seq_len * H
        for k in range(LAYERS + 1):
            assert cost.flops_per_token(shape, k, seq_len) == k * per_layer
    assert cost.flops_per_token(shape, 1, 32) == 43008  # 18432 + 18432 + 6144


def test_params_used_equal_torch_count_of_a_truncated_copy(tiny: LoadedCheckpoint) -> None:
    shape = cost.encoder_shape(tiny.model)
    vocab = tiny.model[0].auto_model.config.vocab_size
    # embeddings: word + position (128) + token type (2) + LayerNorm (2h)
    assert shape.base_params == vocab * H + 128 * H + 2 * H + 2 * H
    # a layer: 4 attention Linear (h^2 + h) + LN (2h) + FFN (h i + i) + (i h + h) + LN (2h)
    assert (
        shape.layer_params
        == (4 * (H * H + H) + 2 * H + (H * I_SIZE + I_SIZE) + (I_SIZE * H + H) + 2 * H,) * LAYERS
    )
    for k in range(LAYERS + 1):
        copy = submodels.truncated_copy(tiny.model, k)
        counted = sum(p.numel() for p in copy.parameters())
        assert cost.params_used(shape, k) + shape.pooler_params == counted  # the unused pooler is excluded
    with pytest.raises(cost.CostError, match="layer 4 is outside"):
        cost.params_used(shape, LAYERS + 1)


def test_truncated_sharing_weights_is_a_real_k_layer_model_and_leaves_the_original(
    tiny: LoadedCheckpoint,
) -> None:
    texts = ["a wing in a shock", "heat flow over a plate"]
    before = tiny.model.encode(texts, convert_to_numpy=True)
    for k in (1, 2):
        shared = cost.truncated_sharing_weights(tiny.model, k)
        assert len(cost.layer_stack(shared[0].auto_model)) == k
        reference = submodels.truncated_copy(tiny.model, k).encode(texts, convert_to_numpy=True)
        np.testing.assert_allclose(shared.encode(texts, convert_to_numpy=True), reference, atol=1e-6)
        first = next(shared.parameters())
        assert first.data_ptr() == next(tiny.model.parameters()).data_ptr()  # weights shared, not copied
    assert len(cost.layer_stack(tiny.model[0].auto_model)) == LAYERS
    assert tiny.model[0].auto_model.config.num_hidden_layers == LAYERS
    np.testing.assert_allclose(tiny.model.encode(texts, convert_to_numpy=True), before, atol=1e-7)


def test_synthetic_features_have_the_stated_shape(tiny: LoadedCheckpoint) -> None:
    feats = cost.synthetic_features(tiny.model, 3, 16)
    assert feats["input_ids"].shape == (3, 16) and int(feats["attention_mask"].sum()) == 48
    with pytest.raises(cost.CostError, match="seq_len 500"):
        cost.synthetic_features(tiny.model, 1, 500)  # the tiny model has 128 positions
    with pytest.raises(cost.CostError, match="batch size"):
        cost.synthetic_features(tiny.model, 0, 16)


def test_measure_encoding_returns_sane_structure(tiny: LoadedCheckpoint) -> None:
    rows = cost.measure_encoding(
        tiny.model, [3, 1], batch_size=4, seq_len=8, repeats=3, batch_repeats=2, warmup=1
    )
    shape = cost.encoder_shape(tiny.model)
    assert [r.layer for r in rows] == [1, 3]
    for r in rows:
        assert 0 < r.latency_ms_p50 <= r.latency_ms_p95
        assert r.latency_ms_mean > 0 and r.throughput_per_s > 0 and r.batch_ms_p50 > 0
        assert r.throughput_per_s == pytest.approx(4 / (r.batch_ms_p50 / 1e3))
        assert r.flops_per_token == cost.flops_per_token(shape, r.layer, 8)
        assert r.params == cost.params_used(shape, r.layer)
        assert (r.batch_size, r.seq_len, r.repeats, r.batch_repeats) == (4, 8, 3, 2)
        assert r.threads == torch.get_num_threads()
    with pytest.raises(cost.CostError, match="repeats"):
        cost.measure_encoding(tiny.model, [1], repeats=0)


def test_machine_fingerprint_depends_on_torch_threads() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cost.current_machine()
        assert one == cost.current_machine() and one.fingerprint == cost.current_machine().fingerprint
        torch.set_num_threads(2)
        two = cost.current_machine()
    finally:
        torch.set_num_threads(threads)
    assert one.torch_threads == 1 and two.torch_threads == 2
    assert one.fingerprint != two.fingerprint
    assert one.cpu_model and one.torch_version == torch.__version__ and one.logical_cores >= 1
    assert set(one.to_dict()) >= {
        "cpu_model",
        "logical_cores",
        "torch_threads",
        "torch_version",
        "fingerprint",
    }


# ---------------------------------------------------------------- storage


def _register(factory: sessionmaker[Session], fps: tuple[str, ...] = (CK_FP,), dataset: bool = True) -> None:
    with factory() as s, s.begin():
        for i, fp in enumerate(fps):
            repository.upsert_checkpoint(
                s, name=f"ck{i}", kind="local", location=f"/m/{i}", revision=None, fingerprint=fp,
                path=f"/m/{i}", num_layers=2, hidden_size=8, embedding_dim=8, pooling="mean",
                similarity="cosine", max_seq_length=32,
            )  # fmt: skip
        if dataset:
            repository.upsert_dataset(
                s, name="tiny-beir", kind="retrieval", path="/d", split="test", fingerprint=DS_FP, n_items=4
            )


def _machine(threads: int = 1) -> cost.Machine:
    return cost.Machine("Test CPU", 4, 2, threads, "2.13.0", "x86_64")


def _enc_row(
    layer: int, machine: cost.Machine, fp: str = CK_FP, latency: float = 1.0, **kw: Any
) -> dict[str, Any]:
    row = {
        "checkpoint_fp": fp, "layer": layer, "machine_fp": machine.fingerprint, "batch_size": 32, "seq_len": 32,
        "latency_ms_p50": latency * layer, "latency_ms_p95": 2 * latency * layer, "latency_ms_mean": latency,
        "throughput_per_s": 100.0 / layer, "batch_ms_p50": 10.0 * layer, "flops_per_token": 1000 * layer,
        "params": 500 + 100 * layer, "repeats": 3, "batch_repeats": 2,
    }  # fmt: skip
    row.update(kw)
    return row


def _search_row(
    dim: int, precision: str, machine: cost.Machine, fp: str = CK_FP, ms: float = 0.5
) -> dict[str, Any]:
    return {
        "checkpoint_fp": fp, "dataset_fp": DS_FP, "machine_fp": machine.fingerprint, "dim": dim,
        "precision": precision, "index_kind": cost.EXACT, "layer": 2, "n_docs": 30, "n_queries": 4, "k": 10,
        "bytes_per_vector": quantize.bytes_per_vector(dim, precision),
        "index_bytes": 30 * quantize.bytes_per_vector(dim, precision), "build_s": 0.01,
        "search_ms_per_query": ms, "search_ms_p50": ms, "search_ms_p95": 2 * ms, "recall_at_k": None,
        "recall_vs_float32": 1.0 if precision == "float32" else 0.5,
    }  # fmt: skip


def test_migration_applies_on_top_of_storage_and_matches_the_models(db_url: str) -> None:
    db.init_db(db_url)
    assert "0002_cost_tables" in db.known_revisions()  # the cost tables' migration, below later ones
    assert db.current_revision(db_url) == db.head_revision()
    engine = db.get_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"checkpoints", "results", "runs", "machines", "encoding_costs", "search_costs"} <= tables
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    uniques = {u["name"]: u["column_names"] for u in inspect(engine).get_unique_constraints("encoding_costs")}
    assert uniques["uq_encoding_costs_key"] == [
        "checkpoint_fp",
        "layer",
        "machine_fp",
        "batch_size",
        "seq_len",
        "backend",  # issue 12 (0005_backends)
    ]
    uniques = {u["name"]: u["column_names"] for u in inspect(engine).get_unique_constraints("search_costs")}
    assert uniques["uq_search_costs_key"] == [
        "checkpoint_fp", "dataset_fp", "dim", "precision", "index_kind", "machine_fp",
    ]  # fmt: skip
    db.migrate(db_url, "0001_initial")  # down: the cost tables go, the storage tables stay
    tables = set(inspect(engine).get_table_names())
    assert "encoding_costs" not in tables and "machines" not in tables and "results" in tables
    db.migrate(db_url, "head")
    assert "search_costs" in set(inspect(engine).get_table_names())


def test_cost_rows_upsert_without_duplicates_and_key_on_the_machine(db_url: str) -> None:
    factory = db.init_db(db_url)
    _register(factory)
    fast, slow = _machine(1), _machine(2)
    with factory() as s, s.begin():
        for m in (fast, slow):
            cost_repository.upsert_machine(s, m.fingerprint, m.to_dict())
        cost_repository.upsert_machine(s, fast.fingerprint, fast.to_dict())  # again: no duplicate
        cost_repository.upsert_encoding_costs(s, [_enc_row(1, fast), _enc_row(2, fast)])
        cost_repository.upsert_encoding_costs(s, [_enc_row(1, slow, latency=5.0)])
        cost_repository.upsert_search_costs(
            s, [_search_row(8, "float32", fast), _search_row(8, "binary", fast)]
        )
    with factory() as s, s.begin():  # re-measure: replaced in place
        cost_repository.upsert_encoding_costs(s, [_enc_row(1, fast, latency=3.0)])
        cost_repository.upsert_search_costs(s, [_search_row(8, "binary", fast, ms=0.25)])
    with factory() as s:
        assert len(cost_repository.list_machines(s)) == 2
        enc = cost_repository.encoding_costs_frame(s, CK_FP)
        search = cost_repository.search_costs_frame(s, CK_FP)
        assert len(cost_repository.encoding_costs_frame(s, CK_FP, machine_fp=slow.fingerprint)) == 1
    assert len(enc) == 3 and not enc.duplicated(list(cost_repository.ENCODING_KEY)).any()
    by_key = enc.set_index(["machine_fp", "layer"])["latency_ms_p50"]
    assert by_key[(fast.fingerprint, 1)] == 3.0 and by_key[(slow.fingerprint, 1)] == 5.0
    assert set(enc["machine"]) == {fast.label, slow.label}
    assert len(search) == 2
    binary = search[search["precision"] == "binary"].iloc[0]
    assert binary["search_ms_per_query"] == 0.25 and np.isnan(binary["recall_at_k"])
    assert binary["index_bytes"] == 30 and binary["bytes_per_vector"] == 1


def test_deleting_a_cost_run_deletes_its_rows(db_url: str) -> None:
    factory = db.init_db(db_url)
    _register(factory)
    m = _machine()
    with factory() as s, s.begin():
        cost_repository.upsert_machine(s, m.fingerprint, m.to_dict())
        run = repository.start_run(s, "cost", CK_FP, DS_FP, {}, 2, {})
        cost_repository.upsert_encoding_costs(s, [_enc_row(1, m)], run.id)
        cost_repository.upsert_search_costs(s, [_search_row(8, "float32", m)], run.id)
    with factory() as s, s.begin():
        repository.delete_run(s, run.id)
    with factory() as s:
        assert cost_repository.encoding_costs_frame(s).empty and cost_repository.search_costs_frame(s).empty


def test_cost_frame_is_a_joinable_grid_from_one_machine(db_url: str) -> None:
    factory = db.init_db(db_url)
    _register(factory, (CK_FP, CK2_FP))
    old, new = _machine(1), _machine(2)
    with factory() as s, s.begin():
        for m in (old, new):
            cost_repository.upsert_machine(s, m.fingerprint, m.to_dict())
        # `old` measured both checkpoints, `new` only one: `old` covers more, so it is chosen
        cost_repository.upsert_encoding_costs(
            s, [_enc_row(k, old, fp) for k in (1, 2) for fp in (CK_FP, CK2_FP)]
        )
        cost_repository.upsert_encoding_costs(s, [_enc_row(1, new, CK_FP, latency=9.0)])
        cost_repository.upsert_search_costs(s, [_search_row(4, p, old) for p in ("float32", "binary")])
    with factory() as s:
        frame = lab_cost.cost_frame(s, [CK_FP, CK2_FP])
        assert lab_cost.cost_columns(s, [CK_FP]) == list(lab_cost.MEASURED_COLUMNS)
        assert lab_cost.cost_columns(s, [CK2_FP]) == ["latency_ms_p50", "latency_ms_p95", "throughput_per_s",
                                                  "flops_per_token", "params"]  # fmt: skip
        assert lab_cost.cost_columns(s, ["f" * 32]) == []
        assert lab_cost.cost_frame(s, ["f" * 32]).empty
        newer = lab_cost.cost_frame(s, CK_FP, machine_fp=new.fingerprint)
    assert list(frame.columns) == list(lab_cost.COST_FRAME_COLUMNS)
    assert len(frame) == 2 * 2 * 8 * 4  # checkpoints x layers x dims 1..8 x precisions
    assert not frame.duplicated(list(lab_cost.COST_FRAME_KEYS)).any()
    assert set(frame["machine_fp"]) == {old.fingerprint}
    cell = frame.set_index(list(lab_cost.COST_FRAME_KEYS))
    assert cell.loc[(CK_FP, 2, 4, "binary"), "latency_ms_p50"] == 2.0
    assert cell.loc[(CK_FP, 2, 4, "binary"), "search_ms_per_query"] == 0.5
    assert np.isnan(cell.loc[(CK_FP, 2, 4, "int8"), "search_ms_per_query"])  # not measured
    assert cell.loc[(CK_FP, 1, 8, "float32"), "index_bytes"] == 30 * 32  # n_docs * bytes per vector
    assert np.isnan(cell.loc[(CK2_FP, 1, 8, "float32"), "index_bytes"])  # no search measured for CK2
    assert newer["latency_ms_p50"].dropna().unique().tolist() == [9.0]  # layer 1 only on that machine
    # the Curves join (core.views) takes it as is
    points = pd.DataFrame({"checkpoint": "ck0", "checkpoint_fp": CK_FP, "layer": [1, 2], "dim": [4, 8],
                           "precision": ["binary", "float32"], "value": [0.5, 0.7]})  # fmt: skip
    joined = views.with_measured_costs(points, frame)
    assert joined["latency_ms_p50"].tolist() == [1.0, 2.0]
    assert joined["index_bytes"].tolist() == [30 * 1, 30 * 32]


# ---------------------------------------------------------------- budget and Pareto


def _points() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("b", 1, 32, "float32", 0.70, 2.0),
            ("a", 2, 64, "float32", 0.80, 4.0),
            ("a", 2, 64, "int8", 0.80, 3.0),  # same quality, cheaper: wins the tie
            ("a", 1, 32, "binary", 0.60, 0.5),
            ("c", 1, 16, "float32", float("nan"), 0.1),  # NaN quality: ignored
            ("c", 3, 16, "float32", 0.90, float("nan")),  # NaN cost: ignored
        ],
        columns=["checkpoint", "layer", "dim", "precision", "value", "ms"],
    )


def test_best_under_budget_on_hand_made_points() -> None:
    points = _points()
    best = cost.best_under_budget(points, "value", "ms", 3.5)
    assert best is not None
    assert (best.checkpoint, best.layer, best.dim, best.precision, best.quality, best.cost) == (
        "a", 2, 64, "int8", 0.80, 3.0,
    )  # fmt: skip
    assert cost.best_under_budget(points, "value", "ms", 2.0).precision == "float32"  # type: ignore[union-attr]
    assert cost.best_under_budget(points, "value", "ms", 1.0).precision == "binary"  # type: ignore[union-attr]
    assert cost.best_under_budget(points, "value", "ms", 0.4) is None
    twins = pd.DataFrame(  # equal quality and cost: the first by (checkpoint, layer, dim, precision)
        [("z", 1, 8, "int8", 0.5, 1.0), ("y", 2, 8, "int8", 0.5, 1.0), ("y", 1, 16, "int8", 0.5, 1.0)],
        columns=["checkpoint", "layer", "dim", "precision", "value", "ms"],
    )
    chosen = cost.best_under_budget(twins, "value", "ms", 1.0)
    assert chosen is not None and (chosen.checkpoint, chosen.layer, chosen.dim) == ("y", 1, 16)
    with pytest.raises(cost.CostError, match="no column"):
        cost.best_under_budget(points, "value", "latency", 1.0)


def _dominated_brute_force(q: np.ndarray, c: np.ndarray) -> list[bool]:
    on = []
    for i in range(len(q)):
        if np.isnan(q[i]) or np.isnan(c[i]):
            on.append(False)
            continue
        beaten = any(
            q[j] >= q[i] and c[j] <= c[i] and (q[j] > q[i] or c[j] < c[i])
            for j in range(len(q))
            if not (np.isnan(q[j]) or np.isnan(c[j]))
        )
        on.append(not beaten)
    return on


def test_pareto_front_on_hand_made_points() -> None:
    frame = pd.DataFrame(
        {
            "c": [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 0.5, 5.0],
            "value": [0.5, 0.7, 0.6, 0.7, 0.9, 0.8, 0.8, float("nan"), 0.9],
        }
    )
    # 0: cheapest valid; 1: beats 2 at the same cost; 3: same quality as 1, dearer; 4: best quality;
    # 5 and 6: dominated duplicates (4 is cheaper and better); 7: NaN; 8: same quality as 4, dearer
    assert views.pareto_front(frame, "c").tolist() == [
        True,
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    duplicates = pd.DataFrame({"c": [1.0, 1.0, 2.0], "value": [0.5, 0.5, 0.6]})
    assert views.pareto_front(duplicates, "c").tolist() == [True, True, True]  # exact twins stay together
    single = pd.DataFrame({"c": [3.0], "value": [0.1]})
    assert views.pareto_front(single, "c").tolist() == [True]
    rng = np.random.default_rng(0)
    for _ in range(20):  # against the O(n^2) definition, with many ties
        random = pd.DataFrame(
            {"c": rng.integers(0, 5, 25).astype(float), "value": rng.integers(0, 5, 25) / 4}
        )
        expected = _dominated_brute_force(random["value"].to_numpy(), random["c"].to_numpy())
        assert views.pareto_front(random, "c").tolist() == expected


# ---------------------------------------------------------------- search cost and the whole pipeline


def test_measure_search_structure_and_recall_of_float32() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(120, 16)).astype(np.float32)
    queries = rng.normal(size=(6, 16)).astype(np.float32)
    from core.ann import AnnSpec

    rows = cost.measure_search(
        corpus, queries, [8, 16], k=5, rescore=2, ann_specs=[AnnSpec("ivf", nlist=3, nprobe=3)],
        repeats=1, single_queries=3, layer=2, skip={(16, "int8", cost.EXACT)},
    )  # fmt: skip
    kinds = {(r.dim, r.precision, r.index_kind) for r in rows}
    expected = {
        (d, p, k)
        for d in (8, 16)
        for p, k in cost.search_kinds(quantize.PRECISIONS, 2, [AnnSpec("ivf", nlist=3, nprobe=3)], 120)
    }
    assert kinds == expected - {(16, "int8", cost.EXACT)}
    for r in rows:
        assert r.bytes_per_vector == quantize.bytes_per_vector(r.dim, r.precision)
        assert r.index_bytes == 120 * r.bytes_per_vector and r.n_docs == 120 and r.layer == 2
        assert r.search_ms_per_query > 0 and 0 < r.search_ms_p50 <= r.search_ms_p95 and r.build_s >= 0
        assert 0.0 <= r.recall_vs_float32 <= 1.0
        if r.index_kind == cost.EXACT:
            assert r.recall_at_k is None
        if r.index_kind.startswith(
            "ivf"
        ):  # every list probed: exact up to ties (int8/binary scores tie often)
            assert r.recall_at_k is not None and 0.0 <= r.recall_at_k <= 1.0
            if r.precision in ("float32", "float16"):
                assert r.recall_at_k == 1.0
    exact32 = [r for r in rows if r.precision == "float32" and r.index_kind == cost.EXACT]
    assert [r.recall_vs_float32 for r in exact32] == [1.0, 1.0]
    with pytest.raises(cost.CostError, match="outside"):
        cost.measure_search(corpus, queries, [17])


def test_measure_checkpoint_cost_stores_and_reuses(tiny_folder: Path, tmp_path: Path) -> None:
    beir = _beir(tmp_path / "beir")
    kwargs: dict[str, Any] = dict(
        layers=[1, 3], batch_size=4, seq_len=8, repeats=2, batch_repeats=1, warmup=0,
        dataset=str(beir), dims=[16, 48], precisions=["float32", "binary"], k=5, rescore=2,
        session_factory=open_store(),
    )  # fmt: skip
    first = lab_cost.measure_checkpoint_cost(str(tiny_folder), **kwargs)
    assert first.measured == 2 + 2 * 3 and first.reused == 0 and first.run_id is not None
    assert first.encoding["layer"].tolist() == [1, 3]
    assert len(first.search) == 2 * 3  # dims x (float32, binary, binary+rescore2)
    second = lab_cost.measure_checkpoint_cost(str(tiny_folder), **kwargs)
    assert second.measured == 0 and second.reused == 8 and second.run_id is None
    pd.testing.assert_frame_equal(second.encoding, first.encoding)
    third = lab_cost.measure_checkpoint_cost(str(tiny_folder), **{**kwargs, "layers": [2, 3]})
    assert third.measured == 1 and third.encoding["layer"].tolist() == [2, 3]  # only layer 2 was missing
    again = lab_cost.measure_checkpoint_cost(str(tiny_folder), remeasure=True, **kwargs)
    assert again.measured == 8
    factory = open_store()
    with factory() as s:
        enc = cost_repository.encoding_costs_frame(s, first.checkpoint.fingerprint)
        search = cost_repository.search_costs_frame(s, first.checkpoint.fingerprint)
        runs = repository.list_runs(s)
    assert sorted(enc["layer"]) == [1, 2, 3] and len(search) == 6  # re-measured in place
    assert {r.kind for r in runs} == {"cost"} and {r.status for r in runs} == {"completed"}
    assert runs[0].provenance["machine"]["fingerprint"] == first.machine.fingerprint
    with pytest.raises(cost.CostError, match="retrieval dataset"):
        lab_cost.measure_checkpoint_cost(
            str(tiny_folder), layers=[1], dataset="stsb-test", repeats=1, session_factory=open_store()
        )
    with pytest.raises(cost.CostError, match="layer 7 is outside"):
        lab_cost.measure_checkpoint_cost(str(tiny_folder), layers=[7], session_factory=open_store())


def test_read_only_mode_refuses_to_measure_but_reads_stored(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common import settings

    kwargs: dict[str, Any] = dict(QUICK, layers=[1], repeats=1, session_factory=open_store())
    lab_cost.measure_checkpoint_cost(str(tiny_folder), **kwargs)
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    assert lab_cost.measure_checkpoint_cost(str(tiny_folder), **kwargs).measured == 0
    with pytest.raises(settings.ReadOnlyError):
        lab_cost.measure_checkpoint_cost(str(tiny_folder), **{**kwargs, "layers": [2]})


# ---------------------------------------------------------------- command line


def _cli(args: list[str], env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLAB_HOME": str(env_home),
        "MLAB_CACHE_DIR": str(env_home / "cache"),
        "MLAB_DATABASE_URL": f"sqlite:///{env_home / 'lab.sqlite3'}",
    }
    env.pop("MLAB_READ_ONLY", None)
    return run_core(args, env)


def test_cli_json_is_pure_json_with_the_contract_keys(
    tiny_folder: Path, tmp_path: Path, lab_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main as cli

    beir = _beir(tmp_path / "beir")
    common = ["cost", "--checkpoint", str(tiny_folder), "--repeats", "2", "--batch-repeats", "1", "--warmup", "0",
              "--batch-size", "2", "--seq-len", "8", "--threads", "1", "--json"]  # fmt: skip
    done = _cli([*common, "--dataset", str(beir), "--dims", "16", "--precision", "float32,int8"], lab_env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # nothing but JSON on stdout
    assert isinstance(rows, list) and len(rows) == LAYERS * 2  # layers x (dim 16 x 2 precisions)
    for row in rows:
        assert set(cost.ENCODING_KEYS) <= set(row)
        assert isinstance(row["layer"], int) and isinstance(row["flops_per_token"], int)
        assert row["latency_ms_p50"] <= row["latency_ms_p95"] and row["params"] > 0
        assert row["dim"] == 16 and row["precision"] in {"float32", "int8"} and row["index_kind"] == "exact"
        assert row["threads"] == 1
    threads = torch.get_num_threads()
    try:  # same database and machine (1 thread) in this process: stored rows are reused
        assert cli.main(common) == 0
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert [r["layer"] for r in json.loads(captured.out)] == [1, 2, 3]
    assert "0 measured, 3 reused" in captured.err
    assert cli.main(["cost", "--checkpoint", str(tiny_folder), "--layers", "9", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines()[-1].startswith("error: layer 9")


def test_cli_registers_the_cost_subcommand() -> None:
    from core.cli import cost as cost_cli
    from core.cli import main as cli

    args = cli.build_parser().parse_args(["cost", "--checkpoint", "default", "--json"])
    assert args.handler is cost_cli.cmd_cost and args.batch_size == 32 and args.seq_len == 32


def test_curves_page_offers_the_measured_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.pagedata import STS_DATASET, build_lab

    lab = build_lab(tmp_path / "lab")
    monkeypatch.setenv("MLAB_DATABASE_URL", lab.database_url)
    report = lab_cost.measure_checkpoint_cost(
        str(lab.checkpoints["tiny-4x64"]), **QUICK, repeats=2, session_factory=open_store()
    )
    at = AppTest.from_file(str(REPO_ROOT / "pages" / "3_Curves.py"), default_timeout=120)
    at.query_params["dataset"] = STS_DATASET
    at.run()
    assert not at.exception and not at.error
    assert "latency p50 (ms)" in at.selectbox(key="curves_x").options
    at.selectbox(key="curves_x").set_value("latency_ms_p50").run()
    assert not at.exception and not at.error
    front = next(e.value for e in at.dataframe if "layer" in e.value.columns)
    stored_latency = report.encoding.set_index("layer")["latency_ms_p50"]
    shown = front.filter(like="latency").iloc[:, 0]
    assert len(front) >= 1
    assert shown.tolist() == pytest.approx([stored_latency[k] for k in front["layer"]])
    runs = AppTest.from_file(str(REPO_ROOT / "pages" / "4_Runs.py"), default_timeout=120).run()
    assert not runs.exception and not runs.error  # the cost run (no dataset) is listed like any other
    kinds = {kind for e in runs.dataframe if "kind" in e.value.columns for kind in e.value["kind"]}
    assert "cost" in kinds
