"""The training engine end to end on a tiny real model and a handful of STS pairs.

Each method runs a few steps and lowers its own eval-mode loss on the training pairs; same seed ->
identical weights; the saved folder loads with ``core.checkpoints.load`` and holds exactly the weights a
hand-run ``fit`` produces; the training card round-trips through the file and the database; separate
models really have k layers; cancellation leaves no folder and no registered checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from core import checkpoints
from core.lab import training as lab_training
from core.lab.store import open_store
from core.submodels import forward_all_layers
from core.training import LossConfig, TrainConfig, loop, losses
from core.training import card as cards
from core.training import data as training_data
from tests.conftest import write_sts_pairs

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion.", 4.2),
    ("A dog runs in the snow.", "A cat sleeps on a sofa.", 0.6),
    ("Kids are playing football.", "Children play soccer on a field.", 3.9),
    ("The stock market fell today.", "A bird is singing.", 0.0),
    ("A plane is taking off.", "An airplane departs.", 4.5),
    ("Someone is cooking pasta.", "The train is late.", 0.2),
    ("Two men are fighting.", "Two men are boxing in a ring.", 3.1),
]
TINY_PAIRS = ((1, 16), (2, 32), (3, 48))


@pytest.fixture
def sts_file(tmp_path: Path) -> Path:
    return write_sts_pairs(tmp_path / "train.tsv", PAIRS)


def _config(tiny_folder: Path, sts_file: Path, out: Path, **kw: object) -> loop.TrainConfig:
    options: dict = {
        "output_dir": str(out),
        "base": str(tiny_folder),
        "method": "starbucks",
        "dataset": str(sts_file),
        "pairs": TINY_PAIRS,
        "max_steps": 4,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        "seed": 7,
    }
    loss_fields = {f.name for f in dataclasses.fields(LossConfig)}
    loss = {k: kw.pop(k) for k in list(kw) if k in loss_fields}
    options.update(kw)
    return TrainConfig(**options, loss=LossConfig(**loss))  # type: ignore[arg-type]


def _eval_loss(model: torch.nn.Module, pairs: tuple[tuple[int, int], ...]) -> float:
    """Sum of CoSENT losses of the given (k, d) sub-models on all training pairs, no dropout."""
    model.eval()
    base = losses.make_base_loss("cosent", model)
    labels = torch.tensor([s for _, _, s in PAIRS]) / 5
    layers = sorted({k for k, _ in pairs})
    with torch.no_grad():
        texts = ([a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS])
        cols = [forward_all_layers(model, model.preprocess(t), layers) for t in texts]
        return sum(float(losses.base_at(base, cols, k, d, labels)) for k, d in pairs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in checkpoints.load(str(folder)).model.state_dict().items()}


@pytest.mark.parametrize(
    ("method", "judged"),
    [
        ("starbucks", TINY_PAIRS),
        ("2dmse", TINY_PAIRS),
        ("mrl", ((3, 16), (3, 32), (3, 48))),
        ("full", ((3, 48),)),
    ],
)
def test_each_method_lowers_its_loss(
    tiny_folder: Path, sts_file: Path, tmp_path: Path, method: str, judged: tuple[tuple[int, int], ...]
) -> None:
    before = _eval_loss(checkpoints.load(str(tiny_folder)).model, judged)
    result = lab_training.train(
        _config(tiny_folder, sts_file, tmp_path / method, method=method, max_steps=6),
        session_factory=open_store(),
    )
    assert len(result.loss_curve) == 6 and all(math.isfinite(v) for v in result.loss_curve)
    after = _eval_loss(checkpoints.load(str(result.output_dir)).model, judged)
    assert after < before
    card = cards.load_card(result.output_dir)
    assert card["method"] == method and card["hyperparameters"]["steps"] == 6
    assert card["label"] == f"{method} (from tiny)"


def test_base_model_is_not_mutated(tiny_folder: Path, sts_file: Path, tmp_path: Path) -> None:
    shared = checkpoints.load(str(tiny_folder)).model
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    lab_training.train(
        _config(tiny_folder, sts_file, tmp_path / "out", max_steps=2), session_factory=open_store()
    )
    after = shared.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_weights_and_saved_weights_are_the_trained_ones(
    tiny_folder: Path, sts_file: Path, tmp_path: Path
) -> None:
    config = _config(tiny_folder, sts_file, tmp_path / "a")
    first = lab_training.train(config, session_factory=open_store())
    second = lab_training.train(_config(tiny_folder, sts_file, tmp_path / "b"), session_factory=open_store())
    other_seed = lab_training.train(
        _config(tiny_folder, sts_file, tmp_path / "c", seed=8), session_factory=open_store()
    )
    wa, wb, wc = _weights(first.output_dir), _weights(second.output_dir), _weights(other_seed.output_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert first.models[0].fingerprint == second.models[0].fingerprint
    assert first.loss_curve == second.loss_curve
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)

    # A hand-run fit on a fresh copy of the base gives exactly the saved weights.
    loaded = checkpoints.load(str(tiny_folder))
    model = copy.deepcopy(loaded.model)
    examples = training_data.load_examples(str(sts_file))
    objective = loop.objective_for(config, TINY_PAIRS, 3, 48, "cosent")
    curve = loop.fit(model, objective, examples, config, total_steps=4)
    assert curve == first.loss_curve
    trained = model.state_dict()
    assert all(torch.equal(trained[k], wa[k]) for k in wa)
    base = loaded.model.state_dict()
    assert any(not torch.equal(base[k], wa[k]) for k in wa)


def test_output_loads_and_card_round_trips_through_file_and_database(
    tiny_folder: Path, sts_file: Path, tmp_path: Path
) -> None:
    from storage import repository

    result = lab_training.train(
        _config(tiny_folder, sts_file, tmp_path / "sb", kl_mode="similarity"), session_factory=open_store()
    )
    loaded = checkpoints.load(str(result.output_dir))
    assert loaded.info.num_layers == 3 and loaded.info.embedding_dim == 48
    assert loaded.info.fingerprint == result.models[0].fingerprint
    assert loaded.info.label == "starbucks (from tiny)"
    on_disk = cards.load_card(result.output_dir)
    returned = json.loads(json.dumps(result.models[0].card))
    assert {k: v for k, v in on_disk.items() if k not in {"format", "version"}} == returned
    assert on_disk["pairs"] == [list(p) for p in TINY_PAIRS]
    assert on_disk["loss"]["kl_mode"] == "similarity" and on_disk["loss"]["detach_teacher"] is True
    assert on_disk["base_checkpoint"]["fingerprint"] == checkpoints.load(str(tiny_folder)).info.fingerprint
    assert on_disk["dataset"]["fingerprint"] == training_data.load_examples(str(sts_file)).fingerprint
    assert len(on_disk["loss_curve"]) == 4 and on_disk["provenance"]["packages"]["torch"]
    factory = open_store()
    with factory() as s:
        record = repository.get_checkpoint(s, result.models[0].fingerprint)
        assert record is not None and record.training_card == returned
        assert record.path == str(result.output_dir)
        run = repository.get_run(s, result.run_id) if result.run_id is not None else None
        assert run is not None and run.kind == "train" and run.status == "completed"
        assert run.cells_done == run.cells_total == 4


def test_separate_trains_one_truncated_model_per_pair(
    tiny_folder: Path, sts_file: Path, tmp_path: Path
) -> None:
    from storage import repository

    steps: list[tuple[int, int]] = []
    result = lab_training.train(
        _config(tiny_folder, sts_file, tmp_path / "sep", method="separate", max_steps=2),
        progress=lambda step, total, loss: steps.append((step, total)),
        session_factory=open_store(),
    )
    assert steps == [(i, 6) for i in range(1, 7)]
    manifest = cards.load_manifest(result.output_dir)
    assert [(m["layer"], m["dim"]) for m in manifest["models"]] == list(TINY_PAIRS)
    assert len(result.models) == 3
    for model, (layer, dim) in zip(result.models, TINY_PAIRS, strict=True):
        loaded = checkpoints.load(str(model.path))
        assert loaded.info.num_layers == layer
        assert len(loaded.model[0].auto_model.encoder.layer) == layer
        card = cards.load_card(model.path)
        assert card["separate"]["layer"] == layer and card["separate"]["dim"] == dim
        assert card["label"] == f"separate {layer}x{dim} (from tiny)"
        entry = next(m for m in manifest["models"] if m["layer"] == layer)
        assert entry["fingerprint"] == model.fingerprint
    with open_store()() as s:
        fps = {c.fingerprint for c in repository.list_checkpoints(s)}
    assert {m.fingerprint for m in result.models} <= fps


def test_cancel_stops_early_and_registers_nothing(tiny_folder: Path, sts_file: Path, tmp_path: Path) -> None:
    from storage import repository

    seen: list[int] = []
    out = tmp_path / "cancelled"
    with pytest.raises(loop.TrainingCancelled):
        lab_training.train(
            _config(tiny_folder, sts_file, out, max_steps=50),
            progress=lambda step, total, loss: seen.append(step),
            should_stop=lambda: len(seen) >= 2,
            session_factory=open_store(),
        )
    assert seen == [1, 2]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cancelled")]
    base_fp = checkpoints.load(str(tiny_folder)).info.fingerprint
    with open_store()() as s:
        assert [c.fingerprint for c in repository.list_checkpoints(s)] == [base_fp]
        runs = repository.list_runs(s)
    assert [(r.kind, r.status) for r in runs] == [("train", "cancelled")]


def test_retrieval_train_split_uses_mnrl(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"document number {i} about topic {i}"} for i in range(6)]
    queries = [{"_id": f"q{i}", "text": f"what about topic {i}"} for i in range(6)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(6))
    (folder / "qrels" / "train.tsv").write_text(qrels)
    result = lab_training.train(
        TrainConfig(
            output_dir=str(tmp_path / "out"),
            base=str(tiny_folder),
            method="full",
            dataset=str(folder),
            max_steps=2,
            batch_size=4,
            register=False,
        ),
        session_factory=open_store(),
    )
    card = cards.load_card(result.output_dir)
    assert card["loss"]["base_loss"] == "mnrl" and card["dataset"]["split"] == "train"
    assert card["dataset"]["n_pairs"] == 6 and result.run_id is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "bogus"}, "unknown method"),
        ({"pairs": ((5, 16),)}, "layer must be in 1..3"),
        ({"pairs": ((1, 99),)}, "dim must be in 1..48"),
        ({"pairs": ((1, 16), (1, 16))}, "twice"),
        ({"batch_size": 0}, "batch size"),
        ({"learning_rate": -1.0}, "learning rate"),
        ({"kl_mode": "cosine"}, "KL mode"),
    ],
)
def test_bad_requests_fail_before_any_work(
    tiny_folder: Path, sts_file: Path, tmp_path: Path, change: dict, message: str
) -> None:
    with pytest.raises(loop.TrainingError, match=message):
        lab_training.train(
            _config(tiny_folder, sts_file, tmp_path / "out", **change), session_factory=open_store()
        )
    assert not (tmp_path / "out").exists()


def test_non_empty_output_and_read_only_mode_are_refused(
    tiny_folder: Path, sts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.settings import ReadOnlyError

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(loop.TrainingError, match="not empty"):
        lab_training.train(_config(tiny_folder, sts_file, busy), session_factory=open_store())
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    with pytest.raises(ReadOnlyError):
        lab_training.train(_config(tiny_folder, sts_file, tmp_path / "ro"), session_factory=open_store())


def test_parse_pairs() -> None:
    assert loop.parse_pairs("1:32, 2:64") == ((1, 32), (2, 64))
    assert loop.parse_pairs("") is None
    with pytest.raises(loop.TrainingError, match="LAYER:DIM"):
        loop.parse_pairs("1-32")
