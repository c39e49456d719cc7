"""Compare two stored cells from the command line: the scriptable twin of the Compare page's paired test.

``compare_stored`` takes names as a user types them (a dataset name, ``CKPT:LAYER:DIM`` cells), finds
the stored per-item scores and runs the same paired tests the page runs (``core.lab.insight``), and
returns one plain dict whose ``delta`` is B - A. Nothing is computed or stored: a cell that has not been
evaluated is refused with the command that evaluates it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common.errors import LabError
from core import backends, checkpoints, datasets, metrics, quantize
from core.lab.insight import CellRef, compare_cells
from storage import repository

KEYS = ("a", "b", "metric", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_bootstrap",
        "p_randomization", "resamples")  # fmt: skip


class CompareError(LabError):
    """A cell or dataset that cannot be compared (bad form, unknown name, not evaluated)."""


def parse_cell(text: str, option: str) -> tuple[str, int, int]:
    """``CKPT:LAYER:DIM`` -> (checkpoint, layer, dim); the message names the bad part.

    >>> parse_cell("default:6:384", "--a")
    ('default', 6, 384)
    >>> parse_cell("org/model@v1:2:x", "--b")
    Traceback (most recent call last):
    ...
    core.lab.compare.CompareError: --b 'org/model@v1:2:x': dim 'x' is not an integer (expected CKPT:LAYER:DIM)
    """
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise CompareError(f"{option} {text!r} is not of the form CKPT:LAYER:DIM (e.g. default:6:384)")
    numbers = []
    for name, part in zip(("layer", "dim"), parts[1:], strict=True):
        try:
            numbers.append(int(part))
        except ValueError:
            raise CompareError(
                f"{option} {text!r}: {name} {part!r} is not an integer (expected CKPT:LAYER:DIM)"
            ) from None
    return parts[0], numbers[0], numbers[1]


def _dataset(s: Session, name: str) -> tuple[datasets.DatasetSpec, str]:
    """The spec and stored fingerprint of a built-in or registered dataset name."""
    builtin = datasets.builtin_datasets().get(name)
    if builtin is not None:
        return builtin, datasets.dataset_fingerprint(builtin)
    record = repository.get_dataset(s, name)
    if record is None:
        raise CompareError(f"no dataset named {name!r} (see `python -m core datasets`)")
    return datasets.DatasetSpec(record.name, record.kind, record.path, record.split), record.fingerprint


def _checkpoint_fp(s: Session, name: str, option: str) -> str:
    record = repository.get_checkpoint(s, name)
    if record is None and name != "default":
        try:
            record = repository.get_checkpoint(s, checkpoints.parse_checkpoint(name).name)
        except checkpoints.CheckpointError:
            record = None
    if record is None:
        raise CompareError(f"{option}: no registered checkpoint {name!r} (see `python -m core checkpoints`)")
    return record.fingerprint


def compare_stored(
    session_factory: sessionmaker[Session],
    dataset: str,
    a: str,
    b: str,
    *,
    precision: str = "float32",
    metric: str | None = None,
    resamples: int = 10_000,
    seed: int = 0,
    backend: str = backends.DEFAULT_BACKEND,
) -> dict[str, Any]:
    """Paired bootstrap and randomization tests of cell B against cell A on ``dataset`` (delta = B - A),
    both read from the stored per-item scores of deployment ``backend``."""
    if precision not in quantize.PRECISIONS:
        raise CompareError(f"--precision {precision!r} is not one of {', '.join(quantize.PRECISIONS)}")
    if backend not in backends.BACKENDS:  # stored scores only: no need for the backend's packages
        raise CompareError(f"--backend {backend!r} is not one of {', '.join(backends.BACKENDS)}")
    cells = {"--a": parse_cell(a, "--a"), "--b": parse_cell(b, "--b")}
    with session_factory() as s:
        spec, dataset_fp = _dataset(s, dataset)
        refs = {
            option: CellRef(_checkpoint_fp(s, ckpt, option), layer, dim, precision, ckpt, backend)
            for option, (ckpt, layer, dim) in cells.items()
        }
    chosen = metric or metrics.MAIN_SCORE[spec.kind]
    results = compare_cells(
        spec, dataset_fp, refs["--a"], refs["--b"], chosen, resamples, seed, session_factory=session_factory
    )
    boot, rand = results["bootstrap"], results["randomization"]
    return {
        "a": a,
        "b": b,
        "metric": chosen,
        "value_a": boot.score_a,
        "value_b": boot.score_b,
        "delta": boot.delta,
        "ci_low": boot.ci_low,
        "ci_high": boot.ci_high,
        "p_bootstrap": boot.p_value,
        "p_randomization": rand.p_value,
        "resamples": resamples,
        "dataset": spec.name,
        "precision": precision,
        "backend": backend,
        "statistic": boot.statistic,
        "n_items": boot.n_items,
        "seed": seed,
        "exact_randomization": rand.exact,
        "confidence": boot.confidence,
    }
