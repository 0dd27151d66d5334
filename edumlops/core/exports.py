"""CSV files for people: cells a spreadsheet would run as a formula are neutralised.

OWASP's CSV-injection rule: a text cell whose first character is ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return (also after leading spaces, which spreadsheets skip) gets a leading
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of evaluating it.
Numbers are written as numbers: -3.5 stays -3.5, while the text "-1+1" becomes "'-1+1".

Every CSV the product writes for people goes through :func:`safe_row` (or :func:`csv_response`);
see docs/security.md, "Exports".
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet should see it: text that could start a formula is quoted."""
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    text = value if isinstance(value, str) else str(value)
    stripped = text.lstrip(" \n\x0b\x0c")  # tab and CR are themselves formula starts
    if stripped.startswith(FORMULA_STARTS) or text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header and rows as CSV lines, every cell passed through :func:`safe_cell`."""
    writer = csv.writer(_Echo())
    yield writer.writerow(safe_row(header))
    for row in rows:
        yield writer.writerow(safe_row(row))


def csv_response(
    header: Iterable[str], rows: Iterable[Iterable[Any]], filename: str
) -> StreamingHttpResponse:
    """A streamed, safe CSV download named ``filename``."""
    response = StreamingHttpResponse(
        csv_lines(header, rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
