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
