"""The template gallery: ready-made workflows drawn from the domain articles (shared seeds), each
a plain-language card, a few choices the person makes, and a graph built from the real blocks.

A template declares its steps as data. A step whose block does not exist yet is a MissingBlock:
it is shown on the card with what it would do, left out of the graph (its edges too, so the
graph has an honest hole the compiler reports), and the workflow made from it is saved as a
draft that cannot run. Nothing is faked with a block that does something else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from workflows.blocks import REGISTRY
from workflows.compiler import GraphError, validate
from workflows.models import Workflow, WorkflowVersion

# canvas layout: a grid of columns and rows, in pixels
COLUMN, ROW, LEFT, TOP = 220, 210, 40, 170

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,60}$"


# --- what a template is made of ---------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """The seed article a template comes from (../shared/seeds/)."""

    title: str
    section: str
    seed: str  # file name in the shared seeds folder

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "section": self.section, "seed": self.seed}


@dataclass(frozen=True)
class Step:
    """One node of the template's graph: `inlets` are (source id, source port, target port)."""

    id: str
    kind: str
    label: str
    at: tuple[float, float]  # (column, row) on the canvas grid
    inlets: tuple[tuple[str, str, str], ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def block_label(self) -> str:
        return REGISTRY[(self.kind, 1)].label


@dataclass(frozen=True)
class MissingBlock:
    """A step the template needs whose block does not exist yet."""

    kind: str
    label: str
    what_it_would_do: str
    id: str = ""
    at: tuple[float, float] = (0, 0)
    inlets: tuple[tuple[str, str, str], ...] = ()  # what it would be fed (not in the graph)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "label": self.label, "what_it_would_do": self.what_it_would_do}

    def error(self) -> dict[str, Any]:
        return GraphError(
            f'Missing block "{self.label}" ({self.kind}): it does not exist yet, so this '
            f"workflow cannot run. {self.what_it_would_do}",
            "missing_block",
        ).as_dict()


@dataclass(frozen=True)
class Note:
    text: str
    at: tuple[float, float]


class Choices(BaseModel):
    """What a person decides when using a template. A field marked `to_run` may be left empty:
    the workflow is then saved as a draft whose errors say what to fill in on the canvas."""

    model_config = ConfigDict(extra="forbid")


def _dataset_field(needs: list[str], description: str) -> Any:
    return Field(
        None,
        ge=1,
        title="Dataset version",
        description=description,
        json_schema_extra={"widget": "dataset_version", "needs": needs, "to_run": True},
    )


def _model_name_field() -> Any:
    return Field(
        "at-risk",
        pattern=MODEL_NAME_PATTERN,
        title="Model name",
        description="Its name in the registry: lowercase letters, digits and dashes.",
        json_schema_extra={"widget": "text"},
    )


class EarlyWarningChoices(Choices):
    dataset_version: int | None = _dataset_field(
        ["label", "sensitive"],
        "Past students with the outcome to learn (the label, e.g. at_risk) and the sensitive "
        "attributes (e.g. SES, home language) marked on the dataset's page.",
    )
    pilot_schools: list[str] = Field(
        default=[],
        title="Pilot schools",
        description="Leave empty for a sample of three schools that covers small and large, "
        "urban and rural schools.",
        json_schema_extra={"widget": "schools"},
    )
    model_name: str = _model_name_field()
    max_gap: float = Field(
        0.1,
        gt=0,
        le=1,
        title="Largest allowed gap between groups",
        description="The bias gate stops the run when the share of at-risk students the model "
        "misses differs more than this between groups (0.1 = 10 points).",
        json_schema_extra={"widget": "number", "step": 0.01},
    )


class RetrainChoices(Choices):
    dataset_version: int | None = _dataset_field(
        ["label", "sensitive"],
        "The students to retrain on, with the label and sensitive attributes marked.",
    )
    model_name: str = _model_name_field()
    days_after_start: int = Field(
        14,
        ge=0,
        le=60,
        title="Days after the term starts",
        description="Wait this long into each term so the new cohort has predictions to "
        "compare with last year's same weeks.",
        json_schema_extra={"widget": "integer"},
    )


class ScoringChoices(Choices):
    dataset_version: int | None = _dataset_field(
        ["label"], "Answers teachers have already scored, with the score marked as the label."
    )


class ForecastChoices(Choices):
    dataset_version: int | None = _dataset_field(
        [], "Enrolment per school, grade and term from past registration cycles."
    )


class WatchChoices(Choices):
    dataset_version: int | None = _dataset_field(
        ["label", "school"],
        "Real outcomes (e.g. end-of-term results) with the label and the school column "
        "marked, for the performance monitor.",
    )


ParamsFor = Callable[[Any], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    summary: str
    source: Source
    why: str
    choices: type[Choices]
    steps: tuple[Step | MissingBlock, ...]
    params: ParamsFor  # per node id, the parameters that come from the person's choices
    notes: tuple[Note, ...] = ()

    @property
    def missing(self) -> list[MissingBlock]:
        return [s for s in self.steps if isinstance(s, MissingBlock)]

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def starts(self) -> str:
        """How a run of it starts, in words."""
        trigger = next(s for s in self.steps if isinstance(s, Step) and s.kind.endswith("trigger"))
        if trigger.kind == "manual_trigger":
            return "when you press Run"
        return f"by itself ({trigger.label[0].lower()}{trigger.label[1:]})"

    def blocks(self) -> list[dict[str, str]]:
        """The existing blocks it uses, each once, in step order."""
        seen: dict[str, str] = {}
        for step in self.steps:
            if isinstance(step, Step) and step.kind not in seen:
                seen[step.kind] = step.block_label()
        return [{"kind": k, "label": v} for k, v in seen.items()]

    def preview(self) -> list[dict[str, Any]]:
        """The steps in order, for the card: a missing one says what it would do."""
        steps = []
        for s in self.steps:
            item: dict[str, Any] = {"id": s.id, "kind": s.kind, "label": s.label}
            if isinstance(s, MissingBlock):
                item |= {"block": s.label, "missing": True, "what_it_would_do": s.what_it_would_do}
            else:
                item |= {"block": s.block_label(), "missing": False}
            steps.append(item)
        return steps

    def parse(self, data: dict[str, Any]) -> Choices:
        """The person's choices, typed; ChoiceError names the field and the fix."""
        try:
            return self.choices.model_validate(data)
        except PydanticError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "choices"
            if err["type"] == "extra_forbidden":
                known = ", ".join(self.choices.model_fields)
                raise ChoiceError(
                    name, f"This template has no choice '{name}' (its choices: {known})."
                ) from None
            spec = self.choices.model_fields.get(name)
            label, fix = (spec.title, f" {spec.description}") if spec else (name, "")
            raise ChoiceError(name, f"{label}: {err['msg']}.{fix}") from None

    def build(self, choices: Choices | None = None) -> dict[str, Any]:
        """The graph: the existing steps with the chosen parameters, edges between existing
        steps, and the sticky notes. A missing step leaves a hole (no node, no edges)."""
        choices = choices or self.choices()
        chosen = self.params(choices)
        present = {s.id for s in self.steps if isinstance(s, Step)}
        nodes, edges = [], []
        for step in self.steps:
            if not isinstance(step, Step):
                continue
            nodes.append(
                {
                    "id": step.id,
                    "kind": step.kind,
                    "version": 1,
                    "label": step.label,
                    "params": {**step.params, **chosen.get(step.id, {})},
                    "position": _at(step.at),
                }
            )
            edges += [
                {"source": src, "source_port": port, "target": step.id, "target_port": target}
                for src, port, target in step.inlets
                if src in present
            ]
        notes = [
            {"id": f"n{i}", "text": note.text, "position": _at(note.at)}
            for i, note in enumerate(self.notes, start=1)
        ]
        for i, gap in enumerate(self.missing, start=len(notes) + 1):
            notes.append(
                {
                    "id": f"n{i}",
                    "text": f"MISSING BLOCK — {gap.label}: {gap.what_it_would_do} It does not "
                    "exist yet, so this workflow stays a draft that cannot run.",
                    "position": _at(gap.at),
                }
            )
        return {"nodes": nodes, "edges": edges, "notes": notes}

    def choice_fields(self) -> list[dict[str, Any]]:
        """The choices as form fields: name, label, help, widget, default, limits."""
        schema = self.choices.model_json_schema()
        fields = []
        for name, prop in schema.get("properties", {}).items():
            number = next((p for p in prop.get("anyOf", [prop]) if "type" in p), prop)
            fields.append(
                {
                    "name": name,
                    "label": prop.get("title", name),
                    "help": prop.get("description", ""),
                    "widget": prop.get("widget", "text"),
                    "default": prop.get("default"),
                    "to_run": bool(prop.get("to_run")),
                    "needs": prop.get("needs", []),
                    "min": number.get("minimum", number.get("exclusiveMinimum")),
                    "max": number.get("maximum"),
                    "step": prop.get("step"),
                    "pattern": number.get("pattern"),
                }
            )
        return fields

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "summary": self.summary,
            "source": self.source.as_dict(),
            "why": self.why,
            "available": self.available,
            "starts": self.starts,
            "blocks": self.blocks(),
            "steps": self.preview(),
            "missing": [m.as_dict() for m in self.missing],
            "choices": self.choice_fields(),
        }


def _at(at: tuple[float, float]) -> dict[str, float]:
    col, row = at
    return {"x": LEFT + COLUMN * col, "y": TOP + ROW * row}


class ChoiceError(ValueError):
    """A choice that cannot be used: `field` names it, the message says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- the shared training chain ------------------------------------------------------------------
def _train_chain(first: str, row: int = 0, col: int = 1) -> tuple[Step, ...]:
    """Dataset → minimise → split → train → validate (on one row), fed by `first`'s output."""
    first_id, first_port = first.split(".")
    return (
        Step(
            "data",
            "dataset",
            "Student records",
            (col, row),
            ((first_id, first_port, "start"),),
        ),
        Step(
            "minimise",
            "minimise_data",
            "Keep only needed columns",
            (col + 1, row),
            (("data", "dataset", "dataset"),),
            {"identifiers": "drop"},
        ),
        Step(
            "split",
            "split",
            "Hold out a test group",
            (col + 2, row),
            (("minimise", "dataset", "dataset"),),
            {"method": "stratified", "test_share": 0.25},
        ),
        Step(
            "train",
            "train_model",
            "Learn who may be at risk",
            (col + 3, row),
            (("split", "train", "train"), ("split", "test", "test")),
            {"algorithm": "hist_gradient_boosting", "balanced": True},
        ),
        Step(
            "validate",
            "validate_model",
            "Check it is good enough",
            (col + 4, row),
            (("train", "model", "model"),),
            {"threshold": 0.5, "min_auc": 0.7},
        ),
    )


def _bias_params(max_gap: float) -> dict[str, Any]:
    return {
        "metrics": ["false_negative_rate"],
        "rule": "max_difference",
        "max_difference": max_gap,
        "min_group_size": 30,
        "intersections": True,
        "if_inconclusive": "ask_approval",
    }


def _dataset(choices: Any) -> dict[str, Any]:
    return {"dataset_version": choices.dataset_version} if choices.dataset_version else {}


# --- the templates ---------------------------------------------------------------------------
def _early_warning_params(c: EarlyWarningChoices) -> dict[str, dict[str, Any]]:
    pilot: dict[str, Any] = (
        {"selection": "names", "schools": list(c.pilot_schools)}
        if c.pilot_schools
        else {"selection": "stratified", "sample_size": 3}
    )
    return {
        "data": _dataset(c),
        "train": {"model_name": c.model_name},
        "bias": _bias_params(c.max_gap),
        "pilot": pilot,
    }


EARLY_WARNING = Template(
    key="early-warning",
    title="Early-warning model with bias gate and pilot rollout",
    summary="Train a model that flags students who may be at risk, check it finds them as well "
    "in every group of students, and after district staff approve, try it in a few pilot "
    "schools first.",
    source=Source(
        "MLOps for Education AI: From Experimental Models to Production Learning Systems",
        "Early Warning and At-Risk Detection; High-Stakes Prediction Accountability",
        "000_4b06206afac5188d.txt",
    ),
    why="A missed at-risk student can go unnoticed for a whole semester, so the model must find "
    "them equally well whatever a student's background: the bias gate compares the missed-at-"
    "risk rate across groups before anything reaches a school. People stay in charge: district "
    "staff approve before the pilot, and the pilot shows how the model does in real schools "
    "before the whole district uses it.",
    choices=EarlyWarningChoices,
    steps=(
        Step("start", "manual_trigger", "Start by hand", (0, 0)),
        *_train_chain("start.start"),
        Step(
            "bias",
            "bias_gate",
            "Fair to every group",
            (1, 1),
            (("validate", "model", "model"),),
        ),
        Step(
            "export",
            "export_onnx",
            "Package for schools",
            (2, 1),
            (("bias", "model", "model"),),
        ),
        Step(
            "register",
            "set_alias",
            "Register as challenger",
            (3, 1),
            (("export", "model", "model"),),
            {"alias": "challenger"},
        ),
        Step(
            "card",
            "model_card",
            "Write the model card",
            (4, 1),
            (("register", "model", "model"),),
        ),
        Step(
            "pilot",
            "pilot_rollout",
            "Approve, then pilot",
            (4, 2),
            (("register", "model", "model"),),
            {"approval_required": True, "quorum": 1},
        ),
        Step(
            "sync",
            "edge_sync",
            "Send to school servers",
            (5, 2),
            (("pilot", "deployment", "deployment"),),
            {"timeout_minutes": 0},
        ),
        Step(
            "tell",
            "notify",
            "Tell district staff",
            (6, 2),
            (("sync", "deployment", "input"),),
            {
                "recipients": "district_staff",
                "title": "Early-warning pilot started",
                "message": "{workflow}: the new model now serves the pilot schools (run {run}). "
                "Watch their dashboards before promoting it to the district.",
            },
        ),
    ),
    params=_early_warning_params,
    notes=(
        Note(
            "1. Pick past students whose outcome you know. Minimise data drops names and ids; "
            "Split keeps a quarter of the students aside to test the model honestly.",
            (1, -0.7),
        ),
        Note(
            "2. Train learns from the rest; Validate stops the run if the model is not good "
            "enough (AUC below 0.7).",
            (4, -0.7),
        ),
        Note(
            "3. The bias gate compares how many at-risk students the model misses in each group "
            "(and pairs of groups). Too big a gap stops the run; when groups are too small to "
            "tell, district staff decide.",
            (0, 1),
        ),
        Note(
            "4. The model is packaged and signed for school servers and registered as the "
            "challenger; its model card records data, metrics and fairness.",
            (2, 2),
        ),
        Note(
            "5. District staff approve in their Approvals inbox; then the model serves only the "
            "pilot schools, centrally and on their own servers (which fetch it at their next "
            "sync). Everyone else keeps the current model. To hold the run until the school "
            "servers confirm, give 'Send to school servers' a timeout.",
            (4, 2.75),
        ),
    ),
)


def _retrain_params(c: RetrainChoices) -> dict[str, dict[str, Any]]:
    return {
        "term": {"days_after_start": c.days_after_start},
        "data": {**_dataset(c), "use": "newest"},
        "train": {"model_name": c.model_name},
        "bias": _bias_params(0.1),
    }


DRIFT_RETRAIN = Template(
    key="drift-retrain",
    title="Drift-triggered retraining at term start",
    summary="At the start of each term, check whether the students the model sees have changed; "
    "only if they have, retrain, re-check fairness and offer the new model as a challenger for "
    "staff to review.",
    source=Source(
        "Scaling Educational AI at the Edge: MLOps Strategies for Low-Code Platforms in "
        "Resource-Constrained Environments",
        "Automated Retraining Pipelines for Educational Models (distribution analysis, "
        "contextual retraining)",
        "001_66e7c0fd384c800d.txt",
    ),
    why="Student populations change every school year, and the first weeks of a term always "
    "look different: comparing with the same weeks of last year tells real drift from the "
    "calendar. Retraining only when drift is found saves work, and the new model never "
    "replaces the old one by itself: it becomes a challenger that must pass the same checks.",
    choices=RetrainChoices,
    steps=(
        Step("term", "term_start_trigger", "At each new term", (0, 0)),
        Step(
            "drift",
            "drift_monitor",
            "Has anything changed?",
            (1, 0),
            (("term", "start", "input"),),
            {"baseline": "seasonal", "by_grade": True, "pool_small_schools": True},
        ),
        Step(
            "check",
            "condition_gate",
            "Only if drift was found",
            (2, 0),
            (("drift", "report", "input"),),
            {"metric": "new_alerts", "operator": ">=", "threshold": 1},
        ),
        *_train_chain("check.passed", row=1, col=0),
        Step(
            "bias",
            "bias_gate",
            "Fair to every group",
            (0, 2),
            (("validate", "model", "model"),),
        ),
        Step(
            "export",
            "export_onnx",
            "Package for schools",
            (1, 2),
            (("bias", "model", "model"),),
        ),
        Step(
            "register",
            "set_alias",
            "Register as challenger",
            (2, 2),
            (("export", "model", "model"),),
            {"alias": "challenger"},
        ),
        Step(
            "card",
            "model_card",
            "Write the model card",
            (3, 2),
            (("register", "model", "model"),),
        ),
        Step(
            "tell",
            "notify",
            "Tell district staff",
            (4, 2),
            (("card", "report", "input"),),
            {
                "recipients": "district_staff",
                "title": "A retrained model is ready for review",
                "message": "{workflow} found drift and trained a challenger (run {run}). Compare "
                "it with the champion on the Models page before piloting it.",
            },
        ),
    ),
    params=_retrain_params,
    notes=(
        Note(
            "1. Some days into each term, the drift monitor compares what each school's model "
            "sees with the same weeks of last year, per grade, pooling small schools.",
            (0, -0.7),
        ),
        Note(
            "2. The run goes on only when a drift alert was raised; otherwise it stops here and "
            "nothing is retrained.",
            (2, -0.7),
        ),
        Note(
            "3. Retrain on the newest version of the chosen dataset: upload this term's rows "
            "as a new version of it before the run starts (the run records which version).",
            (5, 0.75),
        ),
        Note(
            "4. The retrained model must beat the current champion in Validate and pass the "
            "bias gate; it is only registered as a challenger. Pilot it with the early-warning "
            "rollout when staff agree.",
            (5, 1.75),
        ),
    ),
)


def _scoring_params(c: ScoringChoices) -> dict[str, dict[str, Any]]:
    return {"data": _dataset(c), "bias": _bias_params(0.1)}


SHORT_ANSWER_SCORING = Template(
    key="short-answer-scoring",
    title="Short-answer scoring with a human-review threshold",
    summary="Learn to score short written answers from answers teachers already scored, check it "
    "agrees with teachers as well for every group of students, and send the answers it is "
    "unsure about to a teacher.",
    source=Source(
        "AI deep learning for education: design, platforms and governance",
        "Step 4: Instrument observability and human-in-the-loop (also: MLOps for Education AI, "
        "Automated Essay and Short-Answer Scoring)",
        "002_269665d1f38c084b.txt",
    ),
    why="Automatic scoring saves teachers hours, but a wrong score is a real harm to a student. "
    "Scores the model is unsure of go to a teacher instead, and the teachers' scores come back "
    "as training data. The bias check matters because writing style differs with home "
    "language and background.",
    choices=ScoringChoices,
    steps=(
        Step("start", "manual_trigger", "Start by hand", (0, 0)),
        Step(
            "data",
            "dataset",
            "Answers teachers scored",
            (1, 0),
            (("start", "start", "start"),),
        ),
        Step(
            "split",
            "split",
            "Hold out test answers",
            (2, 0),
            (("data", "dataset", "dataset"),),
            {"method": "stratified", "test_share": 0.25},
        ),
        MissingBlock(
            "train_text_scorer",
            "Train a short-answer scorer",
            "It would learn to score free-text answers from answers teachers already scored "
            "(per question and rubric) and register the scorer as a model version that "
            "Validate and the Bias gate can check. Today's Train model block learns from "
            "numbers and categories only, and Minimise data drops free text on purpose.",
            id="scorer",
            at=(3, 0),
        ),
        Step(
            "validate",
            "validate_model",
            "Agrees with teachers?",
            (4, 0),
            (("scorer", "model", "model"),),
            {"min_auc": 0.8},
        ),
        Step(
            "bias",
            "bias_gate",
            "Fair to every group",
            (5, 0),
            (("validate", "model", "model"),),
        ),
        Step(
            "review",
            "approval_gate",
            "Teachers check a sample",
            (1, 1),
            (("bias", "model", "input"),),
            {
                "instructions": "Read twenty scored answers from the held-out part and compare "
                "them with your own marking before approving."
            },
        ),
        MissingBlock(
            "human_review_threshold",
            "Send unsure scores to a teacher",
            "It would score each new answer and, when the scorer's confidence is below a "
            "threshold you set (e.g. 0.8), put the answer in the teacher's review queue instead "
            "of recording the score; the teacher's scores would come back as labelled answers "
            "for the next retraining.",
            id="human_review",
            at=(2, 1),
            inlets=(("review", "approved", "input"),),
        ),
        Step(
            "tell",
            "notify",
            "Tell the teachers",
            (3, 1),
            (("review", "approved", "input"),),
            {
                "recipients": "teachers",
                "title": "Short-answer scoring approved",
                "message": "{workflow} (run {run}) was approved after a sample check.",
            },
        ),
    ),
    params=_scoring_params,
    notes=(
        Note(
            "1. Start from answers teachers already scored, the score marked as the label. A "
            "quarter is kept aside to compare the scorer with the teachers.",
            (1, -0.7),
        ),
        Note(
            "2. Validate and the bias gate check the scorer agrees with teachers, as well for "
            "every group of students.",
            (4, -0.7),
        ),
    ),
)


def _forecast_params(c: ForecastChoices) -> dict[str, dict[str, Any]]:
    return {"data": _dataset(c)}


ENROLLMENT_FORECAST = Template(
    key="enrollment-forecast",
    title="Enrollment forecast retrained every registration cycle",
    summary="After each registration cycle, retrain a forecast of how many students each school "
    "and grade will have, check last cycle's forecast against the real numbers, and let "
    "planning staff approve it.",
    source=Source(
        "MLOps for Education AI: From Experimental Models to Production Learning Systems",
        "Enrollment and Resource Demand Forecasting",
        "000_4b06206afac5188d.txt",
    ),
    why="Staffing, classrooms and budgets are planned on these numbers, and they break when "
    "demographics or policy change. Retraining on every registration cycle and comparing the "
    "last forecast with the actual enrolment shows when the forecast can no longer be trusted.",
    choices=ForecastChoices,
    steps=(
        Step(
            "term",
            "term_start_trigger",
            "When registration closes",
            (0, 0),
            params={"days_after_start": 21},
        ),
        Step(
            "data",
            "dataset",
            "Enrolment history",
            (1, 0),
            (("term", "start", "start"),),
        ),
        Step(
            "minimise",
            "minimise_data",
            "Counts only, no students",
            (2, 0),
            (("data", "dataset", "dataset"),),
        ),
        Step(
            "split",
            "split",
            "Hold out latest terms",
            (3, 0),
            (("minimise", "dataset", "dataset"),),
            {"method": "time", "test_share": 0.2},
        ),
        MissingBlock(
            "train_forecast",
            "Train an enrolment forecast",
            "It would learn a number, not a yes/no: enrolment per school and grade for the "
            "coming terms, with a regression or time-series model and a range of likely "
            "values. Today's Train model block only trains yes/no (classification) models.",
            id="forecast",
            at=(4, 0),
            inlets=(("split", "train", "train"), ("split", "test", "test")),
        ),
        MissingBlock(
            "check_forecast",
            "Check the forecast against actual enrolment",
            "It would compare last cycle's forecast with the enrolment that really came (mean "
            "error per school and grade) and stop the run when the error passes a limit. "
            "Today's Validate block measures yes/no predictions only.",
            id="backtest",
            at=(5, 0),
            inlets=(("forecast", "model", "model"),),
        ),
        Step(
            "approve",
            "approval_gate",
            "Planning staff approve",
            (4, 1),
            (("backtest", "report", "input"),),
            {"instructions": "Compare the forecast with the school principals' own estimates."},
        ),
        Step(
            "tell",
            "notify",
            "Tell district staff",
            (5, 1),
            (("approve", "approved", "input"),),
            {
                "recipients": "district_staff",
                "title": "New enrolment forecast",
                "message": "{workflow} (run {run}) produced an approved enrolment forecast.",
            },
        ),
    ),
    params=_forecast_params,
    notes=(
        Note(
            "1. Three weeks into each term registration has closed: the enrolment history is "
            "read, student-level columns dropped, and the latest terms kept aside to test on.",
            (1, -0.7),
        ),
    ),
)


def _watch_params(c: WatchChoices) -> dict[str, dict[str, Any]]:
    return {"outcomes": _dataset(c)}


WATCH_MODEL = Template(
    key="watch-model",
    title="Watch drift, latency and performance of the deployed model",
    summary="Every Monday morning, check whether what each school's model sees has changed, "
    "whether it answers as fast as usual on each school's hardware, and how it did on the real "
    "outcomes. Problems raise alerts teachers and staff see.",
    source=Source(
        "Scaling Educational AI at the Edge: MLOps Strategies for Low-Code Platforms in "
        "Resource-Constrained Environments",
        "Education-specific monitoring (academic calendar, small rural schools, varied devices)",
        "001_66e7c0fd384c800d.txt",
    ),
    why="A model that was good in validation can quietly get worse: a new cohort, an old laptop "
    "at a rural school, or outcomes that no longer match. Watching each every week, against "
    "the right baseline for the time of year, catches it before students are affected.",
    choices=WatchChoices,
    steps=(
        Step(
            "weekly",
            "schedule_trigger",
            "Every Monday at 06:00",
            (0, 0),
            params={"cron": "0 6 * * 1"},
        ),
        Step(
            "drift",
            "drift_monitor",
            "Has the input drifted?",
            (1, 0),
            (("weekly", "start", "input"),),
            {"baseline": "seasonal", "by_grade": True},
        ),
        Step(
            "latency",
            "device_latency_monitor",
            "Fast on every device?",
            (1, 1),
            (("weekly", "start", "input"),),
        ),
        Step(
            "outcomes",
            "dataset",
            "Real outcomes",
            (1, 2),
            (("weekly", "start", "start"),),
        ),
        Step(
            "performance",
            "performance_monitor",
            "Still finding at-risk?",
            (2, 2),
            (("outcomes", "dataset", "outcomes"),),
        ),
    ),
    params=_watch_params,
    notes=(
        Note(
            "Each monitor raises an alert naming the school and the cause; teachers may change "
            "the thresholds on the Thresholds page. Add an 'On an alert' workflow to retrain "
            "or roll back automatically.",
            (2, 0.4),
        ),
    ),
)

TEMPLATES: dict[str, Template] = {
    t.key: t
    for t in (EARLY_WARNING, DRIFT_RETRAIN, SHORT_ANSWER_SCORING, ENROLLMENT_FORECAST, WATCH_MODEL)
}


# --- using a template -----------------------------------------------------------------------
def check_choices(template: Template, choices: Choices, district: Any) -> None:
    """What the database must confirm: the dataset version and schools belong to `district` and
    have the roles the template needs."""
    from edumlops.datasets.models import DatasetVersion

    fields = {f["name"]: f for f in template.choice_fields()}
    for name, spec in fields.items():
        value = getattr(choices, name)
        if spec["widget"] == "dataset_version" and value is not None:
            version = (
                DatasetVersion.objects.filter(pk=value, district=district)
                .select_related("dataset")
                .first()
            )
            if version is None:
                raise ChoiceError(
                    name,
                    f"There is no dataset version {value} in {district}: pick one listed on the "
                    "Datasets page of this district.",
                )
            lacking = missing_roles(version, spec["needs"])
            if lacking:
                raise ChoiceError(
                    name,
                    f'"{version}" has no {" and no ".join(lacking)} marked: mark '
                    f"{'them' if len(lacking) > 1 else 'it'} on the dataset's page "
                    f"(/datasets/versions/{version.pk}/) first.",
                )
        if spec["widget"] == "schools" and value:
            schools = list(district.schools.all())
            known = {s.code.lower() for s in schools} | {s.name.lower() for s in schools}
            unknown = [v for v in value if v.strip().lower() not in known]
            if unknown:
                raise ChoiceError(
                    name,
                    f"No school {', '.join(map(repr, unknown))} in {district}: use school codes "
                    f"or names from the district page ({', '.join(s.code for s in schools)}).",
                )


ROLE_NAMES = {
    "label": "label column and positive class",
    "sensitive": "sensitive attribute",
    "school": "school column",
}


def missing_roles(version: Any, needs: list[str]) -> list[str]:
    roles = version.role_set
    present = {
        "label": bool(roles.label and roles.positive),
        "sensitive": bool(roles.sensitive),
        "school": bool(roles.school),
    }
    return [ROLE_NAMES[n] for n in needs if not present[n]]


def use(
    template: Template,
    *,
    district: Any,
    user: Any,
    name: str,
    choices: dict[str, Any],
) -> WorkflowVersion:
    """Make a workflow from the template with the person's choices; its first version is a
    draft (listing what to fill in or which blocks are missing) when it could not run as is.
    Raises ChoiceError, writing nothing, when a choice or the name cannot be used."""
    name = name.strip()
    if not name:
        raise ChoiceError("name", "Give the workflow a name.")
    parsed = template.parse(choices)
    check_choices(template, parsed, district)
    graph = template.build(parsed)
    errors = [e.as_dict() for e in validate(graph)] + [m.error() for m in template.missing]
    try:
        with transaction.atomic():
            if Workflow.objects.filter(district=district, name=name).exists():
                raise IntegrityError
            workflow = Workflow.objects.create(
                district=district,
                name=name,
                description=f"{template.summary} (From the template “{template.title}”.)",
                owner=user,
            )
            return workflow.save_version(
                graph, f"from the template “{template.title}”", user, errors=errors
            )
    except IntegrityError:
        raise ChoiceError(
            "name", f"{district} already has a workflow named “{name}”: choose another name."
        ) from None
