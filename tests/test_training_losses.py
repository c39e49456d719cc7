"""Training losses: hand-written references on fixed embeddings, equality with sentence-transformers' losses.

The library comparisons run the library loss the library way (tokenized features through its own
decorators) and ours from one ``forward_all_layers`` pass, on a tiny real model in eval mode (no
dropout), so both see the same weights.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses as st_losses

from core.submodels import forward_all_layers
from core.training import losses
from tests.tinymodel import build_tiny_checkpoint

S1 = ["A man plays a guitar.", "A dog runs in the snow.", "Kids play football.", "The market fell today."]
S2 = ["Someone plays music.", "An animal runs outside.", "A cat sleeps.", "Stocks dropped sharply."]
LABELS = torch.tensor([0.8, 0.6, 0.1, 0.9])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformer:
    folder = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", layers=3, hidden=48)
    model = SentenceTransformer(str(folder), device="cpu")
    model.eval()
    return model


def _features(model: SentenceTransformer) -> list[dict]:
    return [model.preprocess(S1), model.preprocess(S2)]


def _columns(model: SentenceTransformer, layers: list[int]) -> list[dict[int, torch.Tensor]]:
    return [forward_all_layers(model, f, layers) for f in _features(model)]


def _cosent_reference(a: np.ndarray, b: np.ndarray, labels: np.ndarray, scale: float = 20.0) -> float:
    """CoSENT by its definition: log(1 + sum over label_i > label_j of exp(scale * (cos_j - cos_i)))."""
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    terms = [
        np.exp(scale * (cos[j] - cos[i]))
        for i in range(len(labels))
        for j in range(len(labels))
        if labels[i] > labels[j]
    ]
    return float(np.log1p(np.sum(terms)))


def _kl_reference(sub: np.ndarray, teacher: np.ndarray) -> float:
    """sum_rows sum_j q_j (log q_j - log p_j) / rows, p = softmax(sub), q = softmax(teacher)."""

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(sub.astype(np.float64)), log_softmax(teacher.astype(np.float64))
    return float((np.exp(log_q) * (log_q - log_p)).sum() / len(sub))


def _fixed_columns(seed: int = 0, batch: int = 4, width: int = 12) -> list[dict[int, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{k: torch.randn(batch, width, generator=gen) for k in (1, 2, 3)} for _ in range(2)]


def test_cosent_equals_definition_on_fixed_embeddings(tiny_model: SentenceTransformer) -> None:
    cols = _fixed_columns()
    base = losses.make_base_loss("cosent", tiny_model)
    ours = float(base([cols[0][3], cols[1][3]], LABELS))
    expected = _cosent_reference(cols[0][3].numpy(), cols[1][3].numpy(), LABELS.numpy())
    assert ours == pytest.approx(expected, rel=1e-5)


def test_full_loss_equals_st_cosent(tiny_model: SentenceTransformer) -> None:
    base = losses.make_base_loss("cosent", tiny_model)
    with torch.no_grad():
        ours = losses.full_loss(base, _columns(tiny_model, [3]), LABELS, num_layers=3, width=48).total
        library = st_losses.CoSENTLoss(tiny_model)(_features(tiny_model), LABELS)
    assert float(ours) == pytest.approx(float(library), abs=1e-5)


def test_mnrl_equals_st_loss(tiny_model: SentenceTransformer) -> None:
    base = losses.make_base_loss("mnrl", tiny_model)
    with torch.no_grad():
        ours = losses.full_loss(base, _columns(tiny_model, [3]), LABELS, num_layers=3, width=48).total
        library = st_losses.MultipleNegativesRankingLoss(tiny_model)(_features(tiny_model), LABELS)
    assert float(ours) == pytest.approx(float(library), abs=1e-5)


def test_embedding_kl_hand_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    sub, teacher = torch.randn(6, 10, generator=gen), torch.randn(6, 10, generator=gen)
    assert float(losses.embedding_kl(sub, teacher, 4)) == pytest.approx(
        _kl_reference(sub[:, :4].numpy(), teacher[:, :4].numpy()), rel=1e-5
    )
    assert float(losses.embedding_kl(teacher, teacher, 10)) == pytest.approx(0.0, abs=1e-7)


def test_starbucks_loss_is_sum_of_its_terms(tiny_model: SentenceTransformer) -> None:
    """full CoSENT + per pair (CoSENT of the normalized (k, d) slice + 0.3 * KL), the full pair skipped."""
    cols = _fixed_columns(seed=2)
    pairs = [(1, 4), (2, 8), (3, 12)]  # (3, 12) is the full model: covered by the full term only
    base = losses.make_base_loss("cosent", tiny_model)
    got = losses.starbucks_loss(base, cols, LABELS, pairs, num_layers=3, width=12, kl_weight=0.3)
    a, b = cols[0], cols[1]
    lab = LABELS.numpy()
    expected = _cosent_reference(a[3].numpy(), b[3].numpy(), lab)
    teacher = torch.cat([a[3], b[3]]).numpy()
    for k, d in pairs[:2]:
        expected += _cosent_reference(a[k][:, :d].numpy(), b[k][:, :d].numpy(), lab)
        expected += 0.3 * _kl_reference(torch.cat([a[k], b[k]])[:, :d].numpy(), teacher[:, :d])
    assert float(got.total) == pytest.approx(expected, rel=1e-5)
    assert set(got.parts) == {"full", "1x4", "2x8", "kl_1x4", "kl_2x8"}


def test_starbucks_weights_are_configurable(tiny_model: SentenceTransformer) -> None:
    cols = _fixed_columns(seed=3)
    base = losses.make_base_loss("cosent", tiny_model)
    pairs = [(1, 4), (3, 12)]
    only_kl = losses.starbucks_loss(
        base, cols, LABELS, pairs, 3, 12, full_weight=0.0, pair_weights=[0.0, 1.0]
    )
    teacher = torch.cat([cols[0][3], cols[1][3]])
    kl = float(losses.embedding_kl(torch.cat([cols[0][1], cols[1][1]]), teacher, 4))
    assert float(only_kl.total) == pytest.approx(0.3 * kl, rel=1e-5)
    no_kl = losses.starbucks_loss(base, cols, LABELS, pairs, 3, 12, kl_weight=0.0)
    assert "kl_1x4" not in no_kl.parts


@pytest.mark.parametrize("detach", [True, False])
def test_detach_teacher_stops_kl_gradient_into_full_model(
    tiny_model: SentenceTransformer, detach: bool
) -> None:
    cols = _fixed_columns(seed=4)
    for col in cols:
        for t in col.values():
            t.requires_grad_(True)
    base = losses.make_base_loss("cosent", tiny_model)
    # full and pair base losses weighted 0: only the KL term remains.
    out = losses.starbucks_loss(
        base, cols, LABELS, [(1, 6)], 3, 12, full_weight=0.0, pair_weights=[0.0], detach_teacher=detach
    )
    out.total.backward()
    full_grad = cols[0][3].grad
    assert cols[0][1].grad is not None and cols[0][1].grad.abs().sum() > 0
    if detach:
        assert full_grad is None or float(full_grad.abs().sum()) == 0.0
    else:
        assert full_grad is not None and float(full_grad.abs().sum()) > 0


def test_similarity_kl_hand_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    sub = [torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)]
    teacher = [torch.randn(4, 8, generator=gen), torch.randn(4, 8, generator=gen)]

    def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return x @ y.T

    s = cos(sub[0][:, :5].numpy(), sub[1][:, :5].numpy()) / 0.3
    t = cos(teacher[0].numpy(), teacher[1].numpy()) / 0.3
    expected = (_kl_reference(s, t) + _kl_reference(s.T, t.T)) / 2
    assert float(losses.similarity_kl(sub, teacher, 5, 0.3)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.similarity_kl(teacher, teacher, 8, 0.3)) == pytest.approx(0.0, abs=1e-6)


def test_mrl_equals_st_matryoshka_loss(tiny_model: SentenceTransformer) -> None:
    dims = [48, 32, 16, 8]
    base = losses.make_base_loss("cosent", tiny_model)
    library_loss = st_losses.MatryoshkaLoss(tiny_model, st_losses.CoSENTLoss(tiny_model), dims)
    with torch.no_grad():
        ours = losses.mrl_loss(base, _columns(tiny_model, [3]), LABELS, 3, dims).total
        library = library_loss(_features(tiny_model), LABELS)
    assert float(ours) == pytest.approx(float(library), abs=1e-5)


@pytest.mark.parametrize(
    ("layers_per_step", "dims_per_step", "weighting"),
    [(1, -1, "uniform"), (1, 1, "uniform"), (2, 2, "linear"), (-1, -1, "log")],
)
def test_2dmse_equals_st_matryoshka2d_loss(
    tiny_model: SentenceTransformer, layers_per_step: int, dims_per_step: int, weighting: str
) -> None:
    """Same random seed -> same sampled layer/dims -> same loss as sentence-transformers 6.2.0."""
    dims = [48, 32, 16, 8]
    base = losses.make_base_loss("cosent", tiny_model)
    library_loss = st_losses.Matryoshka2dLoss(
        tiny_model,
        st_losses.CoSENTLoss(tiny_model),
        dims,
        n_layers_per_step=layers_per_step,
        n_dims_per_step=dims_per_step,
        kl_div_weight=1.0,
        kl_temperature=0.3,
        layer_weighting=weighting,
    )
    for seed in range(4):
        plan = losses.plan_2dmse(random.Random(seed), 3, len(dims), layers_per_step, dims_per_step)
        cols = _columns(tiny_model, sorted({3, *plan.layers}))
        ours = losses.two_d_mse_loss(
            base,
            cols,
            LABELS,
            plan,
            3,
            dims,
            kl_weight=0.3 * 1.0,
            kl_temperature=0.3,
            layer_weighting=weighting,
        )
        random.seed(seed)
        with torch.no_grad():
            library = library_loss(_features(tiny_model), LABELS)
        assert float(ours.total) == pytest.approx(float(library), abs=1e-5), plan


def test_2dmse_plan_samples_embedding_layer_too() -> None:
    """Prior layers are drawn from hidden-state indices 0..L-1, as the library does (0 = embeddings)."""
    seen = {losses.plan_2dmse(random.Random(s), 3, 4, 1, -1).layers[0] for s in range(60)}
    assert seen == {0, 1, 2}
    every = losses.plan_2dmse(random.Random(0), 3, 4, 5, -1)
    assert every.layers == (0, 1, 2) and every.last_dims == (0, 1, 2, 3)


def test_separate_loss_is_base_loss_of_the_slice(tiny_model: SentenceTransformer) -> None:
    cols = _fixed_columns(seed=6)
    base = losses.make_base_loss("cosent", tiny_model)
    got = losses.separate_loss(base, cols, LABELS, 2, 5)
    expected = _cosent_reference(cols[0][2][:, :5].numpy(), cols[1][2][:, :5].numpy(), LABELS.numpy())
    assert float(got.total) == pytest.approx(expected, rel=1e-5)


def test_bad_options_are_refused(tiny_model: SentenceTransformer) -> None:
    with pytest.raises(losses.LossConfigError, match="unknown base loss"):
        losses.make_base_loss("triplet", tiny_model)
    with pytest.raises(losses.LossConfigError, match="KL mode"):
        losses.starbucks_loss(
            losses.make_base_loss("cosent", tiny_model),
            _fixed_columns(),
            LABELS,
            [(1, 4)],
            3,
            12,
            kl_mode="x",
        )
    with pytest.raises(losses.LossConfigError, match="layer weighting"):
        losses.layer_weight("cubic", 1)
