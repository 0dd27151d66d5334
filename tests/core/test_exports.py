"""safe_cell: OWASP's CSV-injection rule, cell by cell, and a round trip through csv.reader."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from edumlops.core.exports import csv_lines, safe_cell


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://x","y")',
        "+1+1",
        "-1+1",
        "@SUM(1+1)",
        "\t=1+1",
        "\r=1+1",
        "   =1+1",
        " \n@SUM(A1)",
    ],
)
def test_text_that_could_start_a_formula_gets_an_apostrophe(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["", "Alder School", "a=b", "1-2", "x@example.org", "{}", "'=1"])
def test_other_text_is_unchanged(text):
    assert safe_cell(text) == text


@pytest.mark.parametrize("number", [-3.5, -7, 0, 12, Decimal("-0.25"), True])
def test_numbers_stay_numbers(number):
    assert safe_cell(number) is number


def test_none_stays_empty_and_other_objects_become_text():
    assert safe_cell(None) is None
    assert safe_cell(Decimal("-1")) == Decimal("-1")

    class Named:
        def __str__(self) -> str:
            return "=cmd"

    assert safe_cell(Named()) == "'=cmd"


def test_a_round_trip_through_csv_reader_keeps_every_cell_but_quotes_formulas():
    rows = [[1, -3.5, '=HYPERLINK("http://x","y")', "plain, with comma", "-1+1", 'say "hi"\nbye']]
    text = "".join(csv_lines(["id", "score", "name", "note", "expr", "multi"], rows))
    back = list(csv.reader(io.StringIO(text)))
    assert back[0] == ["id", "score", "name", "note", "expr", "multi"]
    assert back[1] == [
        "1",
        "-3.5",
        '\'=HYPERLINK("http://x","y")',
        "plain, with comma",
        "'-1+1",
        'say "hi"\nbye',
    ]


def test_header_cells_are_neutralised_too():
    text = "".join(csv_lines(["=evil"], []))
    assert next(csv.reader(io.StringIO(text))) == ["'=evil"]
