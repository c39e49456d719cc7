"""``python -m core``'s printing: JSON rows are written a row at a time with exactly the bytes of one
``json.dump(rows, indent=1)`` (a whole results repository is 2 million rows: one document in memory, encoded
by the pure-Python indenting encoder, took minutes), CSV leaves missing values empty."""

from __future__ import annotations

import json

import pytest

from common.jsonsafe import json_ready
from core.cli.output import print_rows

CASES = [
    [],
    [{"a": 1}],
    [{"a": [1, {"b": None}], "text": 'two\nlines "quoted"', "nan": float("nan")}, {"a": []}],
    [{"é": "ü", "nested": {"deep": [1, 2.5]}, "n": None}],
]


@pytest.mark.parametrize("rows", CASES)
def test_json_rows_are_the_bytes_of_one_indented_dump(
    rows: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    print_rows(rows, "json")
    printed = capsys.readouterr().out
    assert printed == json.dumps(json_ready(rows), indent=1, allow_nan=False) + "\n"
    assert json.loads(printed) == json_ready(rows)


def test_csv_leaves_missing_values_empty(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows([{"model": "a/b", "dataset": None, "value": 0.5}], "csv")
    assert capsys.readouterr().out == "model,dataset,value\na/b,,0.5\n"
