"""The typed (msgspec) fast path of MTEB task files gives exactly the generic (orjson) path's result.

Every task file of the shipped folder, and hand-written edge cases, go through both parsers:
:func:`core.mteb.parse_result_typed` (None where it does not decode the file) and
:func:`core.mteb.parse_result_generic`; the ``ParsedResult`` must be equal (and the columns the import
stores, :func:`core.mteb.parse_result_columns`, the same rows), and a file the typed path refuses must
be one that only the generic path reads (or rejects with its own message).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import mteb

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "reference" / "mteb-results"
TASK_FILES = sorted(p for p in SHIPPED.glob("results/*/*/*.json") if p.name != mteb.META_FILE)


def test_shipped_folder_has_the_files_of_both_generations() -> None:
    assert len(TASK_FILES) >= 100
    assert any(p.parent.name == mteb.EXTERNAL for p in TASK_FILES)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: "/".join(p.parts[-3:]))
def test_every_shipped_task_file_parses_the_same_on_both_paths(path: Path) -> None:
    data = path.read_bytes()
    typed = mteb.parse_result_typed(data, path.stem)
    assert typed is not None, "the shipped files are all current-generation: the fast path must take them"
    assert typed == mteb.parse_result_generic(data, path.stem, str(path))
    assert typed == mteb.parse_result_bytes(data, path.stem, str(path))
    assert mteb.parse_result_columns(data, path.stem) == mteb.ScoreColumns.of(typed)  # what the import stores
    assert typed.scores, "every shipped file has main_score rows"


def _doc(*entries: dict, split: str = "test", **top: object) -> bytes:
    return json.dumps(
        {"mteb_version": "1.12.0", "dataset_revision": "r", **top, "scores": {split: list(entries)}}
    ).encode()


TAKEN = {
    # both key generations in one entry: the current key's value wins, even when it is null
    "both generations": _doc(
        {
            "hf_subset": "default",
            "cos_sim_spearman": 0.5,
            "cosine_spearman": 0.6,
            "cos_sim_pearson": 0.4,
            "main_score": 0.6,
        }
    ),
    "current null beats older value": _doc(
        {"hf_subset": "default", "cosine_spearman": None, "cos_sim_spearman": 0.5, "main_score": 0.5}
    ),
    "older generation only": _doc({"hf_subset": "default", "cos_sim_spearman": 0.5, "main_score": 0.5}),
    "ints are floats": _doc({"hf_subset": "default", "main_score": 1, "ndcg_at_10": 0}),
    "null values": _doc({"hf_subset": "default", "main_score": None, "ndcg_at_10": None}),
    "NaN and Infinity values": (
        b'{"mteb_version": "1.12.0", "scores": {"test": [{"hf_subset": "default", "main_score": NaN,'
        b' "ndcg_at_10": Infinity, "mrr_at_10": -Infinity, "nauc": NaN}]}}'
    ),
    "duplicate subsets: the later entry wins": _doc(
        {"hf_subset": "en", "main_score": 0.1, "ndcg_at_10": 0.1},
        {"hf_subset": "de", "main_score": 0.3},
        {"hf_subset": "en", "main_score": 0.2, "mrr_at_10": 0.5},
    ),
    "no hf_subset, empty and null subset": _doc(
        {"main_score": 0.1}, {"hf_subset": "", "ndcg_at_10": 0.2}, {"hf_subset": None, "mrr_at_10": 0.3}
    ),
    "no wanted key at all": _doc({"hf_subset": "default", "accuracy": 0.9, "f1": 0.8}),
    "unknown fields of every type": _doc(
        {
            "hf_subset": "default",
            "languages": ["eng-Latn"],
            "main_score": 0.7,
            "v_measures": {"Level 0": [0.1, 0.2]},
            "spearman": 0.7,
            "note": "x",
            "flag": True,
        },
        kg_co2_emissions=None,
        evaluation_time=1.5,
        task_name="X",
    ),
    "several splits": (
        b'{"mteb_version": null, "scores": {"dev": [{"hf_subset": "default", "main_score": 0.5}],'
        b' "test": [{"hf_subset": "default", "main_score": 0.6}, {"hf_subset": "fr", "main_score": 0.7}]}}'
    ),
    "NaN text in a string, no NaN value": b'{"scores": {"test": [{"hf_subset": "a: NaN", "main_score": 0.5}]}}',
    "NaN text in a string and a NaN value": b'{"scores": {"test": [{"hf_subset": "a: NaN", "main_score": NaN}]}}',
    "no versions": b'{"scores": {"test": [{"hf_subset": "default", "main_score": 0.5}]}}',
    "empty scores": b'{"mteb_version": "1.0.0", "scores": {}}',
    "repeated key in an entry": b'{"scores": {"test": [{"main_score": 0.1, "main_score": 0.2}]}}',
}
LEFT_TO_GENERIC = {
    "a dict split": b'{"scores": {"test": {"hf_subset": "default", "main_score": 0.5}}}',
    "legacy file": b'{"mteb_version": "1.0.0", "test": {"cos_sim": {"spearman": 0.8}}}',
    "version is a number": b'{"mteb_version": 1.5, "scores": {"test": [{"main_score": 0.5}]}}',
    "subset is a number": b'{"scores": {"test": [{"hf_subset": 3, "main_score": 0.5}]}}',
    "NaN inside an array": b'{"scores": {"test": [{"main_score": 0.5, "x": [NaN, 1]}]}}',
}
REFUSED = {
    "string score": b'{"scores": {"test": [{"hf_subset": "default", "main_score": "high"}]}}',
    "bool score": b'{"scores": {"test": [{"hf_subset": "default", "ndcg_at_10": true}]}}',
    "scores is a list": b'{"scores": [0.5]}',
    "split is a number": b'{"scores": {"test": 0.5}}',
    "entry is a number": b'{"scores": {"test": [0.5]}}',
    "not JSON": b"{not json",
    "not an object": b"[1, 2]",
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_edge_cases_the_fast_path_takes_parse_the_same(name: str) -> None:
    data = TAKEN[name]
    typed = mteb.parse_result_typed(data, "NFCorpus")
    assert typed is not None
    generic = mteb.parse_result_generic(data, "NFCorpus")
    assert typed == generic
    assert mteb.parse_result_columns(data, "NFCorpus") == mteb.ScoreColumns.of(generic)


def test_edge_case_values_are_the_generic_rules() -> None:
    rows = {name: mteb.parse_result_typed(data, "NFCorpus").scores for name, data in TAKEN.items()}  # type: ignore[union-attr]
    assert rows["both generations"] == (
        ("test", "default", "cosine_pearson", 0.4),
        ("test", "default", "cosine_spearman", 0.6),
        ("test", "default", "main_score", 0.6),
    )
    assert ("test", "default", "cosine_spearman", None) in rows["current null beats older value"]
    assert rows["ints are floats"] == (
        ("test", "default", "main_score", 1.0),
        ("test", "default", "ndcg_at_10", 0.0),
    )
    assert all(type(r[3]) is float for r in rows["ints are floats"])
    assert {r[3] for r in rows["NaN and Infinity values"]} == {None}
    assert rows["duplicate subsets: the later entry wins"] == (
        ("test", "en", "main_score", 0.2),
        ("test", "en", "ndcg_at_10", 0.1),  # rows are per (split, subset, metric): the earlier one's stays
        ("test", "de", "main_score", 0.3),
        ("test", "en", "mrr_at_10", 0.5),
    )
    assert {r[1] for r in rows["no hf_subset, empty and null subset"]} == {"default"}
    assert rows["no wanted key at all"] == ()
    assert rows["NaN text in a string, no NaN value"] == (("test", "a: NaN", "main_score", 0.5),)  # verbatim
    assert rows["repeated key in an entry"] == (("test", "default", "main_score", 0.2),)


@pytest.mark.parametrize("name", sorted(LEFT_TO_GENERIC))
def test_files_the_fast_path_leaves_are_read_by_the_generic_one(name: str) -> None:
    data = LEFT_TO_GENERIC[name]
    assert mteb.parse_result_typed(data, "STSBenchmark") is None
    parsed = mteb.parse_result_bytes(data, "STSBenchmark", "results/a__b/r/STSBenchmark.json")
    assert parsed == mteb.parse_result_generic(data, "STSBenchmark")
    assert parsed.scores
    assert mteb.parse_result_columns(data, "STSBenchmark").parsed("STSBenchmark") == parsed


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_files_keep_the_generic_error_naming_the_file(name: str) -> None:
    data = REFUSED[name]
    assert mteb.parse_result_typed(data, "STS12") is None
    with pytest.raises(mteb.MtebFormatError) as info:
        mteb.parse_result_bytes(data, "STS12", "results/a__b/r/STS12.json")
    with pytest.raises(mteb.MtebFormatError) as generic:
        mteb.parse_result_generic(data, "STS12", "results/a__b/r/STS12.json")
    assert str(info.value) == str(generic.value)
    assert str(info.value).startswith("results/a__b/r/STS12.json: ")


@pytest.mark.parametrize("listed", [-1, 0, 10, 199_999, 200_000, 200_001, 5_000_000])
def test_read_file_reads_the_whole_file_whatever_size_was_listed(tmp_path: Path, listed: int) -> None:
    # the listed size is a hint (a file may grow or shrink between listing and reading): the bytes, and so
    # the sha256 and the rows, are the file's own
    entries = [{"hf_subset": f"s{i:05d}", "main_score": i / 10_000} for i in range(4000)]
    data = json.dumps({"mteb_version": "1.12.0", "scores": {"test": entries}}).encode()
    data += b" " * (200_000 - len(data))
    path = tmp_path / "NFCorpus.json"
    path.write_bytes(data)
    outcome = mteb.read_file(mteb.ReadJob(str(path), "NFCorpus", "a/b/NFCorpus.json", None, listed))
    assert outcome.error is None and outcome.sha256 == mteb.sha256(data)
    assert outcome.content == mteb.ScoreColumns.of(mteb.parse_result_generic(data, "NFCorpus"))


def test_read_file_empty_and_missing_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "STS12.json").write_bytes(b"")
    empty = mteb.read_file(mteb.ReadJob(str(tmp_path / "STS12.json"), "STS12", "a/b/STS12.json", None, 0))
    assert empty.sha256 == mteb.sha256(b"") and empty.error is not None
    assert empty.error.startswith("a/b/STS12.json: not valid JSON")
    missing = mteb.read_file(mteb.ReadJob(str(tmp_path / "gone.json"), "STS12", "a/b/gone.json", None, 10))
    assert missing == mteb.ReadOutcome(None, None, "a/b/gone.json: cannot read: No such file or directory")
