"""A template whose steps include blocks that do not exist, defined here for the tests of the
gallery's draft behaviour (every template shipped in workflows/templates/ can run). It is written
to a temporary folder and read by the gallery's own loader, then listed in TEMPLATES for the
length of a test, so the API, the page and the form treat it like a shipped one."""

from __future__ import annotations

import json
from pathlib import Path

from workflows import gallery

KEY = "essay-feedback-draft"
TITLE = "Essay feedback with a teacher-review threshold"
MISSING_KINDS = ["train_essay_feedback", "human_review_threshold"]


def _node(id: str, kind: str, label: str, x: int, y: int, **params) -> dict:
    return {
        "id": id,
        "kind": kind,
        "version": 1,
        "label": label,
        "params": params,
        "position": {"x": x, "y": y},
    }


def _edge(source: str, source_port: str, target: str, target_port: str) -> dict:
    return {
        "source": source,
        "source_port": source_port,
        "target": target,
        "target_port": target_port,
    }


DATA = {
    "$schema": "../template.schema.json",
    "title": TITLE,
    "gallery_order": 99,
    "summary": "Learn to write feedback on essays from feedback teachers wrote, check it, and "
    "send the essays it is unsure about to a teacher.",
    "why": "A test template: two of its steps need blocks that do not exist.",
    "source": {
        "title": "AI deep learning for education: design, platforms and governance",
        "section": "Step 4: Instrument observability and human-in-the-loop",
        "seed": "002_269665d1f38c084b.txt",
    },
    "choices": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "dataset_version": {
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "title": "Dataset version",
                "description": "Essays with the teachers' feedback marked as the label.",
                "widget": "dataset_version",
                "needs": ["label"],
                "to_run": True,
                "targets": ["nodes[data].params.dataset_version"],
            }
        },
    },
    "graph": {
        "nodes": [
            _node("start", "manual_trigger", "Start by hand", 40, 170),
            _node("data", "dataset", "Essays with feedback", 260, 170),
            _node("split", "split", "Hold out test essays", 480, 170, test_share=0.25),
            _node("validate", "validate_model", "Agrees with teachers?", 920, 170),
            _node("review", "approval_gate", "Teachers check a sample", 260, 380),
            _node("tell", "notify", "Tell the teachers", 700, 380, recipients="teachers"),
        ],
        "edges": [
            _edge("start", "start", "data", "start"),
            _edge("data", "dataset", "split", "dataset"),
            _edge("validate", "model", "review", "input"),
            _edge("review", "approved", "tell", "input"),
        ],
        "notes": [
            {
                "id": "n1",
                "text": "1. Essays teachers gave feedback on.",
                "position": {"x": 260, "y": 23},
            }
        ],
    },
    "missing": [
        {
            "id": "feedback",
            "kind": MISSING_KINDS[0],
            "label": "Train an essay-feedback model",
            "what_it_would_do": "It would learn to write feedback on essays from the feedback "
            "teachers wrote on past essays, and register it as a model version Validate checks.",
            "after": "split",
            "position": {"x": 700, "y": 170},
            "feeds": [{"target": "validate", "source_port": "model", "target_port": "model"}],
        },
        {
            "id": "human_review",
            "kind": MISSING_KINDS[1],
            "label": "Send unsure feedback to a teacher",
            "what_it_would_do": "It would write feedback on each new essay and, when the model "
            "is unsure, put the essay in the teacher's review queue instead of sending it.",
            "after": "review",
            "position": {"x": 480, "y": 380},
            "inlets": [{"source": "review", "source_port": "approved", "target_port": "input"}],
        },
    ],
}


def install(folder: Path, monkeypatch) -> gallery.Template:  # noqa: ANN001
    """Write the template to `folder`, load it with the gallery's loader and list it in
    TEMPLATES until the test ends."""
    (folder / f"{KEY}.json").write_text(json.dumps(DATA, indent=2))
    monkeypatch.setattr(gallery, "TEMPLATE_DIR", folder)
    template = gallery.load(KEY)
    monkeypatch.setitem(gallery.TEMPLATES, KEY, template)
    return template
