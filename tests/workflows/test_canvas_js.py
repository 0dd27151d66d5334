"""The canvas's modules (static/js/canvas/) have their own tests, in JavaScript under Node's test
runner: every tests/js/*.test.mjs. This runs them, with the real block catalog of
GET /api/blocks/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from workflows.blocks import catalog


def test_canvas_modules_under_node(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: run `make test` (it installs Debian's nodejs)")
    # named one by one: how Node reads a directory argument differs between versions
    files = sorted(str(path) for path in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert len(files) >= 7, files
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog()))
    result = subprocess.run(
        [node, "--test", *files],
        cwd=ROOT,
        env={**os.environ, "EDUMLOPS_CATALOG": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# skipped 0" in result.stdout


def test_every_block_icon_is_drawn_by_an_installed_font():
    """A block's icon is a character (static/js/canvas/text.mjs ICONS): one no installed font
    has is drawn as an empty box, as "Register / set alias" was (U+2317). fontconfig is what
    Chromium asks for its fallback fonts."""
    import re

    fc_list = shutil.which("fc-list")
    if fc_list is None:
        pytest.fail("fontconfig's fc-list is not installed (apt-get install fontconfig)")
    source = (ROOT / "static" / "js" / "canvas" / "text.mjs").read_text()
    table = source[source.index("const ICONS = {") : source.index("};", source.index("ICONS"))]
    icons = dict(re.findall(r'"?([\w-]+)"?: "(.)"', table))
    used = {block["icon"] for block in catalog()}
    assert used <= icons.keys(), f"blocks with no icon drawn: {sorted(used - icons.keys())}"
    missing = []
    for name in sorted(used):
        glyph = icons[name]
        fonts = subprocess.run(
            [fc_list, f":charset={ord(glyph):x}", "family"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not fonts:
            missing.append(f"{name} ({glyph} U+{ord(glyph):04X})")
    assert missing == [], f"icons no installed font draws: {missing}"
    set_alias = next(b for b in catalog() if b["kind"] == "set_alias")
    assert icons[set_alias["icon"]] != "\u2317"
