"""The one rule for a registered model's name: lower-case letters, digits and hyphens, starting
with a letter or digit, at most 61 characters. MLflow, the registry, the blocks, the templates and
the Train page all take it from here."""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,60}$"
# the same rule for an HTML `pattern` attribute, which is anchored by the browser
MODEL_NAME_HTML_PATTERN = MODEL_NAME_PATTERN[1:-1]
MODEL_NAME_HELP = "lower-case letters, digits and hyphens, starting with a letter or digit"

_RE = re.compile(MODEL_NAME_PATTERN)


def is_model_name(value: str) -> bool:
    return bool(_RE.match(value or ""))
