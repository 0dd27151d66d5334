"""What every block is: catalog metadata, typed ports, a typed parameter model, and execute().

A block never touches Celery or the run's bookkeeping: it gets a Context (to log, record metrics
and reach the run), its inputs as references, and its validated parameters, and returns its
outputs as references (ids, URIs, small JSON) — never pickles.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict


class PortType(StrEnum):
    """The closed set of things that travel along edges."""

    TRIGGER = "trigger"  # the start of a run
    SIGNAL = "signal"  # "this step is done", with its metrics
    DATASET = "dataset"  # a dataset version id
    MODEL = "model"  # an MLflow model URI / model version id
    REPORT = "report"  # a report id, with its metrics
    DEPLOYMENT = "deployment"  # a deployment id


@dataclass(frozen=True)
class Port:
    name: str
    accepts: tuple[PortType, ...]  # an output port has exactly one type
    label: str = ""
    required: bool = True
    many: bool = False  # an input that takes several edges (a join)

    @property
    def type(self) -> PortType:
        return self.accepts[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "types": [t.value for t in self.accepts],
            "label": self.label or self.name,
            "required": self.required,
            "many": self.many,
        }


def output(name: str, type_: PortType, label: str = "") -> Port:
    return Port(name=name, accepts=(type_,), label=label)


ANY = tuple(PortType)


class Params(BaseModel):
    """Base of every block's parameter model: strict, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoParams(Params):
    pass


class Context(Protocol):
    """What a block may ask of the run it is part of (implemented in workflows.tasks)."""

    run_id: int
    node_id: str

    def log(self, message: str) -> None: ...

    def metric(self, name: str, value: float) -> None: ...

    def upstream_metrics(self) -> dict[str, float]: ...

    def progress(self, stage: str, fraction: float) -> None: ...

    def approvals(self) -> list[str]: ...

    @property
    def run(self) -> Any: ...

    # What this step remembers between checks of a wait (WaitFor): read and change it freely.
    state: dict[str, Any]
    # The proposal this step asked district staff to approve (None before it asked).
    proposal: dict[str, Any] | None


class StepStopped(Exception):
    """A gate decided the run stops here: everything downstream is blocked with this reason."""


class WaitForApproval(Exception):
    """The step pauses the run until enough approvers approve (or one rejects).

    `proposal` is what exactly is being asked (a "summary" line for people, and the ids the
    block will apply); the engine stores it on the step the first time, approvers see it, and
    after approval the block applies the stored proposal (Context.proposal), never a new one."""

    def __init__(self, message: str, proposal: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.proposal = proposal


class WaitFor(Exception):
    """The step waits on the world (edge servers, a pilot's minimum days, a time): it releases
    its worker and is executed again after `check_after` seconds, with its Context.state kept.
    `reason` is shown while it waits; the block enforces its own timeout on a later check."""

    def __init__(self, reason: str, check_after: float) -> None:
        super().__init__(reason)
        self.check_after = max(0.0, float(check_after))


def ask_approval(
    context: Context,
    proposal: dict[str, Any],
    *,
    message: str = "",
    quorum: int = 1,
    required: bool = True,
) -> dict[str, Any]:
    """The proposal to apply: the one district staff approved (stored on the step when it was
    asked), or `proposal` itself when approval is not required. Waits otherwise.

    Call it with `context.proposal or <new proposal>`, so that nothing is recomputed after
    the approval. `message` defaults to the proposal's summary."""
    message = message or proposal["summary"]
    if not required:
        owner = context.run.workflow.owner
        context.log(
            f"No approval was required for {message}: the workflow's owner"
            f"{f' ({owner})' if owner else ''} turned it off."
        )
        return proposal
    approvers = context.approvals()
    if context.proposal is not None and len(approvers) >= quorum:
        context.log(f"{message} approved by {', '.join(approvers)}")
        return context.proposal
    more = quorum - len(approvers)
    raise WaitForApproval(
        f"{message} waits for {more} more approval(s) from district staff", proposal=proposal
    )


class BlockError(Exception):
    """A block failed in a way the user can fix: the step fails with this message."""


@dataclass
class Outputs:
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Firing:
    """A trigger due to fire: `key` makes it fire once (e.g. "term-12"), `conf` is the run's."""

    key: str
    conf: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerScan:
    """What a trigger sees when the scanner asks whether it is due."""

    workflow: Any  # workflows.models.Workflow
    node_id: str
    now: dt.datetime  # aware
    since: dt.datetime  # aware: the scan covers (since, now]
    saved_at: dt.datetime  # when the version that holds the trigger was saved


class Block:
    kind: ClassVar[str]
    version: ClassVar[int] = 1
    category: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]
    icon: ClassVar[str] = "square"
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()
    Params: ClassVar[type[Params]] = NoParams
    is_trigger: ClassVar[bool] = False
    # -- triggers declare how they fire (workflows/triggers.py asks them) --
    starts_by_hand: ClassVar[bool] = False  # the Run button and POST /runs/ start it
    listens_to: ClassVar[str | None] = None  # an event name, e.g. "alert"
    # -- blocks that work on the school an alert is about (run.conf "school"): a run of an
    # alert trigger fired by hand asks for a school when one of these is downstream --
    needs_school: ClassVar[bool] = False
    # -- what the step's side panel shows besides state, logs and metrics --
    panel_template: ClassVar[str | None] = None  # included with the context of panel_context()

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def fired_by_hand(cls, context: Context) -> bool:
        """A trigger that waits for the world, fired now by a person (the Run button or the
        API): logs it, so the run says so."""
        run = context.run
        if cls.starts_by_hand or run.started_by is None:
            return False
        context.log(
            f"Fired by hand by {run.started_by_label}: started now, not by "
            f"{cls.label[0].lower()}{cls.label[1:]}."
        )
        return True

    # --- triggers --------------------------------------------------------------------------
    @classmethod
    def due(cls, params: Params, scan: TriggerScan) -> list[Firing]:
        """The firings of a time- or calendar-based trigger in the scan's window."""
        return []

    @classmethod
    def matches(cls, params: Params, event: dict[str, Any]) -> Firing | None:
        """The firing for an event this trigger `listens_to`, or None when it does not match."""
        return None

    # --- side panel --------------------------------------------------------------------------
    @classmethod
    def panel_context(cls, run: Any, step: Any) -> dict[str, Any]:
        """Extra context for `panel_template` (the run and the StepRun are given)."""
        return {}

    # --- catalog -------------------------------------------------------------------------
    @classmethod
    def key(cls) -> tuple[str, int]:
        return cls.kind, cls.version

    @classmethod
    def input_port(cls, name: str) -> Port | None:
        return next((p for p in cls.inputs if p.name == name), None)

    @classmethod
    def output_port(cls, name: str) -> Port | None:
        return next((p for p in cls.outputs if p.name == name), None)

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        return cls.Params.model_json_schema()

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "kind": cls.kind,
            "version": cls.version,
            "category": cls.category,
            "label": cls.label,
            "help": cls.help,
            "icon": cls.icon,
            "trigger": cls.is_trigger,
            "by_hand": cls.starts_by_hand,
            "needs_school": cls.needs_school,
            "inputs": [p.as_dict() for p in cls.inputs],
            "outputs": [p.as_dict() for p in cls.outputs],
            "params_schema": cls.params_schema(),
        }
