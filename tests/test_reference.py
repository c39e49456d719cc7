"""The shipped Starbucks reference table: parse equality, counts, spot values, and the app-facing views."""

from __future__ import annotations

import doctest
from pathlib import Path

import pandas as pd
import pytest

from core import reference


def _row(table: pd.DataFrame, size: str, method_key: str, dataset: str) -> pd.Series:
    hit = table[(table["size"] == size) & (table["method_key"] == method_key) & (table["dataset"] == dataset)]
    assert len(hit) == 1, (size, method_key, dataset)
    return hit.iloc[0]


def test_doctests() -> None:
    assert doctest.testmod(reference).failed == 0


def test_shipped_csv_equals_a_fresh_parse_of_the_shipped_markdown() -> None:
    parsed = reference.parse_tables_markdown(reference.MARKDOWN_PATH.read_text(encoding="utf-8"))
    shipped = reference.load_reference()
    pd.testing.assert_frame_equal(shipped, parsed, check_dtype=False)


def test_files_live_in_the_repository() -> None:
    repo = Path(__file__).resolve().parent.parent
    assert reference.CSV_PATH.is_file() and reference.CSV_PATH.is_relative_to(repo)
    assert reference.MARKDOWN_PATH.is_file()
    readme = (reference.REFERENCE_DIR / "README.md").read_text()
    assert "ielab/Starbucks" in readme and "2a3b24f" in readme and "A1" in readme and "A2" in readme
    assert reference.CSV_PATH.read_text().startswith("# starbucks-reference v1; Starbucks: Improved Training")


def test_row_counts() -> None:
    table = reference.load_reference()
    assert list(table.columns) == list(reference.COLUMNS)
    counts = table.groupby("table").size().to_dict()
    assert counts == {"A1": 6 * 5 * 11, "A2": 6 * 5 * 13}
    assert set(table["size"]) == set(reference.SIZES)
    assert set(table["method_key"]) == set(reference.METHOD_LABELS)
    assert not table["value"].isna().any()


@pytest.mark.parametrize(
    ("size", "method", "dataset", "value", "star", "bold", "metric"),
    [
        ("Demi", "starbucks", "STS-B", 0.7455, False, True, "cosine_spearman"),  # **0.7455**
        ("Demi", "bert", "STS-B", 0.5919, True, False, "cosine_spearman"),  # 0.5919*
        ("Trenta", "bert", "STS13", 0.8319, True, True, "cosine_spearman"),  # **0.8319***
        ("Venti", "srl", "Average", 0.7935, True, False, "cosine_spearman"),  # a starred average
        ("Tall", "starbucks", "MARCO dev", 0.3274, False, True, "mrr_at_10"),
        ("Demi", "srl", "DL20", 0.5294, False, True, "ndcg_at_10"),
        ("Venti", "starbucks", "Quora", 0.0178, False, False, "ndcg_at_10"),  # A2, as published
        ("Grande", "separate", "Fever", 0.6321, True, True, "ndcg_at_10"),
        ("Trenta", "starbucks", "Avg.", 0.3826, False, True, "ndcg_at_10"),
    ],
)
def test_spot_values_as_printed(
    size: str, method: str, dataset: str, value: float, star: bool, bold: bool, metric: str
) -> None:
    row = _row(reference.load_reference(), size, method, dataset)
    assert row["value"] == pytest.approx(value, abs=1e-9)
    assert bool(row["significant_vs_starbucks"]) is star
    assert bool(row["best_in_size"]) is bold
    assert row["metric"] == metric


def test_sizes_and_domains() -> None:
    table = reference.load_reference()
    demi = _row(table, "Demi", "bert", "Fiqa")
    assert (demi["layers"], demi["dim"], demi["domain"], demi["table"]) == (2, 32, "Finance", "A2")
    assert _row(table, "Trenta", "bert", "STS-B")[["layers", "dim"]].tolist() == [12, 768]
    sizes = reference.paper_sizes()
    assert sizes["size"].tolist() == list(reference.SIZES)
    # BERT-base encoder without pooler: 108,891,648 parameters at 12 layers
    assert sizes["params"].iloc[-1] == 108_891_648
    assert sizes["params"].diff().dropna().unique().tolist() == [2 * 7_087_872]


def test_every_published_average_is_the_mean_of_its_row() -> None:
    # a shifted column or a misread cell would break this (the paper rounds to 4 places)
    table = reference.load_reference()
    sts = table[(table["table"] == "A2") | (table["metric"] == "cosine_spearman")]
    for _, group in sts.groupby(["table", "size", "method"]):
        average = group[group["is_average"]]["value"]
        assert len(average) == 1
        assert group[~group["is_average"]]["value"].mean() == pytest.approx(average.iloc[0], abs=1e-4)


def test_means_over_sizes_match_the_paper_summary() -> None:
    # DESIGN.md: paper means over the six sizes, STS Spearman: separate 0.7644, 2DMSE 0.7338,
    # BERT+SRL 0.7682, Starbucks 0.7837 (the mean of the per-size STS Average column)
    table = reference.load_reference()
    averages = table[(table["dataset"] == "Average")].groupby("method_key")["value"].mean()
    expected = {"separate": 0.7644, "2dmse": 0.7338, "srl": 0.7682, "starbucks": 0.7837}
    for key, value in expected.items():
        assert averages[key] == pytest.approx(value, abs=1e-4)


def test_dataset_names_map_to_paper_columns() -> None:
    assert reference.paper_dataset("stsb-test") == "STS-B"
    assert reference.paper_dataset("stsb") == "STS-B"
    assert reference.paper_dataset("sickr-test") == "SICK-R"
    assert reference.paper_dataset("SciFact") == "Scifact"
    assert reference.paper_dataset("trec-covid") == "Trec-Cvd"
    assert reference.paper_dataset("cranfield") is None
    assert reference.paper_dataset("stsb-dev") is None  # the paper's STS-B column is the test set
    assert reference.paper_dataset("msmarco-dev") == "MARCO dev"
    assert reference.reference_rows("cranfield", "ndcg_at_10").empty
    assert reference.reference_rows("stsb-test", "ndcg_at_10").empty  # the paper has no such metric there
    assert len(reference.reference_rows("stsb-test", "cosine_spearman")) == 30


def test_reference_columns_for_the_per_size_table() -> None:
    labels = ["(1, 32)", "(2, 64)", "(3, 128)", "(4, 192)", "(5, 256)", "(6, 384)"]
    extra = reference.reference_columns("stsb-test", "cosine_spearman", ["starbucks", "2dmse"], labels)
    assert list(extra.index) == [*labels, "mean"]
    assert list(extra.columns) == ["paper: SMAE-SRL (Starbucks)", "paper: BERT-2DMSE"]
    assert extra.loc["(1, 32)", "paper: SMAE-SRL (Starbucks)"] == pytest.approx(0.7455)
    assert extra.loc["(6, 384)", "paper: BERT-2DMSE"] == pytest.approx(0.8196)
    assert extra.loc["mean", "paper: BERT-2DMSE"] == pytest.approx(
        (0.7197 + 0.7311 + 0.7501 + 0.7721 + 0.7850 + 0.8196) / 6
    )
    assert reference.reference_columns("stsb-test", "cosine_spearman", None, labels[:5]).empty
    assert reference.reference_columns("cranfield", "ndcg_at_10").empty
    marks = reference.significance_marks("stsb-test", "cosine_spearman", ["bert"])
    assert marks["paper: BERT"].tolist() == [True, True, True, True, True, False]
    with pytest.raises(reference.ReferenceError, match="unknown paper method"):
        reference.reference_columns("stsb-test", "cosine_spearman", ["matryoshka"])


@pytest.mark.parametrize(
    ("x", "first", "last"),
    [
        ("layers", 2, 12),
        ("dim", 32, 768),
        ("bytes_per_vector", 128, 3072),
        ("params", 38_012_928, 108_891_648),
    ],
)
def test_overlay_points(x: str, first: int, last: int) -> None:
    points = reference.overlay_points("stsb-test", "cosine_spearman", x, ["starbucks"])
    assert points["size"].tolist() == list(reference.SIZES)
    assert (points["x"].iloc[0], points["x"].iloc[-1]) == (first, last)
    assert points["value"].iloc[0] == pytest.approx(0.7455)
    assert points["method"].unique().tolist() == ["SMAE-SRL (Starbucks)"]


def test_overlay_errors_and_empty() -> None:
    assert reference.overlay_points("cranfield", "ndcg_at_10").empty
    assert len(reference.overlay_points("scifact", "ndcg_at_10")) == 30
    with pytest.raises(reference.ReferenceError, match="unknown x"):
        reference.overlay_points("stsb-test", "cosine_spearman", "latency")


def test_loader_refuses_a_file_without_its_version_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(reference.COLUMNS) + "\n")
    with pytest.raises(reference.ReferenceError, match="line 1"):
        reference.load_reference(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("# starbucks-reference v1; x\na,b\n1,2\n")
    with pytest.raises(reference.ReferenceError, match="columns"):
        reference.load_reference(wrong)
    with pytest.raises(reference.ReferenceError, match="cannot read"):
        reference.load_reference(tmp_path / "absent.csv")


def test_parser_names_the_bad_line() -> None:
    text = (
        "### (Table A1) x\n\n| Size | Parameters | Method | **STS-B** |\n|---|---|---|---|\n"
        "| **Demi** | (n=2, d=32) | BERT | zero |\n"
    )
    with pytest.raises(reference.ReferenceError, match="line 5"):
        reference.parse_tables_markdown(text)


def test_overlay_figure_adds_one_dashed_trace_per_method() -> None:
    import plotly.graph_objects as go

    from core import figures

    points = reference.overlay_points("stsb-test", "cosine_spearman", "dim", ["starbucks", "2dmse"])
    fig = figures.add_reference_overlay(go.Figure(), points)
    assert [t.name for t in fig.data] == ["paper: BERT-2DMSE", "paper: SMAE-SRL (Starbucks)"]
    starbucks = fig.data[1]
    assert list(starbucks.x) == [32, 64, 128, 256, 512, 768]
    assert list(starbucks.y) == pytest.approx([0.7455, 0.7933, 0.8202, 0.8278, 0.8292, 0.8274])
    assert starbucks.line.dash == "dash" and starbucks.customdata[0][0] == "Demi"
