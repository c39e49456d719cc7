"""MTEB's result format: read published result files, resolve model metadata, write the lab's results.

Scope: pure functions over bytes, dicts and DataFrames (no database, no UI). ``core.lab.mteb`` joins
them with storage; the CLI and pages call that.

The layout (the public ``embeddings-benchmark/results`` repository's)::

    results/<org>__<model>/<revision>/<TaskName>.json      # one task's scores
    results/<org>__<model>/<revision>/model_meta.json      # name, revision, embed_dim, n_parameters ...

What real files hold (all read here):

- current files (mteb >= 1.11): ``scores: {split: [{hf_subset, languages, main_score, <metric>: value}]}``;
- ``external`` folders (results converted from older runs): the same shape, keys of the older
  generation (``cos_sim_spearman``), ``mteb_version: null``;
- legacy files (mteb < 1.11, some models of the full repository): ``{split: {"cos_sim": {"spearman": v}}}``
  at the top level, one level deeper per subset for multilingual tasks, no ``main_score``.

Keys are mapped to the lab's (``cos_sim_spearman`` -> ``cosine_spearman``); a row per (split, subset,
metric) keeps ``main_score`` as the file states it plus the metrics the lab also computes. Values stay
fractions as in the file.

Metadata rule (:func:`resolve_model_meta`): each revision folder keeps its own ``model_meta.json`` as
published; the one ``embed_dim`` / ``n_parameters`` of a model (where plots place it) is the value most
of its meta files agree on, a tie going to the ``external`` folder's (written from the model card when
the results were submitted; in the shipped data it is the one matching the model's real output size);
every disagreement is returned as a :class:`MetaConflict` for the CLI and pages to show.

Export (:func:`task_result_dict`, :func:`model_meta_dict`): MTEB's current format (the TaskResult of
``mteb`` 2.x, key generation ``cosine_spearman``), ``mteb_version`` = :data:`FORMAT_VERSION`.

>>> parse_result_bytes(b'{"task_name": "BIOSSES", "mteb_version": null, "dataset_revision": "x",'
...     b' "scores": {"test": [{"hf_subset": "default", "cos_sim_spearman": 0.8, "main_score": 0.8}]}}',
...     "BIOSSES").scores
(('test', 'default', 'cosine_spearman', 0.8), ('test', 'default', 'main_score', 0.8))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import orjson
import pandas as pd
from msgspec import UNSET, UnsetType
from msgspec.structs import astuple

from common.errors import LabError
from core import metrics

FORMAT_VERSION = "2.26.24"  # the mteb release whose TaskResult format (and loader) the export targets
EXTERNAL = "external"
META_FILE = "model_meta.json"
NO_REVISION = "no_revision_available"

# Older key generation -> the lab's (= mteb's current) keys.
KEY_ALIASES: dict[str, str] = {
    "cos_sim_spearman": "cosine_spearman",
    "cos_sim_pearson": "cosine_pearson",
}
# Metrics kept besides main_score: the ones the lab computes too.
LAB_METRICS: frozenset[str] = frozenset(m for names in metrics.METRICS.values() for m in names)
MAIN = "main_score"
# (key in a file, lab key) to read from each (split, subset) dict, current generation first.
_WANTED_KEYS: tuple[tuple[str, str], ...] = (
    *((m, m) for m in sorted(LAB_METRICS | {MAIN})),
    *sorted(KEY_ALIASES.items()),
)


class MtebFormatError(LabError):
    """A file that is not an MTEB result (or model meta) file; the message names the file."""


@dataclass(frozen=True)
class TaskInfo:
    """An MTEB task the lab knows: its lab dataset (if any), kind, split and the caveat of the match."""

    task: str
    dataset: str | None  # the lab's built-in dataset scoring the same task, None if the lab has none
    kind: str  # metrics kind: "sts" or "retrieval"
    split: str = "test"
    caveat: str = ""  # shown beside every point where a lab dataset is not the same items as MTEB's
    export: bool = False  # the lab's dataset is this task's items: its results export under this name


SICKR_CAVEAT = (
    "MTEB's SICK-R scores all 9,927 SICK pairs; the lab's sickr-test is the 4,927-pair test split, "
    "so the numbers are not on the same pairs."
)
BIOSSES_CAVEAT = (
    "Same 100 pairs and scores, but MTEB's copy of BIOSSES differs slightly in text from the lab's."
)

TASKS: dict[str, TaskInfo] = {
    t.task: t
    for t in (
        TaskInfo("STSBenchmark", "stsb-test", "sts", export=True),
        TaskInfo("SICK-R", "sickr-test", "sts", caveat=SICKR_CAVEAT),
        TaskInfo("BIOSSES", "biosses", "sts", caveat=BIOSSES_CAVEAT, export=True),
        *(TaskInfo(f"STS{n}", None, "sts") for n in (12, 13, 14, 15, 16)),
        TaskInfo("SciFact", None, "retrieval"),
        TaskInfo("NFCorpus", None, "retrieval"),
    )
}
DATASET_TASKS: dict[str, TaskInfo] = {t.dataset: t for t in TASKS.values() if t.dataset}
# Export: the lab's dataset -> MTEB dataset revision is not claimed; the lab writes its own fingerprint.
MTEB_LANGUAGES = ["eng-Latn"]


def task_for_dataset(dataset: str) -> TaskInfo | None:
    """The MTEB task a lab dataset corresponds to (``stsb-test`` -> STSBenchmark), or None."""
    return DATASET_TASKS.get(dataset)


def dataset_for_task(task: str) -> str | None:
    """The lab dataset of an MTEB task (``SICK-R`` -> ``sickr-test``), or None."""
    info = TASKS.get(task)
    return info.dataset if info else None


# ----------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ResultFile:
    """One ``<model>/<revision>/<Task>.json`` (or ``model_meta.json``) found under a results folder."""

    model: str  # "org/name" from the folder name "org__name"
    revision: str  # the folder name: a commit hash, "external", "no_revision_available" ...
    task: str  # the file stem; "" for model_meta.json
    location: str  # the file's path as text (a Path per file cost a second on the whole results repository)
    size: int = -1  # bytes and modification time (ns) as listed: a file whose stored ones match is not read
    mtime_ns: int = -1
    is_meta: bool = False  # True for model_meta.json


@dataclass(frozen=True)
class ParsedResult:
    """The scores of one task file: rows of (split, subset, metric, value); value None = NaN/null."""

    task: str
    mteb_version: str | None
    dataset_revision: str | None
    scores: tuple[tuple[str, str, str, float | None], ...]


@dataclass(frozen=True)
class ModelMeta:
    """The fields of a ``model_meta.json`` the lab uses (None where the file has none)."""

    name: str | None
    revision: str | None
    embed_dim: int | None
    n_parameters: int | None
    max_tokens: int | None
    similarity_fn_name: str | None


def model_name(folder: str) -> str:
    """``BAAI__bge-small-en-v1.5`` -> ``BAAI/bge-small-en-v1.5`` (the results repository's folder naming)."""
    org, sep, name = folder.partition("__")
    return f"{org}/{name}" if sep else folder


def folder_name(model: str) -> str:
    """``BAAI/bge-small-en-v1.5`` -> ``BAAI__bge-small-en-v1.5``."""
    return model.replace("/", "__", 1)


def results_root(path: Path) -> Path:
    """The folder holding the model folders: ``path/results`` when it exists (a repository checkout), else ``path``."""
    inner = path / "results"
    return inner if inner.is_dir() else path


def find_result_files(path: Path, models: Sequence[str] | None = None) -> list[ResultFile]:
    """Every ``<model>/<revision>/*.json`` under ``path`` (or ``path/results``), sorted; deeper files are ignored.

    ``models`` (``org/name`` or the folder name) keeps only those models; a name that matches no
    folder is an error, so a typo does not import nothing silently.
    """
    root = results_root(Path(path))
    if not root.is_dir():
        raise MtebFormatError(f"{path}: not a folder")
    wanted = {folder_name(m) for m in models} if models else None
    found: list[ResultFile] = []
    seen: set[str] = set()
    # os.scandir: one directory read per folder and one stat per file (pathlib's glob + sort cost seconds
    # on the 100,000 files of the whole results repository).
    for model_dir in _subfolders(str(root)):
        if model_dir.name.startswith(".") or (wanted is not None and model_dir.name not in wanted):
            continue
        seen.add(model_dir.name)
        model = model_name(model_dir.name)
        for revision_dir in _subfolders(model_dir.path):
            with os.scandir(revision_dir.path) as entries:
                files = sorted((e for e in entries if e.name.endswith(".json")), key=lambda e: e.name)
            for entry in files:
                try:
                    if not entry.is_file():
                        continue
                    stat = entry.stat()
                except OSError:  # vanished or unreadable: reading it reports the error by path
                    size, mtime_ns = -1, -1
                else:
                    size, mtime_ns = stat.st_size, stat.st_mtime_ns
                meta = entry.name == META_FILE
                task = "" if meta else entry.name[: -len(".json")]
                found.append(ResultFile(model, revision_dir.name, task, entry.path, size, mtime_ns, meta))
    if wanted is not None and wanted - seen:
        missing = ", ".join(sorted(model_name(m) for m in wanted - seen))
        raise MtebFormatError(f"{root}: no model folder for {missing} (expected <org>__<name>/<revision>/)")
    if not found:
        raise MtebFormatError(f"{root}: no MTEB result files (expected <org>__<name>/<revision>/<Task>.json)")
    return found


def _subfolders(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return sorted((e for e in entries if e.is_dir()), key=lambda e: e.name)


def sha256(data: bytes) -> str:
    """Hex sha256 of the bytes (the provenance of every imported score)."""
    return hashlib.sha256(data).hexdigest()


# Python's json writes NaN and Infinity as values, which JSON (orjson, msgspec) rejects: they are read as
# null (= NaN). Each is replaced by ``:null`` padded with spaces to the same length (an equal-length
# replace is the cheaper one; half the public repository's bytes are in files holding NaN, 75 files hold
# Infinity) and positions in JSON errors stay the file's.
_NON_FINITE: tuple[tuple[bytes, tuple[tuple[bytes, bytes], ...]], ...] = (
    (b"NaN", ((b": NaN", b":null"),)),
    (b"Infinity", ((b": -Infinity", b":null      "), (b": Infinity", b":null     "))),
)


def _json_variants(data: bytes) -> Iterator[bytes]:
    """The bytes to try parsing, in order: as they are, then (where the file has them) with NaN values
    nulled, then Infinity ones too. Both parsers stop at the first that parses, so a file is scanned for
    the tokens only when it does not parse as it is (most files parse at once)."""
    yield data
    for token, replacements in _NON_FINITE:
        if token in data:
            for old, new in replacements:
                data = data.replace(old, new)
            yield data


def load_json(data: bytes, where: str) -> Any:
    """Parse JSON bytes with orjson (7x faster than ``json`` on the results repository), NaN read as null."""
    for variant in _json_variants(data):
        data = variant
        try:
            return orjson.loads(variant)
        except orjson.JSONDecodeError:
            continue
    try:  # the standard parser's message says what and where
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MtebFormatError(f"{where}: not valid JSON ({exc})") from None


def _number(value: Any) -> float | bool | None:
    """A score value as float (None for null/NaN); False when the value is not a number at all."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    number = float(value)
    return number if math.isfinite(number) else None


_KEY_NAMES: dict[str, str] = dict(_WANTED_KEYS)
_KEY_RANK: dict[str, int] = {key: rank for rank, (key, _) in enumerate(_WANTED_KEYS)}


def _metric_rows(
    split: str, subset: str, scores: Mapping[str, Any]
) -> list[tuple[str, str, str, float | None]]:
    """main_score and the lab's metrics of one (split, subset) dict, keys mapped to the lab's generation."""
    present = _KEY_NAMES.keys() & scores.keys()  # in C: most subsets hold main_score alone of these keys
    if not present:
        return []
    picked: dict[str, float | None] = {}
    # current keys first: in external files both generations appear
    for key in sorted(present, key=_KEY_RANK.__getitem__) if len(present) > 1 else present:
        name = _KEY_NAMES[key]
        if name in picked:
            continue
        raw = scores[key]
        if type(raw) is float:
            picked[name] = raw if math.isfinite(raw) else None
            continue
        value = _number(raw)
        if value is False:
            raise ValueError(f"{split}/{subset}: {key} is not a number ({raw!r})")
        picked[name] = value
    if len(picked) == 1:
        ((name, value),) = picked.items()
        return [(split, subset, name, value)]
    return [(split, subset, m, picked[m]) for m in sorted(picked)]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


_LEGACY_GROUPS = frozenset({"cos_sim", "cosine", "euclidean", "manhattan", "dot", "max", "similarity"})


def _legacy_rows(task: str, data: Mapping[str, Any]) -> list[tuple[str, str, str, float | None]]:
    """Rows of a pre-1.11 file: ``{split: {"cos_sim": {"spearman": v}}}`` or ``{split: {subset: {...}}}``."""
    skip = {"mteb_version", "mteb_dataset_name", "dataset_revision", "task_name", "evaluation_time"}
    info = TASKS.get(task)
    rows: list[tuple[str, str, str, float | None]] = []
    for split, block in data.items():
        if split in skip or not isinstance(block, Mapping):
            continue
        values = {k: v for k, v in block.items() if k != "evaluation_time"}
        # A subset level ({"en": {...}, "de": {...}}) holds only dicts, none of them a metric group.
        per_subset = (
            bool(values)
            and all(isinstance(v, Mapping) for v in values.values())
            and not set(values) & _LEGACY_GROUPS
        )
        subsets = values if per_subset else {"default": values}
        for subset, scores in subsets.items():
            flat: dict[str, Any] = {}
            _flatten("", scores, flat)
            flat = {k: v for k, v in flat.items() if k != "evaluation_time"}
            if MAIN not in flat and info is not None:
                main_key = metrics.MAIN_SCORE[info.kind]
                for key, value in flat.items():
                    if KEY_ALIASES.get(key, key) == main_key:
                        flat[MAIN] = value
                        break
            rows.extend(_metric_rows(split, subset, flat))
    return rows


# The typed fast path: a current-generation task file decoded by msgspec straight into these structs.
# Only the fields the lab uses are declared, so everything else in a file (per-subset extras such as
# ``v_measures`` arrays, ``languages``, timings) is skipped without building Python objects: the whole
# public results repository decodes in about a sixth of orjson's time. UNSET tells a key the file lacks
# from a ``null`` (= NaN) value. Ints are read as floats, as the generic path does; anything else
# (a string or bool score, a split holding a dict, a legacy file, invalid JSON) fails to decode and the
# file goes to the generic path, which gives the same rows or the error message naming the file.
_TypedEntry = msgspec.defstruct(
    "_TypedEntry",
    [("hf_subset", str | None, None), *((key, float | None | UnsetType, UNSET) for key, _ in _WANTED_KEYS)],
    gc=False,
)
_TypedFile = msgspec.defstruct(
    "_TypedFile",
    [
        ("scores", dict[str, list[_TypedEntry]]),  # type: ignore[valid-type]
        ("mteb_version", str | None, None),
        ("dataset_revision", str | None, None),
    ],
    gc=False,
)
_TYPED_DECODER = msgspec.json.Decoder(_TypedFile)
_LAB_NAMES: tuple[str, ...] = tuple(name for _, name in _WANTED_KEYS)  # the lab key of each entry field
_NO_ROW = len(_WANTED_KEYS)  # UNSET fields of an entry holding none of the wanted keys
_ONE_ROW = _NO_ROW - 1  # ... holding one (most entries: main_score alone)
_MAIN_AT = 1 + [key for key, _ in _WANTED_KEYS].index(MAIN)  # main_score's place in astuple(entry)


class ScoreColumns(NamedTuple):
    """A task file's scores as columns (row ``i`` is ``split[i], subset[i], metric[i], value[i]``): what the
    typed path builds and reader processes send back (cheaper to build and pickle than a tuple per row)."""

    mteb_version: str | None
    dataset_revision: str | None
    split: tuple[str, ...]
    subset: tuple[str, ...]
    metric: tuple[str, ...]
    value: tuple[float | None, ...]

    @classmethod
    def of(cls, parsed: ParsedResult) -> ScoreColumns:
        """The columns of a parsed file's rows."""
        columns = tuple(zip(*parsed.scores, strict=True)) if parsed.scores else ((), (), (), ())
        return cls(parsed.mteb_version, parsed.dataset_revision, *columns)

    def without_rows(self) -> ScoreColumns:
        """The same file's versions with no rows (what a reader sends back once it packed the rows)."""
        return ScoreColumns(self.mteb_version, self.dataset_revision, (), (), (), ())

    def parsed(self, task: str) -> ParsedResult:
        """The rows again, as :class:`ParsedResult`."""
        rows = tuple(zip(self.split, self.subset, self.metric, self.value, strict=True))
        return ParsedResult(task, self.mteb_version, self.dataset_revision, rows)


def _typed_columns(data: bytes) -> ScoreColumns | None:
    """The typed fast path (columns), or None where the file is not a plain current-generation one."""
    doc: Any = None
    for variant in _json_variants(data):
        try:
            doc = _TYPED_DECODER.decode(variant)
            break
        except msgspec.ValidationError:  # valid JSON, not the typed layout: the generic path's
            return None
        except msgspec.DecodeError:  # not JSON (yet): NaN values, or malformed
            continue
    if doc is None:
        return None
    splits: list[str] = []
    subsets: list[str] = []
    metric_names: list[str] = []
    values: list[float | None] = []
    repeated = False
    for split, entries in doc.scores.items():
        first = len(subsets)
        seen = []  # the subsets of this split with rows: one listed twice means deduplicating
        for entry in entries:
            fields = astuple(entry)  # (hf_subset, *the wanted keys in _WANTED_KEYS order)
            unset = fields.count(UNSET)
            if unset == _NO_ROW:
                continue
            subset = fields[0] or "default"
            seen.append(subset)
            if unset == _ONE_ROW and fields[_MAIN_AT] is not UNSET:  # most entries: main_score alone
                subsets.append(subset)
                metric_names.append(MAIN)
                values.append(fields[_MAIN_AT])
                continue
            picked: dict[str, float | None] = {}
            for name, value in zip(_LAB_NAMES, fields[1:], strict=True):  # current keys first
                if value is not UNSET and name not in picked:
                    picked[name] = value
            for name in sorted(picked):
                subsets.append(subset)
                metric_names.append(name)
                values.append(picked[name])
        splits.extend([split] * (len(subsets) - first))
        repeated = repeated or len(set(seen)) < len(seen)
    if repeated:  # a (split, subset) listed twice: the later entry wins, as in the generic path
        rows = {r[:3]: r for r in zip(splits, subsets, metric_names, values, strict=True)}.values()
        splits, subsets, metric_names, values = (list(c) for c in zip(*rows, strict=True))
    return ScoreColumns(doc.mteb_version, doc.dataset_revision, tuple(splits), tuple(subsets),
                        tuple(metric_names), tuple(values))  # fmt: skip


def parse_result_typed(data: bytes, task: str) -> ParsedResult | None:
    """The typed fast path of :func:`parse_result_bytes`: the same result, or None where the file is not a
    plain current-generation one (the caller then takes :func:`parse_result_generic`)."""
    columns = _typed_columns(data)
    return None if columns is None else columns.parsed(task)


def parse_result_bytes(data: bytes, task: str, where: str = "") -> ParsedResult:
    """Parse one task file (any generation); raises :class:`MtebFormatError` naming ``where``.

    Current-generation files take the typed fast path (:func:`parse_result_typed`), every other file
    the generic one (:func:`parse_result_generic`); both give the same rows (tests/test_mteb_typed.py).
    """
    parsed = parse_result_typed(data, task)
    return parsed if parsed is not None else parse_result_generic(data, task, where)


def parse_result_columns(data: bytes, task: str, where: str = "") -> ScoreColumns:
    """:func:`parse_result_bytes` as columns (what the import stores), the typed path never making rows."""
    columns = _typed_columns(data)
    return columns if columns is not None else ScoreColumns.of(parse_result_generic(data, task, where))


def parse_result_generic(data: bytes, task: str, where: str = "") -> ParsedResult:
    """Parse one task file of any generation from a generic JSON parse (orjson); the errors' source."""
    label = where or task
    doc = load_json(data, label)
    if not isinstance(doc, dict):
        raise MtebFormatError(f"{label}: expected a JSON object, found {type(doc).__name__}")
    version = doc.get("mteb_version")
    revision = doc.get("dataset_revision")
    try:
        scores = doc.get("scores")
        if scores is None:
            rows = _legacy_rows(task, doc)
            if not rows and not any(isinstance(v, Mapping) for v in doc.values()):
                raise ValueError("no 'scores' and no split of scores")
        else:
            if not isinstance(scores, dict):
                raise ValueError(f"'scores' must be an object of splits, found {type(scores).__name__}")
            rows = []
            for split, entries in scores.items():
                if isinstance(entries, dict):  # a split holding one unlabelled subset
                    entries = [entries]
                if not isinstance(entries, list):
                    raise ValueError(
                        f"scores.{split} must be a list of subsets, found {type(entries).__name__}"
                    )
                for i, entry in enumerate(entries):
                    if not isinstance(entry, dict):
                        raise ValueError(f"scores.{split}[{i}] is not an object")
                    subset = str(entry.get("hf_subset") or "default")
                    rows.extend(_metric_rows(str(split), subset, entry))
    except ValueError as exc:
        raise MtebFormatError(f"{label}: {exc}") from None
    if len({r[:3] for r in rows}) < len(rows):  # a (split, subset) listed twice: the later entry wins
        rows = list({r[:3]: r for r in rows}.values())
    return ParsedResult(
        task=task,
        mteb_version=None if version is None else str(version),
        dataset_revision=None if revision is None else str(revision),
        scores=tuple(rows),
    )


def _int_or_none(value: Any) -> int | None:
    number = _number(value)
    if number is None or number is False:
        return None
    return int(number)


def parse_meta_bytes(data: bytes, where: str = "model_meta.json") -> ModelMeta:
    """The used fields of a ``model_meta.json``; raises :class:`MtebFormatError` naming ``where``."""
    doc = load_json(data, where)
    if not isinstance(doc, dict):
        raise MtebFormatError(f"{where}: expected a JSON object, found {type(doc).__name__}")
    sim = doc.get("similarity_fn_name")
    return ModelMeta(
        name=doc.get("name") if isinstance(doc.get("name"), str) else None,
        revision=doc.get("revision") if isinstance(doc.get("revision"), str) else None,
        embed_dim=_int_or_none(doc.get("embed_dim")),
        n_parameters=_int_or_none(doc.get("n_parameters")),
        max_tokens=_int_or_none(doc.get("max_tokens")),
        similarity_fn_name=sim if isinstance(sim, str) else None,
    )


# What reader processes send back is plain tuples (NamedTuple): unpickling a dataclass per file cost the
# importing process ~3 s on the public repository, tuples a fifth of that.
class ReadJob(NamedTuple):
    """One file to read: hashed always, parsed unless its stored sha256 is the same."""

    path: str
    task: str  # "" for model_meta.json
    label: str  # how errors name the file
    stored_sha256: str | None = None
    size: int = -1  # as listed (-1: unknown): the file is read in one call of that size


class ReadOutcome(NamedTuple):
    """What reading a file gave: its sha256 and the parsed content, or None (unchanged/skipped), or an error."""

    sha256: str | None
    content: ScoreColumns | ModelMeta | None
    error: str | None = None


def _read_bytes(path: str, size: int) -> bytes:
    """The file's bytes: one ``read`` of its listed size + 1 (a third less CPU than ``open().read()`` over
    the 100,000 files of the whole results repository); read on to the end if it is longer or unlisted."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        want = size + 1 if size >= 0 else 1 << 20
        chunks = []
        while chunk := os.read(fd, want):
            chunks.append(chunk)
            if len(chunk) < want:  # a short read of a regular file: its end
                break
            want = 1 << 20
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # b"" when empty
    finally:
        os.close(fd)


def read_file(job: ReadJob) -> ReadOutcome:
    """Read, hash and (if new) parse one file; errors come back as text naming the file, never raised."""
    try:
        data = _read_bytes(job.path, job.size)
    except OSError as exc:
        return ReadOutcome(None, None, f"{job.label}: cannot read: {exc.strerror or exc}")
    digest = sha256(data)
    if digest == job.stored_sha256:
        return ReadOutcome(digest, None)
    try:
        if not job.task:
            return ReadOutcome(digest, parse_meta_bytes(data, job.label))
        return ReadOutcome(digest, parse_result_columns(data, job.task, job.label))
    except MtebFormatError as exc:
        return ReadOutcome(digest, None, str(exc))


# --------------------------------------------------------------------------------- metadata rule


@dataclass(frozen=True)
class MetaConflict:
    """A model whose meta files disagree on a field: every value with its revisions, and the one chosen."""

    model: str
    field: str
    values: tuple[tuple[int, tuple[str, ...]], ...]  # (value, revisions stating it), by value
    chosen: int

    def describe(self) -> str:
        """One line: ``BAAI/bge-small-en-v1.5 embed_dim: 384 (external) vs 512 (5c38ec7); using 384``."""
        parts = " vs ".join(
            f"{value:,} ({', '.join(r[:7] if r != EXTERNAL else r for r in revs)})"
            for value, revs in self.values
        )
        return f"{self.model} {self.field}: {parts}; using {self.chosen:,}"


# Parameter counts in the model registry are rounded (33,400,000 vs the exact 33,360,512): only a
# difference beyond this relative tolerance is a conflict.
PARAMS_TOLERANCE = 0.05


def _choose(values_by_revision: Mapping[str, int]) -> int:
    counts = Counter(values_by_revision.values())
    top = max(counts.values())
    tied = [v for v, c in counts.items() if c == top]
    if len(tied) == 1:
        return tied[0]
    if EXTERNAL in values_by_revision and values_by_revision[EXTERNAL] in tied:
        return values_by_revision[EXTERNAL]
    return min(tied)  # no external to break the tie: the smaller value (a stated, deterministic choice)


def resolve_model_meta(
    model: str, metas: Mapping[str, ModelMeta | None]
) -> tuple[int | None, int | None, list[MetaConflict]]:
    """(embed_dim, n_parameters, conflicts) of a model from its revisions' meta files (rule in the module doc).

    ``n_parameters`` values within :data:`PARAMS_TOLERANCE` of each other agree; the most precise of
    them (the one not ending in zeros, i.e. the exact count over a rounded one) is returned.

    >>> m = lambda d, p: ModelMeta(None, None, d, p, None, None)
    >>> dim, params, conflicts = resolve_model_meta("a/b", {"5c3": m(512, 33400000), "external": m(384, 33360512)})
    >>> dim, params, [c.describe() for c in conflicts]
    (384, 33360512, ['a/b embed_dim: 384 (external) vs 512 (5c3); using 384'])
    """
    conflicts: list[MetaConflict] = []
    dims = {rev: meta.embed_dim for rev, meta in metas.items() if meta is not None and meta.embed_dim}
    embed_dim = _choose(dims) if dims else None
    if len(set(dims.values())) > 1 and embed_dim is not None:
        conflicts.append(_conflict(model, "embed_dim", dims, embed_dim))
    params = {rev: meta.n_parameters for rev, meta in metas.items() if meta is not None and meta.n_parameters}
    n_parameters = None
    if params:
        chosen = _choose(params)
        close = [v for v in params.values() if abs(v - chosen) <= PARAMS_TOLERANCE * chosen]
        n_parameters = max(close, key=lambda v: (len(str(v).rstrip("0")), -abs(v - chosen)))
        far = [v for v in params.values() if abs(v - chosen) > PARAMS_TOLERANCE * chosen]
        if far:
            conflicts.append(_conflict(model, "n_parameters", params, n_parameters))
    return embed_dim, n_parameters, conflicts


def _conflict(model: str, field: str, by_revision: Mapping[str, int], chosen: int) -> MetaConflict:
    revisions: dict[int, list[str]] = {}
    for rev, value in sorted(by_revision.items()):
        revisions.setdefault(value, []).append(rev)
    ordered = sorted(revisions.items(), key=lambda kv: (kv[0] != chosen, kv[0]))
    return MetaConflict(model, field, tuple((v, tuple(r)) for v, r in ordered), chosen)


_VERSION_PART = re.compile(r"\d+")


def version_key(version: object) -> tuple[int, ...]:
    """Sortable mteb version (``"1.18.0"`` -> (1, 18, 0)); None/NaN (external files) sorts first."""
    if not isinstance(version, str) or not version:
        return ()
    return tuple(int(p) for p in _VERSION_PART.findall(version)[:4])


# ------------------------------------------------------------------------- reference points (pages)

REFERENCE_COLUMNS: tuple[str, ...] = (
    "model",
    "revision",
    "embed_dim",
    "n_parameters",
    "task",
    "dataset",
    "split",
    "subset",
    "metric",
    "value",
    "mteb_version",
    "source",
    "sha256",
)
X_KINDS: dict[str, str] = {
    "dim": "embedding dims",
    "bytes_per_vector": "bytes per vector (float32)",
    "params": "parameters",
}


def reference_points(scores: pd.DataFrame, dataset: str, metric: str, x: str = "dim") -> pd.DataFrame:
    """One point per reference model on a lab dataset: model, revision, x, value, embed_dim, n_parameters, caveat.

    ``scores`` has :data:`REFERENCE_COLUMNS`. The point is the task's test split, subset ``default``;
    where a model has the task in several revisions, the file with the newest ``mteb_version`` wins
    (external files last). ``x``: ``dim`` (embed dim), ``bytes_per_vector`` (float32: 4 bytes a dim)
    or ``params``; models without that figure are left out.
    """
    info = DATASET_TASKS.get(dataset)
    columns = ["model", "revision", "x", "value", "embed_dim", "n_parameters", "task", "caveat", "source"]
    if x not in X_KINDS:
        raise ValueError(f"unknown x {x!r} for reference models; choose from {', '.join(X_KINDS)}")
    if info is None or scores.empty:
        return pd.DataFrame(columns=columns)
    rows = scores[
        (scores["task"] == info.task)
        & (scores["metric"] == metric)
        & (scores["split"] == info.split)
        & (scores["subset"] == "default")
    ].copy()
    rows = rows.dropna(subset=["value"])
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows["_v"] = rows["mteb_version"].map(version_key)
    rows = rows.sort_values(["model", "_v", "revision"]).groupby("model", sort=True).tail(1)
    xs = {
        "dim": rows["embed_dim"],
        "bytes_per_vector": rows["embed_dim"] * 4,
        "params": rows["n_parameters"],
    }[x]
    out = rows.assign(x=pd.to_numeric(xs, errors="coerce"), caveat=info.caveat)[columns]
    return out.dropna(subset=["x"]).sort_values(["x", "model"]).reset_index(drop=True)


def nearest_references(points: pd.DataFrame, sizes: Mapping[str, int], k: int = 2) -> pd.DataFrame:
    """Per size row label, the ``k`` reference models whose ``x`` is nearest (log scale) to that size.

    ``points`` from :func:`reference_points`; ``sizes`` maps row labels to the same x (e.g. the
    diagonal cell's dims). Returns columns ``size``, ``model``, ``x``, ``value``; ties break on model name.
    """
    rows: list[dict[str, Any]] = []
    if points.empty:
        return pd.DataFrame(columns=["size", "model", "x", "value"])
    for label, size in sizes.items():
        distance = (points["x"].astype(float).map(math.log) - math.log(float(size))).abs()
        chosen = points.assign(_d=distance).sort_values(["_d", "model"]).head(k)
        rows.extend(
            {"size": label, "model": m, "x": int(xv), "value": float(v)}
            for m, xv, v in zip(chosen["model"], chosen["x"], chosen["value"], strict=True)
        )
    return pd.DataFrame(rows, columns=["size", "model", "x", "value"])


MODEL_TABLE_COLUMNS: tuple[str, ...] = (
    "model",
    "embed_dim",
    "n_parameters",
    "revisions",
    "tasks",
    "STSBenchmark",
)


def models_table(summaries: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Home's list: per model (``summaries``: model, embed_dim, n_parameters, revisions, tasks) its
    STSBenchmark main score from ``scores`` (the plotted one: newest ``mteb_version``), NaN without one."""
    if summaries.empty:
        return pd.DataFrame(columns=list(MODEL_TABLE_COLUMNS))
    stsb = reference_points(scores, "stsb-test", MAIN, "dim").set_index("model")["value"]
    table = summaries.assign(STSBenchmark=summaries["model"].map(stsb).astype("float64"))
    return table[list(MODEL_TABLE_COLUMNS)].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ export


def submodel_folder(checkpoint: str, layer: int, dim: int, precision: str = "float32") -> str:
    """``default__L3-D128`` (float32) or ``default__L3-D128-int8``: the MTEB model folder of a sub-model.

    A local checkpoint (an absolute folder path) is named by its folder; a hub id's ``org/name``
    becomes ``org__name`` as in the results repository; characters a folder name cannot hold
    (``@`` of a revision, spaces) become ``-``.

    >>> submodel_folder("/models/starbucks", 2, 64), submodel_folder("org/m@v1", 6, 384, "binary")
    ('starbucks__L2-D64', 'org__m-v1__L6-D384-binary')
    """
    local = checkpoint.startswith(("/", "./", "../", "~")) or "\\" in checkpoint
    base = Path(checkpoint.rstrip("/\\")).name if local else folder_name(checkpoint)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "checkpoint"
    suffix = "" if precision == "float32" else f"-{precision}"
    return f"{name}__L{int(layer)}-D{int(dim)}{suffix}"


def task_result_dict(
    task: str, values: Mapping[str, float | None], dataset_revision: str, split: str = "test"
) -> dict[str, Any]:
    """One task's MTEB result document (current format) from the lab's metric values of one cell.

    ``main_score`` is the task kind's main metric (``cosine_spearman`` for STS); keys are the current
    generation; NaN/None metrics are left out (MTEB files hold no nulls in scores).
    """
    info = TASKS[task]
    main_key = metrics.MAIN_SCORE[info.kind]
    main = values.get(main_key)
    if main is None or not math.isfinite(float(main)):
        raise MtebFormatError(f"{task}: no finite {main_key} to write as main_score")
    entry: dict[str, Any] = {"hf_subset": "default", "languages": list(MTEB_LANGUAGES)}
    for key in sorted(values):
        value = values[key]
        if value is not None and math.isfinite(float(value)):
            entry[key] = float(value)
    entry[MAIN] = float(main)
    return {
        "dataset_revision": dataset_revision,
        "task_name": task,
        "mteb_version": FORMAT_VERSION,
        "scores": {split: [entry]},
        "evaluation_time": None,
        "kg_co2_emissions": None,
    }


def model_meta_dict(
    name: str, revision: str, embed_dim: int, n_parameters: int | None, *, max_tokens: int | None,
    similarity: str, source: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The ``model_meta.json`` of an exported sub-model (``source``: the lab's provenance of it)."""
    return {
        "name": name,
        "revision": revision,
        "release_date": None,
        "languages": list(MTEB_LANGUAGES),
        "n_parameters": n_parameters,
        "max_tokens": max_tokens,
        "embed_dim": int(embed_dim),
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["Sentence Transformers"],
        "reference": None,
        "similarity_fn_name": similarity,
        "use_instructions": False,
        "training_datasets": None,
        "adapted_from": source.get("checkpoint"),
        "superseded_by": None,
        "modalities": ["text"],
        "matryoshka_lab": dict(source),
    }


def dump_json(doc: Mapping[str, Any]) -> str:
    """JSON text as the results repository writes it (2-space indent, trailing newline, no NaN)."""
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def iter_scores(parsed: Iterable[ParsedResult]) -> Iterable[tuple[str, str, str, str, float | None]]:
    """(task, split, subset, metric, value) of every parsed file, in order."""
    for result in parsed:
        for split, subset, metric, value in result.scores:
            yield result.task, split, subset, metric, value
