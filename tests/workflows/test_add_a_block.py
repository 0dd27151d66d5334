"""Adding a block is adding one class in one module: a module written into workflows/blocks/ at
test time (and no other file) is listed by /api/blocks/, shown in the canvas palette, compiled,
run by a real worker process and rendered on the run page and in the step's side panel."""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

import workflows.blocks as blocks
from tests.workflows.conftest import edge, node, wait_for
from workflows import engine
from workflows.compiler import plan, validate
from workflows.models import Run

BLOCK_SOURCE = '''
"""A block added by a test: it counts the words of a phrase."""

from typing import Any

from pydantic import Field

from workflows.blocks.base import ANY, Block, Context, Params, Port, PortType, output


class CountWordsParams(Params):
    phrase: str = Field("one two three", min_length=1, description="The words to count.")


class CountWords(Block):
    kind = "count_words_{tag}"
    category = "flow"
    label = "Count words {tag}"
    help = "Counts the words of a phrase (a block added by a test)."
    Params = CountWordsParams
    inputs = (Port("input", ANY, "After"),)
    outputs = (output("done", PortType.SIGNAL, "Counted"),)
    panel_template = "workflows/panels/{tag}.html"

    @classmethod
    def panel_context(cls, run: Any, step: Any) -> dict[str, Any]:
        return {{"words": (step.outputs.get("done") or {{}}).get("words")}}

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        words = len(params.phrase.split())
        context.log(f"counted {{words}} words")
        context.metric("words", words)
        return {{"done": {{"words": words}}}}
'''


@pytest.fixture
def added_block(settings, tmp_path):
    """Write the block's module (and its panel template, in a template folder of the test's own)
    and find it; remove both afterwards."""
    tag = uuid.uuid4().hex[:8]
    module = Path(blocks.__file__).parent / f"added_{tag}.py"
    module.write_text(textwrap.dedent(BLOCK_SOURCE.format(tag=tag)))
    panels = tmp_path / "templates" / "workflows" / "panels"
    panels.mkdir(parents=True)
    (panels / f"{tag}.html").write_text('<p data-testid="added-panel">{{ words }} words</p>')
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], tmp_path / "templates"]}
    ]
    blocks.discover()
    try:
        yield tag
    finally:
        module.unlink()
        shutil.rmtree(module.parent / "__pycache__", ignore_errors=True)
        sys.modules.pop(f"workflows.blocks.added_{tag}", None)
        importlib.invalidate_caches()
        blocks.discover()


def test_a_block_in_a_new_module_is_listed_compiled_run_and_rendered(
    added_block, worker, make_workflow, client, platform_admin
):
    kind = f"count_words_{added_block}"
    client.force_login(platform_admin)

    listed = client.get(reverse("api-blocks")).json()
    entries = listed if isinstance(listed, list) else listed.get("blocks", listed)
    mine = next(b for b in entries if b["kind"] == kind)
    assert mine["label"] == f"Count words {added_block}"
    assert mine["params_schema"]["properties"]["phrase"]["default"] == "one two three"

    graph = {
        "nodes": [node("go", "manual_trigger"), node("count", kind, phrase="a b c d")],
        "edges": [edge("go", "start", "count")],
    }
    assert validate(graph) == []
    assert plan(graph).order == ["go", "count"]
    bad = {**graph, "nodes": [graph["nodes"][0], node("count", kind, phrase="")]}
    assert any("phrase" in e.message for e in validate(bad))

    workflow = make_workflow(graph, name="Count")
    canvas = client.get(reverse("workflow-edit", args=[workflow.pk])).content.decode()
    assert kind in canvas  # the palette's catalog

    run = engine.start_run(workflow, user=platform_admin)
    wait_for(lambda: Run.objects.get(pk=run.pk).finished, what="the run to end")
    run.refresh_from_db()
    assert run.status == "succeeded", run.reason
    step = run.steps.get(node_id="count")
    assert step.outputs["done"] == {"words": 4}
    assert step.metrics == {"words": 4}

    page = client.get(reverse("run", args=[run.pk])).content.decode()
    assert f"Count words {added_block}" in page
    panel = client.get(reverse("run-step", args=[run.pk, "count"])).content.decode()
    assert "counted 4 words" in panel
    assert '<p data-testid="added-panel">4 words</p>' in panel
