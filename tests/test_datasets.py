"""core.datasets: built-ins, loaders, malformed input (file + line named), fingerprints, uploads."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from common.settings import ReadOnlyError
from core import datasets
from core.datasets import (
    DatasetError,
    DatasetSpec,
    RetrievalData,
    STSData,
    builtin_datasets,
    dataset_fingerprint,
    describe_dataset,
    load_dataset,
    load_retrieval,
    load_sts,
    main_metric,
    resolve_dataset,
    save_upload,
)

STS_OK = "sentence1\tsentence2\tscore\nA cat.\tA dog.\t1.5\n  Padded. \tTwo\t4\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def make_beir(
    root: Path,
    corpus: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
    split: str = "test",
) -> Path:
    write(
        root / "corpus.jsonl",
        corpus
        if corpus is not None
        else jsonl(
            [
                {"_id": "d1", "title": "Wings", "text": "lift and drag"},
                {"_id": "d2", "title": "", "text": "  only text "},
                {"_id": "d3", "title": "Only title", "text": ""},
            ]
        ),
    )
    write(
        root / "queries.jsonl",
        queries
        if queries is not None
        else jsonl(
            [{"_id": "q1", "text": "lift?"}, {"_id": "q2", "text": "unjudged"}, {"_id": "q3", "text": "t"}]
        ),
    )
    write(
        root / "qrels" / f"{split}.tsv",
        qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq3\td2\t0\n",
    )
    return root


# ------------------------------------------------------------------------------------------- built-ins


def test_builtin_stsb_and_cranfield_counts() -> None:
    specs = builtin_datasets()
    for name, pairs in (("stsb-test", 1379), ("stsb-dev", 1500), ("stsb-train", 5749)):
        data = load_dataset(specs[name])
        assert isinstance(data, STSData) and len(data) == pairs and not specs[name].external
        assert data.scores.dtype == np.float64 and data.scores.min() >= 0.0 and data.scores.max() <= 5.0
    sts = load_dataset(specs["stsb-test"])
    assert isinstance(sts, STSData)
    assert (sts.sentences1[0], sts.sentences2[0], sts.scores[0]) == (
        "A girl is styling her hair.",
        "A girl is brushing her hair.",
        2.5,
    )
    cran = load_dataset(specs["cranfield"])
    assert isinstance(cran, RetrievalData)
    assert (len(cran.corpus_ids), len(cran.query_ids), len(cran.judged_query_ids)) == (1400, 225, 225)
    assert sum(len(v) for v in cran.qrels.values()) == 1612
    assert cran.corpus_texts[cran.corpus_ids.index("471")] == ""  # empty in the source
    first = json.loads((Path(specs["cranfield"].path) / "corpus.jsonl").read_text().splitlines()[0])
    assert cran.corpus_texts[0] == (first["title"] + " " + first["text"]).strip()
    info = describe_dataset(specs["cranfield"])
    assert (info["documents"], info["queries"], info["judged_queries"], info["judgments"]) == (
        1400,
        225,
        225,
        1612,
    )
    assert info["n_items"] == 225 and info["main_metric"] == "ndcg_at_10"
    assert describe_dataset(specs["stsb-test"])["unique_sentences"] == 2552  # DESIGN.md's count


def test_external_datasets_follow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_EXTRA_DATA", str(tmp_path / "nothing-here"))
    assert set(builtin_datasets()) == {"stsb-test", "stsb-dev", "stsb-train", "cranfield"}
    extra = tmp_path / "extra"
    write(extra / "sts" / "biosses" / "test.tsv", STS_OK)
    make_beir(extra / "retrieval" / "cisi")
    monkeypatch.setenv("MLAB_EXTRA_DATA", str(extra))
    specs = builtin_datasets()
    assert {"biosses", "cisi"} <= set(specs) and "sickr-test" not in specs
    assert specs["biosses"].external and specs["cisi"].external
    assert len(load_sts(specs["biosses"].path)) == 2


def test_main_metric() -> None:
    assert main_metric("sts") == "cosine_spearman"
    assert main_metric("retrieval") == "ndcg_at_10"
    with pytest.raises(DatasetError):
        main_metric("classification")


# --------------------------------------------------------------------------------------------- STS


def test_load_sts_values(tmp_path: Path) -> None:
    data = load_sts(write(tmp_path / "s.tsv", STS_OK))
    assert data.sentences1 == ["A cat.", "Padded."] and data.sentences2 == ["A dog.", "Two"]
    assert data.scores.tolist() == [1.5, 4.0]


def test_load_sts_tolerates_crlf_bom_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    text = "\ufeffid\tscore\tsentence2\tsentence1\r\n7\t2.0\tb\ta\r\n\r\n8\t3\td\tc\r\n"
    data = load_sts(write(tmp_path / "s.tsv", text))
    assert (
        data.sentences1 == ["a", "c"] and data.sentences2 == ["b", "d"] and data.scores.tolist() == [2.0, 3.0]
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("sentence1\tsentence2\n a\tb\n", "line 1: header has no column 'score'"),
        ("sentence1\tsentence2\tscore\na\tb\t1\nc\td\n", "line 3: 2 tab-separated fields, expected 3"),
        ("sentence1\tsentence2\tscore\na\tb\t1\nc\td\thigh\n", "line 3: score 'high' is not a number"),
        ("sentence1\tsentence2\tscore\na\tb\tnan\n", "line 2: score 'nan' is not a finite number"),
        ("sentence1\tsentence2\tscore\na\tb\tinf\n", "line 2: score 'inf' is not a finite number"),
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("sentence1\tsentence2\tscore\n", "no rows after the header"),
        (b"sentence1\tsentence2\tscore\na\tb\t1\n\xff\xfe\tx\t2\n", "line 3: not valid UTF-8"),
    ],
)
def test_load_sts_malformed(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(DatasetError) as info:
        load_sts(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_load_sts_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_sts(tmp_path / "absent.tsv")


# --------------------------------------------------------------------------------------- retrieval


def test_load_retrieval_values_and_judged_queries(tmp_path: Path) -> None:
    data = load_retrieval(make_beir(tmp_path / "beir"))
    assert data.corpus_ids == ["d1", "d2", "d3"]
    assert data.corpus_texts == ["Wings lift and drag", "only text", "Only title"]
    assert data.query_ids == ["q1", "q2", "q3"]
    assert data.qrels == {"q1": {"d1": 2, "d3": 1}, "q3": {"d2": 0}}
    assert data.judged_query_ids == ["q1", "q3"]  # q2 has no qrels line: not evaluated
    assert data.judged_query_texts == ["lift?", "t"]


def test_load_retrieval_other_split_and_integer_valued_scores(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "beir", qrels="query-id\tcorpus-id\tscore\nq2\td2\t2.0\n", split="dev")
    assert load_retrieval(root, "dev").qrels == {"q2": {"d2": 2}}
    with pytest.raises(DatasetError, match=r"test\.tsv: file not found \(splits present: dev\)"):
        load_retrieval(root)


Q = "query-id\tcorpus-id\tscore\n"


@pytest.mark.parametrize(
    ("kwargs", "file", "fragment"),
    [
        (
            {"corpus": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'},
            "corpus.jsonl",
            "line 2: bad JSON",
        ),
        ({"corpus": '{"title": "x", "text": "a"}\n'}, "corpus.jsonl", "line 1: missing '_id'"),
        ({"corpus": '{"_id": "d1", "title": "x"}\n'}, "corpus.jsonl", "line 1: missing 'text'"),
        ({"corpus": '["d1", "a"]\n'}, "corpus.jsonl", "line 1: expected a JSON object"),
        ({"corpus": '{"_id": "d1", "text": 3}\n'}, "corpus.jsonl", "line 1: 'text' must be a string"),
        (
            {"corpus": '{"_id": "d1", "text": "a"}\n\n{"_id": "d1", "text": "b"}\n'},
            "corpus.jsonl",
            "line 3: duplicate _id 'd1' (first on line 1)",
        ),
        ({"corpus": ""}, "corpus.jsonl", "no rows"),
        (
            {"queries": '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "a"}\n'},
            "queries.jsonl",
            "line 2: duplicate",
        ),
        (
            {"qrels": Q + "q1\td1\t1\nq9\td1\t1\n"},
            "test.tsv",
            "line 3: query-id 'q9' is not in queries.jsonl",
        ),
        ({"qrels": Q + "q1\td9\t1\n"}, "test.tsv", "line 2: corpus-id 'd9' is not in corpus.jsonl"),
        ({"qrels": Q + "q1\td1\t0.5\n"}, "test.tsv", "line 2: relevance score '0.5' is not an integer"),
        ({"qrels": Q + "q1\td1\thigh\n"}, "test.tsv", "line 2: relevance score 'high' is not an integer"),
        ({"qrels": Q + "q1\td1\t1\nq1\td1\t2\n"}, "test.tsv", "line 3: duplicate judgment"),
        ({"qrels": Q + "q1\td1\n"}, "test.tsv", "line 2: 2 tab-separated fields, expected 3"),
        ({"qrels": "qid\tdocid\tscore\nq1\td1\t1\n"}, "test.tsv", "line 1: header has no column 'query-id'"),
        ({"qrels": Q}, "test.tsv", "no judgments"),
    ],
)
def test_load_retrieval_malformed(tmp_path: Path, kwargs: dict[str, str], file: str, fragment: str) -> None:
    root = make_beir(tmp_path / "beir", **kwargs)
    with pytest.raises(DatasetError) as info:
        load_retrieval(root)
    message = str(info.value)
    assert file in message and fragment in message, message


def test_load_retrieval_non_utf8_and_missing_files(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "beir")
    write(root / "queries.jsonl", b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"queries\.jsonl, line 2: not valid UTF-8"):
        load_retrieval(root)
    (root / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: file not found"):
        load_retrieval(root)
    with pytest.raises(DatasetError, match="folder not found"):
        load_retrieval(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------- resolve, cache


def test_resolve_dataset(tmp_path: Path) -> None:
    assert resolve_dataset("stsb-test").name == "stsb-test"
    assert resolve_dataset("stsb", split="dev").name == "stsb-dev"
    assert resolve_dataset("cranfield", split="test").kind == "retrieval"
    with pytest.raises(DatasetError, match="split"):
        resolve_dataset("cranfield", split="dev")
    tsv = write(tmp_path / "mine.tsv", STS_OK)
    spec = resolve_dataset(str(tsv))
    assert (spec.kind, spec.path, spec.split) == ("sts", str(tsv.resolve()), "mine")
    beir = make_beir(tmp_path / "beir")
    spec = resolve_dataset(beir)
    assert (spec.kind, spec.path, spec.split) == ("retrieval", str(beir.resolve()), "test")
    with pytest.raises(DatasetError, match=r"no qrels/train\.tsv \(splits present: test\)"):
        resolve_dataset(beir, split="train")
    with pytest.raises(DatasetError, match="unknown dataset 'no-such-thing'"):
        resolve_dataset("no-such-thing")
    with pytest.raises(DatasetError, match=r"\.tsv"):
        resolve_dataset(write(tmp_path / "x.csv", STS_OK))
    with pytest.raises(DatasetError, match="not a BEIR folder"):
        resolve_dataset(tmp_path / "beir" / "qrels")


def test_fingerprint_is_content_based(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "x.tsv", STS_OK)
    b = write(tmp_path / "b" / "y.tsv", STS_OK)
    spec_a, spec_b = resolve_dataset(a), resolve_dataset(b)
    fp = dataset_fingerprint(spec_a)
    assert len(fp) == 64 and fp == dataset_fingerprint(spec_b) == dataset_fingerprint(spec_a)
    write(b, STS_OK.replace("1.5", "1.6"))
    assert dataset_fingerprint(spec_b) != fp
    assert dataset_fingerprint(resolve_dataset("stsb-test")) != dataset_fingerprint(
        resolve_dataset("stsb-dev")
    )


def test_retrieval_fingerprint_covers_exactly_its_files(tmp_path: Path) -> None:
    root = make_beir(tmp_path / "beir")
    write(root / "qrels" / "dev.tsv", Q + "q2\td2\t1\n")
    test_spec, dev_spec = resolve_dataset(root), resolve_dataset(root, split="dev")
    fp_test, fp_dev = dataset_fingerprint(test_spec), dataset_fingerprint(dev_spec)
    assert fp_test != fp_dev
    write(root / "README.txt", "not a data file")
    assert dataset_fingerprint(test_spec) == fp_test
    write(root / "qrels" / "dev.tsv", Q + "q3\td2\t1\n")
    assert dataset_fingerprint(test_spec) == fp_test and dataset_fingerprint(dev_spec) != fp_dev
    with (root / "corpus.jsonl").open("a") as fh:
        fh.write(json.dumps({"_id": "d4", "text": "new"}) + "\n")
    assert dataset_fingerprint(test_spec) != fp_test


def test_load_dataset_caches_by_content(tmp_path: Path) -> None:
    path = write(tmp_path / "s.tsv", STS_OK)
    spec = resolve_dataset(path)
    first = load_dataset(spec)
    assert load_dataset(spec) is first
    write(path, STS_OK + "x\ty\t0.5\n")
    second = load_dataset(spec)
    assert second is not first and len(second) == 3
    with pytest.raises(DatasetError, match="unknown kind"):
        load_dataset(DatasetSpec("x", "classification", str(path), "test"))


# ------------------------------------------------------------------------------------------- uploads


def zip_bytes(members: dict[str, str | bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def beir_members(tmp_path: Path, prefix: str = "") -> dict[str, str | bytes]:
    root = make_beir(tmp_path / "src-beir")
    files = [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / "test.tsv"]
    return {prefix + str(p.relative_to(root)): p.read_bytes() for p in files}


def only_final_folders(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def test_upload_sts(tmp_path: Path) -> None:
    dest = tmp_path / "uploads"
    spec = save_upload(STS_OK.encode(), "My Data!.tsv", dest)
    assert spec.kind == "sts" and spec.name == "My_Data"
    data = load_dataset(spec)
    assert isinstance(data, STSData) and len(data) == 2
    assert save_upload(STS_OK.encode(), "My Data!.tsv", dest) == spec  # same bytes: same dataset
    assert len(only_final_folders(dest)) == 1


@pytest.mark.parametrize("prefix", ["", "mycollection/"])
def test_upload_beir_zip(tmp_path: Path, prefix: str) -> None:
    members = beir_members(tmp_path, prefix)
    members["__MACOSX/._corpus.jsonl"] = b"junk"
    dest = tmp_path / "uploads"
    spec = save_upload(zip_bytes(members), "collection.zip", dest)
    assert (spec.kind, spec.split, spec.name) == ("retrieval", "test", "collection")
    data = load_dataset(spec)
    assert isinstance(data, RetrievalData) and data.judged_query_ids == ["q1", "q3"]
    assert dataset_fingerprint(spec) == dataset_fingerprint(resolve_dataset(tmp_path / "src-beir"))
    assert only_final_folders(dest) == [Path(spec.path).name]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda m: zip_bytes({**m, "../evil.txt": "x"}), "'..'"),
        (lambda m: zip_bytes({**m, "/etc/evil": "x"}), "absolute"),
        (lambda m: zip_bytes(m, symlink="link"), "symbolic link"),
        (lambda m: b"PK\x03\x04 this is not a zip", "not a valid zip"),
        (lambda m: zip_bytes({"a/" + k: v for k, v in m.items()} | {"b/x.txt": "x"}), "BEIR folder"),
        (
            lambda m: zip_bytes({**m, "qrels/test.tsv": Q + "q1\tzzz\t1\n"}),
            "collection.zip/qrels/test.tsv, line 2",
        ),
    ],
)
def test_upload_zip_rejected_and_nothing_left(
    tmp_path: Path, make: Callable[[dict[str, str | bytes]], bytes], fragment: str
) -> None:
    dest = tmp_path / "uploads"
    with pytest.raises(DatasetError) as info:
        save_upload(make(beir_members(tmp_path)), "collection.zip", dest)
    assert fragment in str(info.value)
    assert only_final_folders(dest) == []
    assert not (tmp_path / "evil.txt").exists()


def test_upload_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "uploads"
    members = beir_members(tmp_path)
    monkeypatch.setattr(datasets, "MAX_ZIP_FILES", 2)
    with pytest.raises(DatasetError, match="at most 2"):
        save_upload(zip_bytes(members), "c.zip", dest)
    monkeypatch.setattr(datasets, "MAX_ZIP_FILES", 1000)
    # a zip bomb in miniature: 1 MB of zeros compresses to ~1 KB
    monkeypatch.setattr(datasets, "MAX_UNZIPPED_BYTES", 100_000)
    bomb = zip_bytes({**members, "padding.bin": b"\0" * 1_000_000})
    assert len(bomb) < 10_000
    with pytest.raises(DatasetError, match="more than"):
        save_upload(bomb, "c.zip", dest)
    monkeypatch.setattr(datasets, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(DatasetError, match="at most"):
        save_upload(STS_OK.encode(), "s.tsv", dest)
    assert only_final_folders(dest) == []


def test_upload_bad_tsv_names_the_upload(tmp_path: Path) -> None:
    dest = tmp_path / "uploads"
    with pytest.raises(DatasetError) as info:
        save_upload(b"sentence1\tsentence2\tscore\na\tb\tx\n", "pairs.tsv", dest)
    assert str(info.value).startswith("pairs.tsv, line 2: score 'x'")
    with pytest.raises(DatasetError, match=r"\.tsv file or a \.zip"):
        save_upload(b"a,b,1\n", "pairs.csv", dest)
    assert only_final_folders(dest) == []


def test_upload_refused_in_read_only_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    with pytest.raises(ReadOnlyError):
        save_upload(STS_OK.encode(), "s.tsv", tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists()


def test_shipped_data_matches_manifest() -> None:
    import hashlib

    root = Path(builtin_datasets()["stsb-test"].path).parents[2]
    rows = (root / "MANIFEST.tsv").read_text().splitlines()[1:]
    assert rows
    for row in rows:
        rel, _, sha = row.split("\t")
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == sha, rel
    assert (root / "README.md").is_file()
