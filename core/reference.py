"""Published reference points: the Starbucks paper's per-size results (Tables A1 and A2), as shipped data.

The tables come from the ielab/Starbucks repository README (commit 2a3b24f, "Full Result Table
Appendix") for "Starbucks: Improved Training for 2D Matryoshka Embeddings" (BERT-base, 12 x 768). They
were parsed once from ``data/reference/starbucks-tables.md`` (the verbatim copy) into the tidy
``data/reference/starbucks_tables.csv``; the lab reads only the CSV, so nothing outside the repository
is needed at run time. :func:`parse_tables_markdown` is the parser (a test checks the CSV equals it).

One CSV row is one published number: ``table`` (A1 in-domain, A2 out-of-domain), ``size`` (Demi ...
Trenta), ``layers``, ``dim``, ``method`` (BERT, BERT-Separate, BERT-2DMSE, BERT-SRL, SMAE-SRL
(Starbucks)), ``method_key`` (bert, separate, 2dmse, srl, starbucks), ``dataset`` as printed,
``domain`` (A2 only), ``metric`` in the lab's keys (``cosine_spearman``, ``mrr_at_10``,
``ndcg_at_10``), ``value``, ``significant_vs_starbucks`` (the paper's ``*``: p < 0.05 against SMAE-SRL),
``best_in_size`` (the paper's bold) and ``is_average`` (the paper's own Average / Avg. columns).

Also here: the table pieces the app shows on request - extra columns for the Compare per-size table
(:func:`reference_columns`) and overlay points for Curves (:func:`overlay_points`, x in layers, dims,
float32 bytes per vector, or encoder parameters computed for BERT-base, which the tables do not print).

Out of scope: anything that compares our numbers with these (a lab checkpoint is not the paper's model;
the overlay is context, not a test).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pandas as pd

from common.errors import LabError

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "data" / "reference"
CSV_PATH = REFERENCE_DIR / "starbucks_tables.csv"
MARKDOWN_PATH = REFERENCE_DIR / "starbucks-tables.md"

CITATION = (
    "Starbucks: Improved Training for 2D Matryoshka Embeddings (ielab). Tables A1 and A2 of the "
    "ielab/Starbucks repository README, commit 2a3b24f; BERT-base (12 layers x 768)."
)
SOURCE_URL = "https://github.com/ielab/Starbucks"
SOURCE_COMMIT = "2a3b24f"

COLUMNS: tuple[str, ...] = (
    "table",
    "size",
    "layers",
    "dim",
    "method",
    "method_key",
    "dataset",
    "domain",
    "metric",
    "value",
    "significant_vs_starbucks",
    "best_in_size",
    "is_average",
)
SIZES: tuple[str, ...] = ("Demi", "Short", "Tall", "Grande", "Venti", "Trenta")
METHOD_KEYS: dict[str, str] = {
    "BERT": "bert",
    "BERT-Separate": "separate",
    "BERT-2DMSE": "2dmse",
    "BERT-SRL": "srl",
    "SMAE-SRL (Starbucks)": "starbucks",
}
METHOD_LABELS: dict[str, str] = {key: name for name, key in METHOD_KEYS.items()}
AVERAGE_COLUMNS: frozenset[str] = frozenset({"Average", "Avg."})

# BERT-base (uncased): token + position + type embeddings and their LayerNorm; one encoder layer.
BERT_BASE_EMBEDDING_PARAMS = 30522 * 768 + 512 * 768 + 2 * 768 + 2 * 768
BERT_BASE_LAYER_PARAMS = 4 * (768 * 768 + 768) + 2 * (768 * 3072) + 3072 + 768 + 2 * (2 * 768)

# Lab dataset names (lower-case, letters and digits only) -> the dataset column as printed in the paper.
DATASET_ALIASES: dict[str, str] = {
    "stsb": "STS-B",
    "stsbenchmark": "STS-B",
    "sts12": "STS12",
    "sts13": "STS13",
    "sts14": "STS14",
    "sts15": "STS15",
    "sts16": "STS16",
    "sickr": "SICK-R",
    "sick": "SICK-R",
    "msmarco": "MARCO dev",
    "msmarcodev": "MARCO dev",
    "dl19": "DL19",
    "trecdl2019": "DL19",
    "dl20": "DL20",
    "trecdl2020": "DL20",
    "dbpediaentity": "Db.-Ent.",
    "dbpedia": "Db.-Ent.",
    "quora": "Quora",
    "scidocs": "Scidocs",
    "scifact": "Scifact",
    "climatefever": "Cli.-Fever",
    "arguana": "Arguana",
    "touche2020": "Touche20",
    "webistouche2020": "Touche20",
    "fiqa": "Fiqa",
    "fiqa2018": "Fiqa",
    "treccovid": "Trec-Cvd",
    "nfcorpus": "Nfcorpus",
    "fever": "Fever",
    "hotpotqa": "Hpqa",
}
CSV_VERSION = 1  # first line of the CSV: "# starbucks-reference v1"


class ReferenceError(LabError):
    """The shipped reference file is missing or malformed, or a request names an unknown x or method."""


# ------------------------------------------------------------------------------------------- parsing


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _plain(text: str) -> str:
    return text.replace("**", "").strip()


def _number(cell: str, where: str) -> tuple[float, bool, bool]:
    """``'**0.8319***'`` -> (0.8319, significant, bold)."""
    bold = cell.startswith("**") and cell.endswith("**") and len(cell) > 4
    inner = cell[2:-2] if bold else cell
    significant = inner.endswith("*")
    try:
        return float(inner.rstrip("*")), significant, bold
    except ValueError:
        raise ReferenceError(f"{where}: {cell!r} is not a number") from None


def _metric_for(table: str, dataset: str) -> str:
    if table == "A2" or dataset in {"DL19", "DL20"}:
        return "ndcg_at_10"
    if dataset == "MARCO dev":
        return "mrr_at_10"
    return "cosine_spearman"  # the STS columns and their Average


def parse_tables_markdown(text: str) -> pd.DataFrame:
    """Tidy rows (columns :data:`COLUMNS`) of the two tables in the reference markdown."""
    rows: list[dict[str, object]] = []
    table = ""
    datasets: list[str] = []
    domains: dict[str, str] = {}
    size, layers, dim = "", 0, 0
    for number, line in enumerate(text.splitlines(), start=1):
        heading = re.match(r"#+\s*\(Table (A\d)\)", line)
        if heading:
            table, datasets, domains = heading.group(1), [], {}
            continue
        if not table or not line.lstrip().startswith("|"):
            continue
        cells = _cells(line)
        if cells[:3] == ["Size", "Parameters", "Method"]:
            datasets = [_plain(c) for c in cells[3:]]
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the header separator
        if _plain(cells[2]) == "Domain":
            domains = {d: _plain(c) for d, c in zip(datasets, cells[3:], strict=True) if _plain(c)}
            continue
        where = f"starbucks-tables.md, line {number}"
        if cells[0]:
            size = _plain(cells[0])
            shape = re.fullmatch(r"\(n=(\d+), d=(\d+)\)", cells[1])
            if size not in SIZES or not shape:
                raise ReferenceError(f"{where}: unknown size {cells[0]!r} {cells[1]!r}")
            layers, dim = int(shape.group(1)), int(shape.group(2))
        method = _plain(cells[2])
        if method not in METHOD_KEYS or not size:
            raise ReferenceError(f"{where}: unknown method {cells[2]!r} (or no size before it)")
        if len(cells) - 3 != len(datasets):
            raise ReferenceError(f"{where}: {len(cells) - 3} values for {len(datasets)} dataset columns")
        for dataset, cell in zip(datasets, cells[3:], strict=True):
            value, significant, bold = _number(cell, where)
            rows.append(
                {
                    "table": table,
                    "size": size,
                    "layers": layers,
                    "dim": dim,
                    "method": method,
                    "method_key": METHOD_KEYS[method],
                    "dataset": dataset,
                    "domain": domains.get(dataset, ""),
                    "metric": _metric_for(table, dataset),
                    "value": value,
                    "significant_vs_starbucks": significant,
                    "best_in_size": bold,
                    "is_average": dataset in AVERAGE_COLUMNS,
                }
            )
    if not rows:
        raise ReferenceError("starbucks-tables.md: no table rows found")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_csv(frame: pd.DataFrame, path: Path = CSV_PATH) -> None:
    """Write the tidy table with its version line (used once to build the shipped file)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(f"# starbucks-reference v{CSV_VERSION}; {CITATION}\n")
        frame.to_csv(fh, index=False, lineterminator="\n")


# ------------------------------------------------------------------------------------------- loading


@functools.cache
def _load(path: str) -> pd.DataFrame:
    file = Path(path)
    try:
        first = file.open(encoding="utf-8").readline()
    except OSError as exc:
        raise ReferenceError(f"{file}: cannot read the reference table ({exc})") from None
    if not first.startswith(f"# starbucks-reference v{CSV_VERSION};"):
        raise ReferenceError(f"{file}, line 1: expected '# starbucks-reference v{CSV_VERSION}; ...'")
    frame = pd.read_csv(file, skiprows=1, keep_default_na=False, dtype={"domain": str})
    if tuple(frame.columns) != COLUMNS:
        raise ReferenceError(f"{file}: columns {list(frame.columns)} are not {list(COLUMNS)}")
    return frame


def load_reference(path: Path | None = None) -> pd.DataFrame:
    """The shipped tidy table (a copy; columns :data:`COLUMNS`)."""
    return _load(str(path or CSV_PATH)).copy()


def paper_sizes() -> pd.DataFrame:
    """The six sizes: ``size``, ``layers``, ``dim``, ``params`` (BERT-base encoder parameters, computed)."""
    sizes = load_reference()[["size", "layers", "dim"]].drop_duplicates().reset_index(drop=True)
    sizes["params"] = BERT_BASE_EMBEDDING_PARAMS + sizes["layers"] * BERT_BASE_LAYER_PARAMS
    return sizes


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_dataset(name: str) -> str | None:
    """The paper's dataset column for a lab dataset name (``stsb-test`` -> ``STS-B``), or None.

    >>> paper_dataset("stsb-test"), paper_dataset("sickr-test"), paper_dataset("stsb-dev"), paper_dataset("cranfield")
    ('STS-B', 'SICK-R', None, None)
    """
    key = _key(name)
    if key in DATASET_ALIASES:
        return DATASET_ALIASES[key]
    if key.endswith(("dev", "train", "validation")):
        return None  # the paper reports test sets (MS MARCO dev is the named exception above)
    key = key.removesuffix("test")
    printed = {_key(d): d for d in load_reference()["dataset"].unique()}
    return DATASET_ALIASES.get(key) or printed.get(key)


def reference_rows(dataset: str, metric: str) -> pd.DataFrame:
    """Published rows for a lab dataset name and metric key (empty when the paper has none)."""
    paper = paper_dataset(dataset)
    table = load_reference()
    if paper is None:
        return table.iloc[0:0]
    return table[(table["dataset"] == paper) & (table["metric"] == metric)].reset_index(drop=True)


def _methods(methods: tuple[str, ...] | list[str] | None) -> list[str]:
    chosen = list(methods) if methods else list(METHOD_LABELS)
    unknown = [m for m in chosen if m not in METHOD_LABELS]
    if unknown:
        raise ReferenceError(f"unknown paper method {unknown[0]!r}; choose from {', '.join(METHOD_LABELS)}")
    return chosen


def size_labels() -> list[str]:
    """The paper's sizes as labels, small to full: ``Demi (2, 32)`` ... ``Trenta (12, 768)``."""
    return [f"{s} ({n}, {d})" for s, n, d in paper_sizes()[["size", "layers", "dim"]].itertuples(index=False)]


def reference_columns(
    dataset: str,
    metric: str,
    methods: tuple[str, ...] | list[str] | None = None,
    labels: list[str] | None = None,
) -> pd.DataFrame:
    """Published per-size values as extra columns for a per-size table, plus their ``mean`` row.

    One column ``paper: <method>`` per method key asked for (default all five); rows are ``labels``
    (six row labels of a lab checkpoint's diagonal, small to full; default :func:`size_labels`) lined up
    with the paper's six sizes by position, then ``mean`` (the mean over the six sizes). Empty when the
    paper has no such dataset/metric or ``labels`` does not have six entries.

    >>> reference_columns("stsb-test", "cosine_spearman", ["starbucks"]).round(4).iloc[[0, -1], 0].tolist()
    [0.7455, 0.8072]
    """
    rows = reference_rows(dataset, metric)
    chosen = _methods(methods)
    index = list(labels) if labels is not None else size_labels()
    if rows.empty or len(index) != len(SIZES):
        return pd.DataFrame()
    out = pd.DataFrame(index=pd.Index(index, name="size"), dtype="float64")
    for key in chosen:
        per_size = rows[rows["method_key"] == key].set_index("size")["value"].reindex(list(SIZES))
        out[f"paper: {METHOD_LABELS[key]}"] = per_size.to_numpy(dtype="float64")
    out.loc["mean"] = out.mean()
    return out


def significance_marks(
    dataset: str, metric: str, methods: tuple[str, ...] | list[str] | None = None
) -> pd.DataFrame:
    """The paper's ``*`` (significantly different from Starbucks, p < 0.05) per size and method, as booleans.

    Same shape as :func:`reference_columns` without the mean row (index: :func:`size_labels`).
    """
    rows = reference_rows(dataset, metric)
    if rows.empty:
        return pd.DataFrame()
    out = pd.DataFrame(index=pd.Index(size_labels(), name="size"))
    for key in _methods(methods):
        marks = rows[rows["method_key"] == key].set_index("size")["significant_vs_starbucks"]
        out[f"paper: {METHOD_LABELS[key]}"] = marks.reindex(list(SIZES)).fillna(False).astype(bool).to_numpy()
    return out


X_KINDS: tuple[str, ...] = ("layers", "dim", "bytes_per_vector", "params")


def overlay_points(
    dataset: str, metric: str, x: str = "dim", methods: tuple[str, ...] | list[str] | None = None
) -> pd.DataFrame:
    """Published points for a Curves overlay: ``method``, ``size``, ``layers``, ``dim``, ``x``, ``value``.

    ``x`` is ``layers``, ``dim``, ``bytes_per_vector`` (float32: 4 * dim) or ``params`` (BERT-base encoder
    parameters at that depth, computed). Empty when the paper has no such dataset/metric.
    """
    if x not in X_KINDS:
        raise ReferenceError(f"unknown x {x!r} for the paper overlay; choose from {', '.join(X_KINDS)}")
    chosen = _methods(methods)
    rows = reference_rows(dataset, metric)
    rows = rows[rows["method_key"].isin(chosen)]
    if rows.empty:
        return pd.DataFrame(columns=["method", "method_key", "size", "layers", "dim", "x", "value"])
    sizes = paper_sizes().set_index("size")
    xs = {
        "layers": rows["layers"],
        "dim": rows["dim"],
        "bytes_per_vector": rows["dim"] * 4,
        "params": rows["size"].map(sizes["params"]),
    }[x]
    out = rows[["method", "method_key", "size", "layers", "dim"]].copy()
    out["x"] = xs.to_numpy()
    out["value"] = rows["value"].to_numpy()
    order = {s: i for i, s in enumerate(SIZES)}
    return out.sort_values(
        ["method_key", "size"], key=lambda c: c.map(order) if c.name == "size" else c
    ).reset_index(drop=True)


def main() -> None:  # pragma: no cover - run once to rebuild the shipped CSV from the shipped markdown
    """Rebuild ``starbucks_tables.csv`` from ``starbucks-tables.md`` (``python -m core.reference``)."""
    frame = parse_tables_markdown(MARKDOWN_PATH.read_text(encoding="utf-8"))
    write_csv(frame)
    print(f"wrote {len(frame)} rows to {CSV_PATH}")


if __name__ == "__main__":  # pragma: no cover
    main()
