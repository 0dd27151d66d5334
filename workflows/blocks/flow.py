"""Flow: shape the run itself."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from workflows.blocks.base import ANY, Block, Context, Params, Port, PortType, output


class WaitParams(Params):
    seconds: float = Field(
        5, ge=0, le=300, description="How long to wait.", json_schema_extra={"unit": "seconds"}
    )


class Wait(Block):
    kind = "wait"
    category = "flow"
    label = "Wait a moment"
    help = "Waits a short time (up to 5 minutes) before the next blocks run."
    icon = "hourglass"
    Params = WaitParams
    inputs = (Port("input", ANY, "After", many=True),)
    outputs = (output("done", PortType.SIGNAL, "Done"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        time.sleep(params.seconds)
        context.log(f"Waited {params.seconds:g} s")
        return {"done": {"waited": params.seconds}}
