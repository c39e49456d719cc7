"""Evaluation datasets: STS pair files and BEIR retrieval folders - load, validate, fingerprint, upload.

Two layouts (see ``data/README.md``):

- STS: a UTF-8 tab-separated file whose header holds ``sentence1``, ``sentence2`` and ``score`` (other
  columns are allowed and ignored). No quoting: a plain ``split('\\t')`` reads every line.
- Retrieval (BEIR): a folder with ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``) and ``qrels/<split>.tsv`` (header ``query-id``, ``corpus-id``, ``score``; integer
  scores). A document's text is ``(title + " " + text).strip()`` (the BEIR/MTEB convention). Only queries
  with at least one qrels line are evaluated (:attr:`RetrievalData.judged_query_ids`).

Malformed input raises :class:`DatasetError` naming the file and, where there is one, the line; values
echoed in a message are cut to ``MAX_ECHO_CHARS``. A dataset that loads can be scored: an STS file has
at least two pairs and gold scores that are not all equal (a correlation needs both), relevance grades
fit a 32-bit integer (what trec_eval reads) and no sentence or query text is blank. Blank lines are
skipped in every file. This module does not embed, cut texts to a model's maximum
length (the tokenizer does that) or score anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import LabError, clip
from common.settings import ensure_writable
from core.memo import LRUCache
from core.metrics import MAIN_SCORE

STS = "sts"
RETRIEVAL = "retrieval"
KINDS: tuple[str, ...] = (STS, RETRIEVAL)

STS_COLUMNS: tuple[str, ...] = ("sentence1", "sentence2", "score")
QRELS_COLUMNS: tuple[str, ...] = ("query-id", "corpus-id", "score")
FINGERPRINT_VERSION = 1

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # size of the uploaded file itself
MAX_UNZIPPED_BYTES = 1024 * 1024 * 1024  # total bytes written when extracting a zip (zip-bomb cap)
MAX_ZIP_FILES = 1000  # members of an uploaded zip
PARSED_DATASETS_KEPT = 8  # parsed datasets held at once
FILE_HASHES_KEPT = 1024
MIN_STS_PAIRS = 2  # a correlation needs two pairs
MAX_RELEVANCE = 2**31 - 1  # trec_eval keeps grades in a C int

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"


class DatasetError(LabError):
    """A dataset name, path or file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives: ``path`` is the .tsv file (STS) or the BEIR folder (retrieval)."""

    name: str
    kind: str  # "sts" | "retrieval"
    path: str  # absolute path of the .tsv file (STS) or the BEIR folder (retrieval)
    split: str
    external: bool = False  # True for built-ins found outside the repo (MLAB_EXTRA_DATA); optional

    def files(self) -> list[Path]:
        """The files this dataset reads, in a fixed order (what the fingerprint hashes)."""
        root = Path(self.path)
        if self.kind == STS:
            return [root]
        return [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{self.split}.tsv"]


@dataclass(frozen=True)
class STSData:
    """Sentence pairs with gold scores (treat as read-only; loads are cached and shared)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # (n_pairs,) float64

    def __len__(self) -> int:
        return len(self.sentences1)


@dataclass(frozen=True)
class RetrievalData:
    """A BEIR collection for one split (treat as read-only; loads are cached and shared)."""

    corpus_ids: list[str]
    corpus_texts: list[str]  # (title + " " + text).strip()
    query_ids: list[str]  # every query in queries.jsonl, file order
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance
    _judged: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        judged = [qid for qid in self.query_ids if qid in self.qrels]
        object.__setattr__(self, "_judged", judged)

    @property
    def judged_query_ids(self) -> list[str]:
        """Queries with at least one qrels line, file order: the only ones evaluated (as in BEIR/MTEB)."""
        return self._judged

    @property
    def judged_query_texts(self) -> list[str]:
        """Texts of :attr:`judged_query_ids`, same order."""
        position = {qid: i for i, qid in enumerate(self.query_ids)}
        return [self.query_texts[position[qid]] for qid in self._judged]


# --------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    """Whole file as text; missing files and non-UTF-8 bytes raise DatasetError naming file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}, line {line}: not valid UTF-8 (byte {raw[exc.start]:#04x})") from None
    return text.removeprefix("\ufeff")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending) for every non-blank line."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield number, line


def _header(path: Path, lines: Iterator[tuple[int, str]], required: tuple[str, ...]) -> tuple[list[str], int]:
    """Parse a TSV header; returns (columns, number of columns) or raises naming the missing column."""
    first = next(lines, None)
    if first is None:
        raise DatasetError(f"{path}: empty file (expected a header line: {chr(9).join(required)})")
    number, line = first
    columns = [c.strip() for c in line.split("\t")]
    for name in required:
        if name not in columns:
            shown = ", ".join(clip(c, 40) for c in columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise DatasetError(
                f"{path}, line {number}: header has no column {name!r} "
                f"(found {shown}; expected tab-separated {', '.join(required)})"
            )
    return columns, len(columns)


def _fields(path: Path, number: int, line: str, width: int) -> list[str]:
    parts = line.split("\t")
    if len(parts) != width:
        raise DatasetError(f"{path}, line {number}: {len(parts)} tab-separated fields, expected {width}")
    return parts


def load_sts(path: str | Path) -> STSData:
    """Read an STS pair file (header with sentence1, sentence2, score; tab-separated)."""
    path = Path(path)
    lines = _lines(_read_text(path))
    columns, width = _header(path, lines, STS_COLUMNS)
    i1, i2, iscore = (columns.index(c) for c in STS_COLUMNS)
    sentences1: list[str] = []
    sentences2: list[str] = []
    scores: list[float] = []
    for number, line in lines:
        parts = _fields(path, number, line, width)
        raw_score = parts[iscore].strip()
        try:
            score = float(raw_score)
        except ValueError:
            raise DatasetError(f"{path}, line {number}: score {clip(raw_score)} is not a number") from None
        if not math.isfinite(score):
            raise DatasetError(f"{path}, line {number}: score {clip(raw_score)} is not a finite number")
        for column, index in (("sentence1", i1), ("sentence2", i2)):
            if not parts[index].strip():
                raise DatasetError(f"{path}, line {number}: {column} is blank")
        sentences1.append(parts[i1].strip())
        sentences2.append(parts[i2].strip())
        scores.append(score)
    if not scores:
        raise DatasetError(f"{path}: no rows after the header")
    if len(scores) < MIN_STS_PAIRS:
        raise DatasetError(
            f"{path}: {len(scores)} pair after the header; a correlation needs at least {MIN_STS_PAIRS}"
        )
    if len(set(scores)) == 1:
        raise DatasetError(
            f"{path}: all {len(scores)} gold scores are {scores[0]:g}; a correlation needs scores that vary"
        )
    gold = np.asarray(scores, dtype=np.float64)
    gold.flags.writeable = False
    return STSData(sentences1=sentences1, sentences2=sentences2, scores=gold)


def _read_jsonl(
    path: Path, text_fields: tuple[str, ...], required_text: tuple[str, ...] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """Ids and string fields of a BEIR jsonl file; checks JSON, `_id`, field types and duplicate ids.

    A field in ``required_text`` must hold a non-blank string (a query's text).
    """
    ids: list[str] = []
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for number, line in _lines(_read_text(path)):
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}, line {number}: bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}, line {number}: expected a JSON object, got {type(obj).__name__}")
        raw_id = obj.get("_id")
        if raw_id is None:
            raise DatasetError(f"{path}, line {number}: missing '_id'")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise DatasetError(f"{path}, line {number}: '_id' must be a string, got {clip(repr(raw_id))}")
        doc_id = str(raw_id)
        if doc_id in seen:
            raise DatasetError(
                f"{path}, line {number}: duplicate _id {clip(doc_id)} (first on line {seen[doc_id]})"
            )
        seen[doc_id] = number
        row: dict[str, str] = {}
        for name in text_fields:
            value = obj.get(name)
            if value is None:
                if name == "text":
                    raise DatasetError(f"{path}, line {number}: missing 'text'")
                value = ""
            if not isinstance(value, str):
                raise DatasetError(
                    f"{path}, line {number}: {name!r} must be a string, got {type(value).__name__}"
                )
            if name in required_text and not value.strip():
                raise DatasetError(f"{path}, line {number}: {name!r} of {clip(doc_id)} is blank")
            row[name] = value
        ids.append(doc_id)
        rows.append(row)
    if not ids:
        raise DatasetError(f"{path}: no rows")
    return ids, rows


def _parse_relevance(path: Path, number: int, raw: str) -> int:
    raw = raw.strip()
    value: int | None = None
    try:
        value = int(raw)
    except ValueError:
        try:
            number_value = float(raw)
        except ValueError:
            number_value = math.nan
        if math.isfinite(number_value) and number_value.is_integer():
            value = int(number_value)
    if value is None:
        raise DatasetError(f"{path}, line {number}: relevance score {clip(raw)} is not an integer")
    return _check_relevance(path, number, raw, value)


def _check_relevance(path: Path, number: int, raw: str, value: int) -> int:
    if abs(value) > MAX_RELEVANCE:
        raise DatasetError(
            f"{path}, line {number}: relevance score {clip(raw)} is outside "
            f"-{MAX_RELEVANCE}..{MAX_RELEVANCE} (graded relevance is a small integer)"
        )
    return value


def _read_qrels(path: Path, query_ids: set[str], corpus_ids: set[str]) -> dict[str, dict[str, int]]:
    lines = _lines(_read_text(path))
    columns, width = _header(path, lines, QRELS_COLUMNS)
    iq, id_, iscore = (columns.index(c) for c in QRELS_COLUMNS)
    qrels: dict[str, dict[str, int]] = {}
    for number, line in lines:
        parts = _fields(path, number, line, width)
        qid, doc_id = parts[iq].strip(), parts[id_].strip()
        if qid not in query_ids:
            raise DatasetError(f"{path}, line {number}: query-id {clip(qid)} is not in queries.jsonl")
        if doc_id not in corpus_ids:
            raise DatasetError(f"{path}, line {number}: corpus-id {clip(doc_id)} is not in corpus.jsonl")
        judged = qrels.setdefault(qid, {})
        if doc_id in judged:
            raise DatasetError(
                f"{path}, line {number}: duplicate judgment for query {clip(qid)}, doc {clip(doc_id)}"
            )
        judged[doc_id] = _parse_relevance(path, number, parts[iscore])
    if not qrels:
        raise DatasetError(f"{path}: no judgments after the header")
    return qrels


def load_retrieval(folder: str | Path, split: str = "test") -> RetrievalData:
    """Read a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: retrieval dataset folder not found")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            extra = ""
            if needed == qrels_path and (folder / "qrels").is_dir():
                splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
                extra = f" (splits present: {', '.join(splits) or 'none'})"
            raise DatasetError(f"{needed}: file not found{extra}")
    corpus_ids, docs = _read_jsonl(folder / "corpus.jsonl", ("title", "text"))
    query_ids, queries = _read_jsonl(folder / "queries.jsonl", ("text",), required_text=("text",))
    qrels = _read_qrels(qrels_path, set(query_ids), set(corpus_ids))
    return RetrievalData(
        corpus_ids=corpus_ids,
        corpus_texts=[(d["title"] + " " + d["text"]).strip() for d in docs],
        query_ids=query_ids,
        query_texts=[q["text"].strip() for q in queries],
        qrels=qrels,
    )


# ------------------------------------------------------------------------------------------ fingerprint

_file_hashes: LRUCache[str] = LRUCache(FILE_HASHES_KEPT)  # keyed by path + size + mtime


def _sha256_file(path: Path) -> str:
    """sha256 of one file, memoised on (resolved path, size, mtime_ns)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    cached = _file_hashes.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    _file_hashes.put(key, value)
    return value


def dataset_fingerprint(spec: DatasetSpec) -> str:
    """Content hash (hex sha256) of exactly the files the dataset reads, with their roles.

    Independent of the dataset's name and location: the same files copied elsewhere give the same
    fingerprint; any changed byte gives a new one. Memoised per file on (path, size, mtime).
    """
    digest = hashlib.sha256(f"mlab-dataset-v{FINGERPRINT_VERSION}\0{spec.kind}\0".encode())
    roles = ["sts.tsv"] if spec.kind == STS else ["corpus.jsonl", "queries.jsonl", "qrels.tsv"]
    for role, path in zip(roles, spec.files(), strict=True):
        digest.update(f"{role}\0{_sha256_file(path)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- built-ins, resolve


def extra_data_dir() -> Path:
    """Folder of the optional external datasets (env MLAB_EXTRA_DATA, default <repo>/../shared/data)."""
    return Path(os.environ.get("MLAB_EXTRA_DATA") or REPO_ROOT.parent / "shared" / "data")


def builtin_datasets() -> dict[str, DatasetSpec]:
    """Datasets known by name: the shipped ones in ``data/`` plus external ones whose files exist."""
    specs: dict[str, DatasetSpec] = {}
    for split in ("test", "dev", "train"):
        specs[f"stsb-{split}"] = DatasetSpec(
            f"stsb-{split}", STS, str(DATA_DIR / "sts" / "stsb" / f"{split}.tsv"), split
        )
    specs["cranfield"] = DatasetSpec(
        "cranfield", RETRIEVAL, str(DATA_DIR / "retrieval" / "cranfield"), "test"
    )
    extra = extra_data_dir()
    candidates = [
        DatasetSpec("sickr-test", STS, str(extra / "sts" / "sickr" / "test.tsv"), "test", external=True),
        DatasetSpec("sickr-dev", STS, str(extra / "sts" / "sickr" / "dev.tsv"), "dev", external=True),
        DatasetSpec("biosses", STS, str(extra / "sts" / "biosses" / "test.tsv"), "test", external=True),
        DatasetSpec("cisi", RETRIEVAL, str(extra / "retrieval" / "cisi"), "test", external=True),
    ]
    for spec in candidates:
        if all(p.is_file() for p in spec.files()):
            specs[spec.name] = spec
    return specs


def resolve_dataset(name_or_path: str | Path, split: str | None = None) -> DatasetSpec:
    """A built-in name (``stsb-test``; ``stsb`` with ``split='dev'``), an STS .tsv path or a BEIR folder."""
    builtins = builtin_datasets()
    key = str(name_or_path)
    if key in builtins:
        spec = builtins[key]
        if split is not None and split != spec.split:
            raise DatasetError(f"dataset {key!r} has split {spec.split!r}, not {split!r}")
        return spec
    if split is not None and f"{key}-{split}" in builtins:
        return builtins[f"{key}-{split}"]
    path = Path(key).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".tsv":
            raise DatasetError(f"{path}: an STS dataset must be a tab-separated .tsv file")
        return DatasetSpec(str(path.resolve()), STS, str(path.resolve()), split or path.stem)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise DatasetError(f"{path}: not a BEIR folder (no corpus.jsonl)")
        chosen = split or "test"
        if not (path / "qrels" / f"{chosen}.tsv").is_file():
            splits = sorted(p.stem for p in (path / "qrels").glob("*.tsv"))
            raise DatasetError(
                f"{path}: no qrels/{chosen}.tsv (splits present: {', '.join(splits) or 'none'})"
            )
        return DatasetSpec(str(path.resolve()), RETRIEVAL, str(path.resolve()), chosen)
    raise DatasetError(
        f"unknown dataset {key!r}: not a built-in name ({', '.join(builtins)}) and no such file or folder"
    )


# ------------------------------------------------------------------------------------------ loading

_parsed: LRUCache[STSData | RetrievalData] = LRUCache(PARSED_DATASETS_KEPT)  # by content fingerprint


def load_dataset(spec: DatasetSpec) -> STSData | RetrievalData:
    """Parse a dataset; parsed data is cached per content fingerprint (last 8 kept)."""
    if spec.kind not in KINDS:
        raise DatasetError(f"dataset {spec.name!r}: unknown kind {spec.kind!r} (expected sts or retrieval)")
    key = (dataset_fingerprint(spec), spec.kind, spec.split)

    def parse() -> STSData | RetrievalData:
        return load_sts(spec.path) if spec.kind == STS else load_retrieval(spec.path, spec.split)

    return _parsed.get_or_build(key, parse)


def main_metric(kind: str) -> str:
    """The main score of a dataset kind (STS: cosine_spearman; retrieval: ndcg_at_10)."""
    if kind not in MAIN_SCORE:
        raise DatasetError(f"unknown dataset kind {kind!r} (expected sts or retrieval)")
    return MAIN_SCORE[kind]


def describe_dataset(spec: DatasetSpec) -> dict[str, Any]:
    """Name, kind, split, location, fingerprint and counts (loads the dataset, cached)."""
    data = load_dataset(spec)
    info: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "split": spec.split,
        "path": spec.path,
        "external": spec.external,
        "fingerprint": dataset_fingerprint(spec),
        "main_metric": main_metric(spec.kind),
    }
    if isinstance(data, STSData):
        info["n_items"] = len(data)  # items with a per-item score: pairs
        info["pairs"] = len(data)
        info["unique_sentences"] = len(set(data.sentences1) | set(data.sentences2))
    else:
        info["n_items"] = len(data.judged_query_ids)  # items with a per-item score: judged queries
        info["documents"] = len(data.corpus_ids)
        info["queries"] = len(data.query_ids)
        info["judged_queries"] = len(data.judged_query_ids)
        info["judgments"] = sum(len(v) for v in data.qrels.values())
    return info


# -------------------------------------------------------------------------------------------- uploads


def _safe_stem(filename: str) -> str:
    stem = Path(filename.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return cleaned[:60] or "dataset"


def _member_parts(info: zipfile.ZipInfo) -> list[str]:
    """Path parts of a zip member, refusing absolute paths, drive letters, `..` and symlinks."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DatasetError(f"zip member {info.filename!r}: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetError(f"zip member {info.filename!r}: '..' in a path is not allowed")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetError(f"zip member {info.filename!r}: symbolic links are not allowed")
    return parts


def _extract_zip(data: bytes, target: Path) -> None:
    """Safely extract ``data`` into ``target``: member count, total size and paths are checked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("upload is not a valid zip file") from None
    target.mkdir(parents=True, exist_ok=True)  # an empty zip still yields a (empty) folder to inspect
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise DatasetError(f"zip holds {len(members)} entries; at most {MAX_ZIP_FILES} are allowed")
        if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise DatasetError(f"zip would unpack to more than {MAX_UNZIPPED_BYTES // 2**20} MB")
        written = 0
        for info in members:
            parts = _member_parts(info)
            if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
                continue
            dest = target.joinpath(*parts)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, dest.open("wb") as out:
                    # Count real bytes: the sizes in the zip's headers can lie.
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        written += len(chunk)
                        if written > MAX_UNZIPPED_BYTES:
                            raise DatasetError(f"zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**20} MB")
                        out.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
                raise DatasetError(f"zip member {info.filename!r}: cannot extract ({exc})") from None


def _beir_root(extracted: Path) -> Path:
    """The BEIR folder inside an extracted zip: its root, or a single top-level folder."""
    if (extracted / "corpus.jsonl").is_file():
        return extracted
    tops = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(tops) == 1 and tops[0].is_dir() and (tops[0] / "corpus.jsonl").is_file():
        return tops[0]
    raise DatasetError(
        "zip does not hold a BEIR folder: expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv "
        "at the zip root or inside one top-level folder"
    )


EMPTY_DOCUMENT = "(empty document)"


def shown_text(text: str) -> str:
    """A text for display: ``(empty document)`` when it is empty or blank (Cranfield has such documents,
    and an empty text's embedding can rank high, so a result list must say what it is).

    >>> shown_text(""), shown_text("  "), shown_text("wing flutter")
    ('(empty document)', '(empty document)', 'wing flutter')
    """
    return text if text.strip() else EMPTY_DOCUMENT


def check_upload_name(filename: str) -> None:
    """Refuse an upload that is neither an STS ``.tsv`` nor a ``.zip`` (the message names the file)."""
    if Path(filename).suffix.lower() not in (".tsv", ".zip"):
        raise DatasetError(f"{filename}: upload an STS .tsv file or a .zip of a BEIR folder")


def save_upload(data: bytes, filename: str, dest_root: str | Path) -> DatasetSpec:
    """Validate and store an uploaded STS .tsv or BEIR .zip under ``dest_root``; returns its spec.

    The dataset is written to a temporary folder inside ``dest_root``, loaded (validated), then renamed
    into ``dest_root/<stem>-<sha12>`` in one step, so a failed upload leaves nothing behind. Uploading
    the same bytes again returns the existing dataset. A zip's split is ``test`` when present, else
    the first qrels file by name.
    """
    ensure_writable("uploading a dataset")
    if len(data) > MAX_UPLOAD_BYTES:
        raise DatasetError(
            f"{filename}: upload is {len(data) / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB"
        )
    check_upload_name(filename)
    suffix = Path(filename).suffix.lower()
    root = Path(dest_root)
    root.mkdir(parents=True, exist_ok=True)
    stem = _safe_stem(filename)
    final = root / f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        if suffix == ".tsv":
            (tmp / f"{stem}.tsv").write_bytes(data)
            load_sts(tmp / f"{stem}.tsv")
            staged = tmp
        else:
            _extract_zip(data, tmp / "unzipped")
            staged = _beir_root(tmp / "unzipped")
            split = _upload_split(staged)
            load_retrieval(staged, split)
        if not final.exists():
            try:
                os.rename(staged, final)
            except OSError:
                if not final.exists():  # a concurrent identical upload may have won the race
                    raise
    except DatasetError as exc:
        # Name the uploaded file, not the temporary path: "data.zip/corpus.jsonl, line 3: ...".
        message = str(exc).replace(str(tmp / f"{stem}.tsv"), filename)
        message = message.replace(str(tmp / "unzipped"), filename)
        if not message.startswith(filename):  # "junk.zip: upload is not a valid zip file"
            message = f"{filename}: {message}"
        raise DatasetError(message) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if suffix == ".tsv":
        return DatasetSpec(stem, STS, str((final / f"{stem}.tsv").resolve()), "test")
    return DatasetSpec(stem, RETRIEVAL, str(final.resolve()), _upload_split(final))


def _upload_split(folder: Path) -> str:
    splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    if not splits:
        raise DatasetError(f"{folder / 'qrels'}: no <split>.tsv file found")
    return "test" if "test" in splits else splits[0]
