"""MTEB results in and out (issue 13): parsing real published files, the metadata rule, importing into the
database (idempotent, malformed files refused by name), the CLI contract, and the export round trip,
validated with the ``mteb`` package's own result loader.

Expected numbers are read by hand off the shipped files in ``data/reference/mteb-results`` (verbatim
copies of embeddings-benchmark/results@f4cc6c8).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from core import datasets, mteb
from core.lab import evaluate
from core.lab import mteb as lab_mteb
from core.lab.store import open_store
from storage import db, reference_repository
from tests.tinymodel import build_tiny_checkpoint

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "data" / "reference" / "mteb-results"
RESULTS = SHIPPED / "results"
BGE_SMALL = RESULTS / "BAAI__bge-small-en-v1.5"
BGE_SMALL_REV = "5c38ec7c405ec4b44b94cc5a9bb96e735b38267a"
ARCTIC_XS = RESULTS / "Snowflake__snowflake-arctic-embed-xs"


# ------------------------------------------------------------------------------------ parsing (pure)


def test_current_file_reads_main_score_and_lab_metrics() -> None:
    path = BGE_SMALL / BGE_SMALL_REV / "STSBenchmark.json"
    parsed = mteb.parse_result_bytes(path.read_bytes(), "STSBenchmark", str(path))
    assert parsed.mteb_version == "1.18.0"
    assert parsed.dataset_revision == "b0fddb56ed78048fa8b90373c8a3cfc37b684831"
    # the file's own values (its "spearman"/"euclidean_*" keys are not lab metrics and are left out)
    assert parsed.scores == (
        ("test", "default", "cosine_pearson", 0.8431285121310165),
        ("test", "default", "cosine_spearman", 0.8586295017067542),
        ("test", "default", "main_score", 0.8586295017067542),
    )


def test_external_file_older_key_generation_maps_to_the_lab_keys() -> None:
    path = ARCTIC_XS / "external" / "STSBenchmark.json"
    raw = json.loads(path.read_text())
    assert raw["mteb_version"] is None and "cos_sim_spearman" in raw["scores"]["test"][0]
    parsed = mteb.parse_result_bytes(path.read_bytes(), "STSBenchmark")
    values = {metric: value for _, _, metric, value in parsed.scores}
    assert values == {
        "cosine_pearson": 0.7843883428940346,
        "cosine_spearman": 0.7918395553127086,
        "main_score": 0.7918395553127086,
    }
    assert parsed.mteb_version is None


def test_external_file_with_only_the_older_keys() -> None:
    doc = {"task_name": "SICK-R", "mteb_version": None, "dataset_revision": "r", "evaluation_time": None,
           "scores": {"test": [{"hf_subset": "default", "languages": ["eng-Latn"], "cos_sim_pearson": 0.8,
                                "cos_sim_spearman": 0.75, "main_score": 0.75}]}}  # fmt: skip
    parsed = mteb.parse_result_bytes(json.dumps(doc).encode(), "SICK-R")
    assert {m: v for _, _, m, v in parsed.scores} == {
        "cosine_pearson": 0.8,
        "cosine_spearman": 0.75,
        "main_score": 0.75,
    }


def test_retrieval_file_keeps_the_lab_retrieval_metrics() -> None:
    path = BGE_SMALL / BGE_SMALL_REV / "SciFact.json"
    parsed = mteb.parse_result_bytes(path.read_bytes(), "SciFact")
    assert {split for split, *_ in parsed.scores} == {"test", "train"}  # this file scores both splits
    values = {m: v for split, _, m, v in parsed.scores if split == "test"}
    assert set(values) == {"main_score", "ndcg_at_10", "mrr_at_10", "recall_at_100", "map_at_100"}
    assert values["main_score"] == values["ndcg_at_10"] == 0.71273
    assert values["mrr_at_10"] == 0.6822949735449734 and values["recall_at_100"] == 0.945


def test_legacy_file_before_mteb_1_11_one_and_many_subsets() -> None:
    # the shape of the oldest files of the public repository (scores at the top level, nested groups)
    single = b'{"test": {"cos_sim": {"spearman": 0.8423906519, "pearson": 0.83}}, "mteb_dataset_name": "STSBenchmark"}'
    parsed = mteb.parse_result_bytes(single, "STSBenchmark")
    assert parsed.scores == (
        ("test", "default", "cosine_pearson", 0.83),
        ("test", "default", "cosine_spearman", 0.8423906519),
        ("test", "default", "main_score", 0.8423906519),
    )
    multi = {"mteb_version": "1.0.0", "test": {"en": {"cos_sim": {"spearman": 0.7}, "evaluation_time": 1.0},
                                               "de": {"cos_sim": {"spearman": 0.6}}}}  # fmt: skip
    rows = mteb.parse_result_bytes(json.dumps(multi).encode(), "STS17").scores
    assert ("test", "en", "cosine_spearman", 0.7) in rows and ("test", "de", "cosine_spearman", 0.6) in rows
    assert not any(
        m == "main_score" for *_, m, _ in rows
    )  # STS17 is not a task the lab knows the main metric of


def test_nan_values_become_null_and_repeated_subsets_keep_the_later_entry() -> None:
    data = (
        b'{"task_name": "NFCorpus", "mteb_version": "1.12.0", "dataset_revision": "x", "scores": {"test": [\n'
        b'  {"hf_subset": "default", "languages": [], "main_score": 0.1, "ndcg_at_10": 0.1, "nauc_x": NaN},\n'
        b'  {"hf_subset": "default", "languages": [], "main_score": 0.2, "ndcg_at_10": 0.2, "mrr_at_10": NaN}\n'
        b"]}}"
    )
    rows = mteb.parse_result_bytes(data, "NFCorpus").scores
    assert sorted(rows) == [
        ("test", "default", "main_score", 0.2),
        ("test", "default", "mrr_at_10", None),
        ("test", "default", "ndcg_at_10", 0.2),
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (
            b'{"scores": {"test": [{"hf_subset": "default", "main_score": "high"}]}}',
            "main_score is not a number",
        ),
        (b'{"scores": [0.5]}', "'scores' must be an object"),
        (b'{"scores": {"test": 0.5}}', "scores.test must be a list"),
    ],
)
def test_malformed_files_raise_one_error_naming_the_file(content: bytes, says: str) -> None:
    with pytest.raises(mteb.MtebFormatError) as info:
        mteb.parse_result_bytes(content, "STS12", "results/a__b/r/STS12.json")
    assert str(info.value).startswith("results/a__b/r/STS12.json: ")
    assert says in str(info.value)


def test_meta_rule_on_the_real_contradictory_bge_small_files() -> None:
    metas = {
        rev: mteb.parse_meta_bytes((BGE_SMALL / rev / "model_meta.json").read_bytes())
        for rev in (BGE_SMALL_REV, "external")
    }
    assert metas[BGE_SMALL_REV].embed_dim == 512 and metas["external"].embed_dim == 384
    embed_dim, params, conflicts = mteb.resolve_model_meta("BAAI/bge-small-en-v1.5", metas)
    assert embed_dim == 384  # a 1:1 tie goes to the external folder's value
    assert params == 33360512  # 33,400,000 (rounded) and 33,360,512 agree within 5%: the exact count
    assert [c.describe() for c in conflicts] == [
        "BAAI/bge-small-en-v1.5 embed_dim: 384 (external) vs 512 (5c38ec7); using 384"
    ]


def test_meta_rule_majority_wins_and_far_parameter_counts_conflict() -> None:
    m = lambda d, p: mteb.ModelMeta(None, None, d, p, None, None)  # noqa: E731
    dim, params, conflicts = mteb.resolve_model_meta(
        "x/y", {"a": m(768, 100), "b": m(768, 100), "external": m(384, 200), "c": None}
    )
    assert (dim, params) == (768, 100)
    assert [c.field for c in conflicts] == ["embed_dim", "n_parameters"]
    assert conflicts[0].values == ((768, ("a", "b")), (384, ("external",)))


def test_find_result_files_layout_and_model_filter(tmp_path: Path) -> None:
    files = mteb.find_result_files(SHIPPED, ["BAAI/bge-small-en-v1.5"])  # a checkout with results/ inside
    assert {f.revision for f in files} == {BGE_SMALL_REV, "external"}
    assert sum(f.is_meta for f in files) == 2 and {f.model for f in files} == {"BAAI/bge-small-en-v1.5"}
    with pytest.raises(mteb.MtebFormatError, match="no model folder for nobody/model"):
        mteb.find_result_files(SHIPPED, ["nobody/model"])
    with pytest.raises(mteb.MtebFormatError, match="no MTEB result files"):
        mteb.find_result_files(tmp_path)


def test_reference_points_and_nearest_in_size() -> None:
    scores = pd.DataFrame(
        [
            ("a/small", "r1", 384, 22_000_000, "STSBenchmark", "stsb-test", "test", "default", "main_score", 0.80, "1.18.0"),
            ("a/small", "external", 384, 22_000_000, "STSBenchmark", "stsb-test", "test", "default", "main_score", 0.70, None),
            ("b/big", "external", 1024, 335_000_000, "STSBenchmark", "stsb-test", "test", "default", "main_score", 0.89, None),
            ("c/mid", "r2", 768, 110_000_000, "STSBenchmark", "stsb-test", "test", "default", "main_score", 0.86, "1.20.0"),
            ("c/mid", "r2", 768, 110_000_000, "SICK-R", "sickr-test", "test", "default", "main_score", 0.8, "1.20.0"),
        ],
        columns=[c for c in mteb.REFERENCE_COLUMNS if c not in ("source", "sha256")],
    ).assign(source="s", sha256="h")  # fmt: skip
    points = mteb.reference_points(scores, "stsb-test", "main_score", "bytes_per_vector")
    assert points[["model", "revision", "x", "value"]].values.tolist() == [
        ["a/small", "r1", 1536, 0.80],  # the file with an mteb_version wins over the external one
        ["c/mid", "r2", 3072, 0.86],
        ["b/big", "external", 4096, 0.89],
    ]
    assert points["caveat"].eq("").all()
    sick = mteb.reference_points(scores, "sickr-test", "main_score", "dim")
    assert sick["caveat"].tolist() == [mteb.SICKR_CAVEAT]
    assert mteb.reference_points(scores, "cranfield", "main_score").empty
    near = mteb.nearest_references(mteb.reference_points(scores, "stsb-test", "main_score", "dim"),
                                   {"(1, 32)": 32, "(6, 768)": 768}, k=2)  # fmt: skip
    # log distances: 32 -> 384 is ln 12, -> 768 ln 24, -> 1024 ln 32; 768 -> 1024 is ln 4/3 < 768 -> 384 ln 2
    assert near.values.tolist() == [
        ["(1, 32)", "a/small", 384, 0.80],
        ["(1, 32)", "c/mid", 768, 0.86],
        ["(6, 768)", "c/mid", 768, 0.86],
        ["(6, 768)", "b/big", 1024, 0.89],
    ]


# -------------------------------------------------------------------------------- import (storage)


def _table_contents(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = db.get_engine(url)
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in ("reference_models", "reference_results")
        }


def _score_count(url: str) -> int:
    """Scores held by the stored task files: their packed rows, unpacked and counted."""
    with db.get_engine(url).connect() as conn:
        packed = conn.execute(text("SELECT scores, n_scores FROM reference_results")).all()
    assert all(len(json.loads(scores)) == n for scores, n in packed)
    return sum(n for _, n in packed)


def test_importing_the_shipped_folder_finds_the_published_scores(db_url: str) -> None:
    factory = db.init_db(db_url)
    report = lab_mteb.import_results(factory, SHIPPED)
    task_files = [p for p in RESULTS.rglob("*.json") if p.name != "model_meta.json"]
    assert report.files_seen == len(list(RESULTS.rglob("*.json"))) == 135
    assert report.files_changed == len(task_files) == 112 and report.errors == ()
    assert report.models == 12
    assert [c.describe() for c in report.conflicts] == [
        "BAAI/bge-small-en-v1.5 embed_dim: 384 (external) vs 512 (5c38ec7); using 384"
    ]
    refs = lab_mteb.references(factory, tasks=["STSBenchmark"], metrics=["main_score"])
    by_model = refs.set_index("model")
    assert round(by_model.loc["BAAI/bge-small-en-v1.5", "value"], 5) == 0.85863
    assert by_model.loc["BAAI/bge-small-en-v1.5", "revision"] == BGE_SMALL_REV
    assert by_model.loc["BAAI/bge-small-en-v1.5", "embed_dim"] == 384
    xs = by_model.loc["Snowflake/snowflake-arctic-embed-xs"]
    assert round(xs["value"], 5) == 0.79184 and xs["revision"] == "external"
    assert xs["source"] == (
        "data/reference/mteb-results/results/Snowflake__snowflake-arctic-embed-xs/external/STSBenchmark.json"
    )
    manifest = dict(line.split("\t")[:2] for line in (SHIPPED / "MANIFEST.tsv").read_text().splitlines()[1:])
    assert xs["sha256"] == manifest["results/Snowflake__snowflake-arctic-embed-xs/external/STSBenchmark.json"]
    assert set(refs["dataset"]) == {"stsb-test"}


def test_reimporting_identical_files_changes_nothing(db_url: str) -> None:
    factory = db.init_db(db_url)
    lab_mteb.import_results(factory, SHIPPED)
    before = _table_contents(db_url)
    again = lab_mteb.import_results(factory, SHIPPED)
    assert (again.files_changed, again.files_unchanged, again.scores_written) == (0, 112, 0)
    assert _table_contents(db_url) == before
    assert _score_count(db_url) == 402


def test_a_changed_file_replaces_its_scores_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    shutil.copytree(BGE_SMALL, folder / BGE_SMALL.name)
    factory = open_store()
    first = lab_mteb.import_results(factory, folder)
    assert first.errors == () and first.files_changed == 10  # 8 + 2 task files, 2 meta files
    target = folder / BGE_SMALL.name / BGE_SMALL_REV / "STSBenchmark.json"
    doc = json.loads(target.read_text())
    doc["scores"]["test"][0] = {"hf_subset": "default", "languages": [], "main_score": 0.5}
    target.write_text(json.dumps(doc))
    (folder / BGE_SMALL.name / "external" / "STS12.json").write_text("{not json")
    second = lab_mteb.import_results(factory, folder)
    assert second.files_changed == 1 and second.files_unchanged == 9  # STS12.json is a new file
    assert [e.path.endswith("external/STS12.json") for e in second.errors] == [True]
    assert second.errors[0].message.startswith("not valid JSON")
    lab_mteb.ensure_shipped(factory)  # the shipped (older) copy of the same file must not overwrite it
    refs = lab_mteb.references(factory, tasks=["STSBenchmark"], metrics=None)
    refs = refs[refs["model"] == "BAAI/bge-small-en-v1.5"]
    assert refs[["metric", "value"]].values.tolist() == [["main_score", 0.5]]  # old metrics gone


def test_references_filter_by_task_metric_split_and_subset(tmp_path: Path) -> None:
    """The pages ask for the test split's default subset: a file's validation split and other subsets
    must not add points (the split filter was once accepted and dropped on the way to storage)."""
    revision = tmp_path / "results" / "org__model" / "r1"
    revision.mkdir(parents=True)
    entry = {"hf_subset": "default", "languages": ["eng-Latn"], "main_score": 0.8, "cosine_spearman": 0.8}
    doc = {"task_name": "STSBenchmark", "mteb_version": "1.18.0", "dataset_revision": "x", "scores": {
        "test": [entry, {**entry, "hf_subset": "de", "main_score": 0.6, "cosine_spearman": 0.6}],
        "validation": [{**entry, "main_score": 0.9, "cosine_spearman": 0.9}]}}  # fmt: skip
    (revision / "STSBenchmark.json").write_text(json.dumps(doc))
    factory = open_store()
    lab_mteb.import_results(factory, tmp_path / "results")
    every = lab_mteb.references(factory, tasks=["STSBenchmark"])
    assert every[["split", "subset", "metric", "value"]].values.tolist() == [
        ["test", "de", "cosine_spearman", 0.6], ["test", "de", "main_score", 0.6],
        ["test", "default", "cosine_spearman", 0.8], ["test", "default", "main_score", 0.8],
        ["validation", "default", "cosine_spearman", 0.9], ["validation", "default", "main_score", 0.9],
    ]  # fmt: skip
    picked = lab_mteb.references(
        factory, tasks=["STSBenchmark"], metrics=["main_score"], split="test", subset="default"
    )
    assert picked[["split", "subset", "metric", "value"]].values.tolist() == [
        ["test", "default", "main_score", 0.8]
    ]
    assert lab_mteb.references(factory, tasks=["SciFact"]).empty


def test_reimport_reads_only_files_whose_size_or_mtime_changed(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    shutil.copytree(BGE_SMALL, folder / BGE_SMALL.name)
    factory = open_store()
    assert lab_mteb.import_results(factory, folder).files_changed == 10
    target = folder / BGE_SMALL.name / BGE_SMALL_REV / "STSBenchmark.json"
    data, stat = target.read_bytes(), target.stat()
    # Same size and mtime: not read at all, so even different bytes go unnoticed (the documented rule).
    target.write_bytes(data.replace(b'"main_score": 0.8', b'"main_score": 0.1', 1))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.read_bytes() != data
    same = lab_mteb.import_results(factory, folder)
    assert (same.files_changed, same.files_unchanged, same.scores_written) == (0, 10, 0)
    # A new mtime: read and hashed; a new sha256 replaces the scores.
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = lab_mteb.import_results(factory, folder)
    assert (changed.files_changed, changed.files_unchanged) == (1, 9)
    refs = lab_mteb.references(factory, models=["BAAI/bge-small-en-v1.5"], tasks=["STSBenchmark"],
                               metrics=["main_score"])  # fmt: skip
    assert refs["value"].round(4).tolist() == [0.1586]  # was 0.8586
    # Touched but the same content: hashed, unchanged, and its new mtime recorded (next time not read).
    target.write_bytes(data)
    lab_mteb.import_results(factory, folder)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    touched = lab_mteb.import_results(factory, folder)
    assert (touched.files_changed, touched.files_unchanged, touched.scores_written) == (0, 10, 0)
    with factory() as s:
        stored = reference_repository.stored_results(s)
    [record] = [r for r in stored.values() if r.source_path.endswith(f"{BGE_SMALL_REV}/STSBenchmark.json")]
    assert (record.file_size, record.file_mtime_ns) == (len(data), stat.st_mtime_ns + 2_000_000_000)


def test_parallel_reading_stores_what_the_sequential_import_stores(tmp_path: Path) -> None:
    # Each import runs in a fresh single-threaded interpreter, as the CLI does: the parallel path forks,
    # and this test process has threads of its own once other tests ran (then the import reads in-process).
    script = (
        "import sys, threading\n"
        "from core.lab import mteb\n"
        "from storage import db\n"
        "assert threading.active_count() == 1\n"
        "mteb.PARALLEL_FILES = int(sys.argv[3])\n"
        "report = mteb.import_results(db.init_db(sys.argv[1]), sys.argv[2])\n"
        "print(report.files_changed, len(report.errors))\n"
    )
    contents = []
    for parallel in (False, True):
        url = f"sqlite:///{tmp_path / f'p{parallel}.sqlite3'}"
        threshold = "1" if parallel else str(10**9)
        done = subprocess.run([sys.executable, "-c", script, url, str(SHIPPED), threshold], cwd=REPO,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["112", "0"]
        contents.append(_table_contents(url))
    assert contents[0] == contents[1] and _score_count(url) == 402


def test_shipped_folder_is_imported_once_on_first_use() -> None:
    factory = open_store()
    assert lab_mteb.references(factory).empty
    first = lab_mteb.ensure_shipped(factory)
    assert first is not None and first.files_changed == 112
    frame = lab_mteb.references(factory, tasks=["BIOSSES"], metrics=["main_score"])
    assert len(frame) == 11 and set(frame["dataset"]) == {"biosses"}
    assert lab_mteb.ensure_shipped(factory) is None  # logged: not again


# ----------------------------------------------------------------------------------------------- CLI


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "MLAB_HOME": str(home), "MLAB_DATABASE_URL": f"sqlite:///{home / 'cli.sqlite3'}",
           "MLAB_CACHE_DIR": str(home / "cache")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_cli_import_reports_bad_files_and_exit_codes(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    shutil.copytree(ARCTIC_XS, folder / ARCTIC_XS.name)
    (folder / ARCTIC_XS.name / "external" / "STS12.json").write_text(
        '{"scores": {"test": [{"main_score": "x"}]}}'
    )
    out = _cli("import-mteb", str(folder), "--quiet", home=tmp_path / "home")
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {folder / ARCTIC_XS.name / 'external' / 'STS12.json'}: test/default: main_score is not a number ('x')"
    ]
    assert "12 files of 1 models; 9 new or changed (31 scores written), 0 unchanged, 1 refused" in out.stdout
    again = _cli("import-mteb", str(folder), "--quiet", "--json", home=tmp_path / "home")
    report = json.loads(again.stdout)
    assert report["files_changed"] == 0 and report["files_unchanged"] == 9 and len(report["errors"]) == 1
    missing = _cli("import-mteb", str(tmp_path / "nowhere"), home=tmp_path / "home")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: ")


def test_cli_references_json_contract(tmp_path: Path) -> None:
    out = _cli(
        "references", "--format", "json", "--dataset", "stsb-test", "--metric", "main_score", home=tmp_path
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)  # stdout is only JSON; conflicts and notes are on stderr
    assert len(rows) == 11
    keys = {"model", "revision", "embed_dim", "n_parameters", "task", "dataset", "metric", "value", "source"}
    assert all(keys <= set(r) for r in rows)
    bge = next(r for r in rows if r["model"] == "BAAI/bge-small-en-v1.5")
    assert (bge["embed_dim"], bge["n_parameters"], bge["task"], bge["dataset"]) == (
        384,
        33360512,
        "STSBenchmark",
        "stsb-test",
    )
    assert round(bge["value"], 5) == 0.85863
    assert (
        "conflict: BAAI/bge-small-en-v1.5 embed_dim: 384 (external) vs 512 (5c38ec7); using 384" in out.stderr
    )
    sick = _cli("references", "--format", "csv", "--task", "SICK-R", home=tmp_path)
    assert sick.returncode == 0 and sick.stdout.startswith(
        "model,revision,embed_dim,n_parameters,task,dataset"
    )
    assert "note: SICK-R -> sickr-test: MTEB's SICK-R scores all 9,927" in sick.stderr
    # A task without a lab dataset: JSON null, an empty CSV field (it once printed "nan" there).
    sts12 = _cli("references", "--format", "csv", "--task", "STS12", "--metric", "main_score", home=tmp_path)
    header, first = sts12.stdout.splitlines()[:2]
    assert dict(zip(header.split(","), first.split(","), strict=True))["dataset"] == ""
    nulls = json.loads(_cli("references", "--format", "json", "--task", "STS12", home=tmp_path).stdout)
    assert nulls and all(r["dataset"] is None for r in nulls)
    bad = _cli("references", "--dataset", "cranfield", home=tmp_path)
    assert bad.returncode == 2 and "is no MTEB task" in bad.stderr


# -------------------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def tiny_on_stsb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny random checkpoint evaluated (for real) on stsb-test and a tiny STS set, in its own database."""
    folder = tmp_path_factory.mktemp("tiny-export")
    checkpoint = build_tiny_checkpoint(folder / "tiny-2x32", layers=2, hidden=32, seed=3)
    url = f"sqlite:///{folder / 'lab.sqlite3'}"
    factory = db.init_db(url)
    stsb = datasets.builtin_datasets()["stsb-test"]
    evaluate.evaluate_grid(
        str(checkpoint), stsb, [1, 2], [16, 32], ["float32", "int8"], session_factory=factory
    )
    sts = folder / "mini.tsv"
    sts.write_text("sentence1\tsentence2\tscore\na\tb\t1\nc d\tc\t2\ne\tf g\t3\nh\ti\t0\n", encoding="utf-8")
    evaluate.evaluate_grid(str(checkpoint), datasets.DatasetSpec("mini", "sts", str(sts), "test"), [2], [32],
                           session_factory=factory)  # fmt: skip
    db.dispose_engines()
    return checkpoint, url


def test_export_round_trip_and_mteb_loader(tiny_on_stsb: tuple[Path, str], tmp_path: Path) -> None:
    checkpoint, url = tiny_on_stsb
    factory = db.init_db(url)
    out = tmp_path / "export" / "results"
    report = lab_mteb.export_results(factory, out, str(checkpoint))
    assert report.files == 8 and report.skipped == (
        "mini",
    )  # 2 layers x 2 dims x 2 precisions; mini is no MTEB task
    assert set(report.folders) == {f"tiny-2x32__{s}" for s in (
        "L1-D16", "L1-D32", "L2-D16", "L2-D32", "L1-D16-int8", "L1-D32-int8", "L2-D16-int8", "L2-D32-int8")}  # fmt: skip
    folder = out / "tiny-2x32__L2-D16"  # a local checkpoint is named by its folder
    (revision,) = [p.name for p in folder.iterdir()]
    doc = json.loads((folder / revision / "STSBenchmark.json").read_text())
    assert doc["mteb_version"] == mteb.FORMAT_VERSION and doc["task_name"] == "STSBenchmark"
    entry = doc["scores"]["test"][0]
    assert entry["main_score"] == entry["cosine_spearman"] and entry["hf_subset"] == "default"
    meta = json.loads((folder / revision / "model_meta.json").read_text())
    assert meta["embed_dim"] == 16
    # the real parameter count of the 2-layer sub-model, counted on the loaded checkpoint
    from core import checkpoints, cost

    shape = cost.encoder_shape(checkpoints.load(str(checkpoint)).model)
    assert meta["n_parameters"] == cost.params_used(shape, 2)
    l1_meta = json.loads((out / "tiny-2x32__L1-D16" / revision / "model_meta.json").read_text())
    assert l1_meta["n_parameters"] == cost.params_used(shape, 1)

    # round trip: import the export, equal scores
    lab_mteb.import_results(factory, out)
    imported = lab_mteb.references(factory, tasks=["STSBenchmark"])
    imported = imported[
        imported["model"].str.startswith("tiny-2x32/")
    ]  # folder tiny-2x32__L2-D16 -> model tiny-2x32/L2-D16
    from storage import repository

    with factory() as s:
        record = repository.get_checkpoint(s, str(checkpoint))
        assert record is not None
        ours = repository.results_frame(s, checkpoint_fp=record.fingerprint)
    ours = ours[ours["dataset"] == "stsb-test"]
    assert len(imported[imported["metric"] != "main_score"]) == len(ours) == 16
    for row in ours.itertuples():
        model = mteb.model_name(mteb.submodel_folder(record.name, row.layer, row.dim, row.precision))
        got = imported[(imported["model"] == model) & (imported["metric"] == row.metric)]["value"]
        assert got.tolist() == [row.value]
        if row.metric == "cosine_spearman":
            main = imported[(imported["model"] == model) & (imported["metric"] == "main_score")]["value"]
            assert main.tolist() == [row.value]

    # mteb's own loader reads the exported folders and validates them against STSBenchmark's metadata
    import warnings

    import mteb as mteb_package

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = mteb_package.ResultCache(cache_path=out.parent).load_results(
            tasks=["STSBenchmark"], include_remote=False, validate_and_filter=True
        )
    scores = {(m.model_name, m.model_revision): m.task_results[0].get_score() for m in loaded.model_results}
    assert len(scores) == 8
    l2 = ours[(ours["layer"] == 2) & (ours["dim"] == 16) & (ours["precision"] == "float32")]
    expected = float(l2[l2["metric"] == "cosine_spearman"]["value"].iloc[0])
    assert math.isclose(scores[(folder.name, revision)], expected, rel_tol=0, abs_tol=0)


def test_exported_files_have_the_shape_of_current_published_files(
    tiny_on_stsb: tuple[Path, str], tmp_path: Path
) -> None:
    checkpoint, url = tiny_on_stsb
    report = lab_mteb.export_results(db.init_db(url), tmp_path, str(checkpoint))
    exported = json.loads(next(tmp_path.rglob("STSBenchmark.json")).read_text())
    published = json.loads((BGE_SMALL / BGE_SMALL_REV / "STSBenchmark.json").read_text())
    assert set(published) <= set(exported) | {"kg_co2_emissions"}
    assert set(published["scores"]["test"][0]) >= set(exported["scores"]["test"][0]) - {"languages"}
    assert report.files == 8


def test_export_without_mteb_datasets_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(mteb.MtebFormatError, match="no stored results on a dataset that is an MTEB task"):
        lab_mteb.export_results(open_store(), tmp_path)
