"""Small helpers for the HTML views' requests."""

from __future__ import annotations


def posted_id(value: object) -> int:
    """A posted id as an integer; anything else (text, too many digits) matches no row, so it is
    the 404 of an unknown id rather than a 500."""
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else 0
