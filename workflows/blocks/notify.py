"""Notify: tell people in the app, and by email."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workflows.blocks.base import ANY, Block, Context, Params, Port, PortType, output


class NotifyParams(Params):
    recipients: Literal["district_staff", "admins", "teachers", "owner"] = Field(
        "district_staff",
        description="Who is told: the district's staff, its admins, its teachers, or the "
        "workflow's owner.",
    )
    title: str = Field("Workflow update", min_length=1, max_length=200, description="Headline.")
    message: str = Field(
        "", max_length=5000, description="The text. {workflow} and {run} are filled in."
    )
    email: bool = Field(False, description="Also send an email to those who have an address.")


class Notify(Block):
    kind = "notify"
    category = "notify"
    label = "Notify people"
    help = "Puts a notification in the app for the chosen people, and optionally emails them."
    icon = "bell"
    Params = NotifyParams
    inputs = (Port("input", ANY, "After", many=True),)
    outputs = (output("done", PortType.SIGNAL, "Done"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        sent = context.notify(
            recipients=params.recipients,
            title=params.title,
            message=params.message,
            email=params.email,
        )
        context.log(f"Notified {sent} people ({params.recipients})")
        context.metric("notified", sent)
        return {"done": {"notified": sent}}
