"""Pages print words, never the status codes the checks store."""

from __future__ import annotations

from django.template import Context, Template

from edumlops.site.templatetags.words import words


def test_known_codes_become_words():
    assert words("insufficient_data") == "not enough data yet"
    assert words("no_drift") == "no drift"
    assert words("waiting_approval") == "waiting for approval"


def test_an_unknown_code_still_reads_as_words():
    assert words("rolled_back") == "rolled back"
    assert words(None) == ""


def test_the_filter_works_in_templates():
    rendered = Template("{% load words %}{{ s|words }}").render(Context({"s": "no_drift"}))
    assert rendered == "no drift"
