"""A small evaluated lab for the page tests: two tiny checkpoints of different shapes on a tiny STS set.

``build_lab(folder)`` writes two tiny random-weight checkpoints (``tiny-4x64``: 4 layers x 64 dims and
``tiny-3x48``: 3 x 48), a 24-pair STS tsv, and evaluates both default grids (plus the Starbucks
diagonal dims) through ``core.lab.evaluate.evaluate_grid`` into ``folder/lab.sqlite3``. The values are
meaningless (random weights) but real: every number the pages show comes from this database.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import checkpoints, datasets, views
from core.checkpoints import default_model_path
from core.lab import evaluate
from core.submodels import EmbeddingCache
from storage import db
from tests.tinymodel import build_tiny_checkpoint

STS_DATASET = "tiny-sts"
PAIRS = [
    ("A man is playing a guitar.", "A person plays the guitar.", 4.6),
    ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
    ("A dog runs through the grass.", "A dog is running on a lawn.", 4.4),
    ("Two kids are playing football.", "Children play soccer outside.", 3.9),
    ("The cat sleeps on the sofa.", "A cat is asleep on the couch.", 4.8),
    ("A man is driving a car.", "A man is riding a horse.", 1.2),
    ("The stock market fell today.", "Shares dropped sharply this morning.", 3.5),
    ("She is reading a book.", "A woman is cooking dinner.", 0.6),
    ("A plane is taking off.", "An airplane departs from the runway.", 4.5),
    ("The child is laughing.", "A baby is crying loudly.", 1.0),
    ("A chef prepares a meal.", "A cook is making food.", 4.1),
    ("It is raining in the city.", "The sun shines over the beach.", 0.4),
    ("A man plays the piano.", "A man is playing a keyboard instrument.", 4.0),
    ("The team won the match.", "The players lost the game.", 1.8),
    ("A bird is flying over the sea.", "A seagull glides above the ocean.", 4.3),
    ("People are dancing at a party.", "A crowd dances at a celebration.", 4.2),
    ("The computer is broken.", "The laptop does not work.", 3.8),
    ("A girl is painting a picture.", "A man repairs a bicycle.", 0.2),
    ("The train arrives at noon.", "The train comes at twelve o'clock.", 4.7),
    ("He is swimming in the pool.", "He is running in the park.", 1.4),
    ("A monkey climbs a tree.", "An ape is climbing up a tree.", 4.4),
    ("The soup is too salty.", "The weather is cold today.", 0.1),
    ("A boy kicks a ball.", "A ball is kicked by a boy.", 4.9),
    ("Two men are fighting.", "Two men are talking quietly.", 1.6),
]


@dataclass(frozen=True)
class Lab:
    """Paths and names of a built lab."""

    folder: Path
    database_url: str
    checkpoints: dict[str, Path]  # short name -> folder
    sts_path: Path
    sts_spec: datasets.DatasetSpec


def write_sts(path: Path, n_pairs: int = len(PAIRS)) -> Path:
    """The tiny STS set (its first ``n_pairs`` pairs) as a tsv with header sentence1, sentence2, score."""
    lines = ["sentence1\tsentence2\tscore", *(f"{a}\t{b}\t{s}" for a, b, s in PAIRS[:n_pairs])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_lab(folder: Path) -> Lab:
    """Write and evaluate the tiny lab under ``folder`` (uses the MLAB_* env of the caller for nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = {"tiny-4x64": (4, 64), "tiny-3x48": (3, 48)}
    paths = {
        name: build_tiny_checkpoint(folder / name, layers=k, hidden=d, seed=i)
        for i, (name, (k, d)) in enumerate(shapes.items())
    }
    sts = write_sts(folder / "tiny-sts.tsv")
    spec = datasets.DatasetSpec(STS_DATASET, datasets.STS, str(sts), "test")
    url = f"sqlite:///{folder / 'lab.sqlite3'}"
    factory = db.init_db(url)
    cache = EmbeddingCache(folder / "embedding-cache")
    for name, path in paths.items():
        k, d = shapes[name]
        evaluate.evaluate_grid(
            str(path), spec, dims=views.default_grid_dims(k, d), session_factory=factory, cache=cache
        )
    db.dispose_engines()
    return Lab(folder, url, paths, sts, spec)


SHOWCASE_DATASET = "stsb-test-sample"


def cls_pooling_variant(folder: Path) -> Path:
    """The default model with CLS instead of mean pooling: a second real checkpoint of the same shape.

    Weights are symlinked (not copied); only the pooling config differs.
    """
    source = default_model_path()
    folder.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        elif item.suffix == ".safetensors":
            target.symlink_to(item)
        else:
            shutil.copy2(item, target)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    pooling.write_text(json.dumps(config, indent=2))
    return folder


def build_showcase_lab(folder: Path, pairs: int = 300) -> Lab:
    """A small real lab for the browser test and the README screenshots.

    ``default`` (all-MiniLM-L6-v2) and ``minilm-cls-pooling`` (the same weights with CLS pooling) on the
    first ``pairs`` pairs of the built-in STS-B test set, each with its full default grid.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = datasets.builtin_datasets()["stsb-test"]
    lines = Path(source.path).read_text(encoding="utf-8").splitlines()
    sample = folder / f"{SHOWCASE_DATASET}.tsv"
    sample.write_text("\n".join(lines[: pairs + 1]) + "\n", encoding="utf-8")
    spec = datasets.DatasetSpec(SHOWCASE_DATASET, datasets.STS, str(sample), "test")
    url = f"sqlite:///{folder / 'lab.sqlite3'}"
    factory = db.init_db(url)
    cache = EmbeddingCache(folder / "embedding-cache")
    paths = {
        "default": Path("default"),
        "minilm-cls-pooling": cls_pooling_variant(folder / "minilm-cls-pooling"),
    }
    for path in paths.values():
        name = str(path)
        loaded = checkpoints.load(name)
        dims = views.default_grid_dims(loaded.info.num_layers, loaded.info.embedding_dim)
        evaluate.evaluate_grid(loaded, spec, dims=dims, session_factory=factory, cache=cache)
    db.dispose_engines()
    return Lab(folder, url, paths, sample, spec)


if __name__ == "__main__":  # python -m tests.pagedata FOLDER: build a lab to look at by hand
    import sys

    target = Path(next((a for a in sys.argv[1:] if not a.startswith("--")), "/tmp/mlab-pagedata"))
    os.environ.setdefault("MLAB_HOME", str(target / "home"))
    lab = build_showcase_lab(target) if "--showcase" in sys.argv else build_lab(target)
    print(lab.database_url)


def build_lab_in_own_home(folder: Path) -> Lab:
    """``build_lab`` with MLAB_HOME and MLAB_CACHE_DIR inside ``folder`` (for module-scoped templates)."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAB_HOME", str(folder / "home"))
        mp.setenv("MLAB_CACHE_DIR", str(folder / "embedding-cache"))
        return build_lab(folder)


def copy_lab_database(template: Lab, folder: Path) -> str:
    """A private copy of ``template``'s SQLite database (with its WAL files) in ``folder``; its URL."""
    copy = folder / "lab-copy.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(template.folder / "lab.sqlite3") + suffix)
        if source.exists():
            shutil.copy(source, str(copy) + suffix)
    return f"sqlite:///{copy}"


def run_page(path: str | Path, timeout: float, **query: str) -> AppTest:
    """Run a page in AppTest with these URL query parameters."""
    at = AppTest.from_file(str(path), default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def no_errors(at: AppTest) -> None:
    """Neither an exception nor an error box on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
