"""Data: pick a dataset version, minimise it, split it. Outputs are references (ids and small
JSON), never rows. The Split block stores its two parts once (edumlops.ml.frames) and its outputs
carry their hash: later blocks read the rows by it (`rows_for`), and rebuild them from the
version with the same steps when the stored rows are gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
from django.conf import settings
from pydantic import Field

from edumlops.datasets.models import DatasetVersion, load_reference
from edumlops.ml import frames
from edumlops.ml.datasets import ColumnInfo, Roles, plan_minimisation, split_indices
from workflows.blocks.base import (
    Block,
    BlockError,
    Context,
    Params,
    Port,
    PortType,
    output,
)


def pseudonym_key() -> bytes:
    return settings.PSEUDONYM_KEY.encode()


def version_for(context: Context, ref: Any) -> DatasetVersion:
    """The dataset version a reference names, if it belongs to the run's district."""
    if not isinstance(ref, dict) or "version" not in ref:
        raise BlockError("The input is not a dataset: connect a Dataset block's output.")
    version = (
        DatasetVersion.objects.filter(pk=ref["version"], district=context.run.workflow.district)
        .select_related("dataset")
        .first()
    )
    if version is None:
        raise BlockError(
            f"Dataset version {ref['version']} does not exist in this district any more: pick "
            "another one in the Dataset block."
        )
    return version


def frames_dir() -> Path:
    """Where the Split block stores its parts (named by content: safe to share or to wipe)."""
    return Path(settings.VAR_DIR) / "frames"


def rows_for(context: Context, ref: Any) -> tuple[pd.DataFrame, Roles]:
    """The rows a dataset reference stands for. A Split part is read from the rows the Split
    step stored; when they are missing or changed (var wiped, a worker on another machine) they
    are rebuilt from the dataset version exactly as the Split made them, and stored again.
    References without stored rows (runs from before) are rebuilt as they always were."""
    version = version_for(context, ref)
    stored = (ref.get("frame") or {}).get("sha256")
    if stored:
        try:
            frame = frames.read(frames_dir(), stored)
        except frames.FrameError as exc:
            context.log(f"Rebuilding {_part(ref)} from {version} (same split, same seed): {exc}")
        else:
            return frame, Roles.from_dict(ref.get("roles") or version.roles)
    frame, roles = load_reference(ref, pseudonym_key())
    if stored:
        rebuilt = _store(context, ref, frame)
        if rebuilt and rebuilt != stored:
            context.log(
                f"The rebuilt rows hash to {rebuilt[:12]}…, not {stored[:12]}… (another "
                "pseudonym key or library version?): this step uses the rebuilt rows."
            )
    return frame, roles


def _part(ref: dict[str, Any]) -> str:
    part = (ref.get("split") or {}).get("part")
    return {"train": "the training rows", "test": "the held-out rows"}.get(part, "the rows")


def _store(context: Context, ref: dict[str, Any], frame: pd.DataFrame) -> str | None:
    """Store rows for later steps; a failure only costs them a rebuild, never the run."""
    try:
        return frames.write(frame, frames_dir())
    except frames.FrameError as exc:
        context.log(f"Could not store {_part(ref)}: {exc}; later steps rebuild them.")
        return None


class DatasetParams(Params):
    dataset_version: int = Field(
        ...,
        ge=1,
        description="The dataset version to use (its id on the Datasets page).",
        json_schema_extra={"choices": "dataset_versions"},
    )
    use: Literal["this_version", "newest"] = Field(
        "this_version",
        description=(
            "this_version: always these rows, so a rerun is reproducible. newest: the newest "
            "version of the same dataset when the run starts (e.g. this term's upload, for a "
            "retraining that starts by itself); the run still records which version and its "
            "SHA-256."
        ),
    )


class DatasetBlock(Block):
    kind = "dataset"
    category = "data"
    label = "Dataset"
    help = (
        "Starts from one version of an uploaded dataset. A version never changes: the run "
        "records its SHA-256, so you can always tell which rows a model learned from. Mark the "
        "label, the positive class and the sensitive attributes on the dataset's page first."
    )
    icon = "database"
    Params = DatasetParams
    inputs = (Port("start", (PortType.TRIGGER, PortType.SIGNAL), "Start"),)
    outputs = (output("dataset", PortType.DATASET, "Dataset"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        version = version_for(context, {"version": params.dataset_version})
        if params.use == "newest":
            chosen = version
            version = (
                DatasetVersion.objects.filter(dataset=chosen.dataset_id)
                .select_related("dataset")
                .order_by("-number")
                .first()
            )
            context.log(
                f"Newest version of {chosen.dataset.name}: v{version.number}"
                + (" (the one chosen)" if version == chosen else f" (chosen: v{chosen.number})")
            )
        roles = version.role_set
        if not roles.label and _is_enrollment(version):
            context.log(
                f"{version}: {version.rows} rows of enrollment counts per school, grade and "
                f"term, sha256 {version.sha256[:12]}…; no label: a forecast learns the counts "
                "themselves (Train model would refuse it)"
            )
            context.metric("rows", version.rows)
            return {"dataset": version.reference()}
        if not roles.label and _is_rated_answers(version):
            context.log(
                f"{version}: {version.rows} answers in free text ("
                f"{', '.join(_text_columns(version))}), sha256 {version.sha256[:12]}…; no "
                "yes/no label: a short-answer scorer learns the teachers' scores; sensitive: "
                f"{', '.join(roles.sensitive) or 'none marked'}"
            )
            context.metric("rows", version.rows)
            return {"dataset": version.reference()}
        if not roles.label and _is_answer_log(version):
            context.log(
                f"{version}: {version.rows} answers (student, skill, correct), sha256 "
                f"{version.sha256[:12]}…; no label: knowledge tracing learns from the answers "
                "themselves (Train model would refuse it)"
            )
            context.metric("rows", version.rows)
            return {"dataset": version.reference()}
        if not roles.label or not roles.positive:
            raise BlockError(
                f'"{version}" has no label column and positive class marked: mark them, or '
                "define the outcome from a column (e.g. a grade), on the dataset's page "
                f"(/datasets/versions/{version.pk}/)."
            )
        context.log(
            f"{version}: {version.rows} rows, {len(version.schema)} columns, "
            f"sha256 {version.sha256[:12]}…; label '{roles.label}' "
            f"(positive: {', '.join(roles.positive)}"
            + (
                f"; yes where {roles.outcome.rule}"
                if roles.outcome and roles.outcome.name == roles.label
                else ""
            )
            + "); sensitive: "
            f"{', '.join(roles.sensitive) or 'none marked'}"
        )
        context.metric("rows", version.rows)
        ref = version.reference()
        ref["personal"] = version.columns_of_kind("identifier", "text")
        return {"dataset": ref}


class MinimiseParams(Params):
    keep: list[str] = Field(
        default=[],
        description=(
            "Columns the model may use. Leave empty to keep every column that is not "
            "identifier-like or free text. The label, school, grade, date/term and sensitive "
            "columns are always kept (the bias gate needs the sensitive ones)."
        ),
        json_schema_extra={"choices": "dataset_columns"},
    )
    identifiers: Literal["drop", "hash"] = Field(
        "drop",
        description=(
            "What to do with identifier-like columns (names, ids, e-mails): drop them, or "
            "replace each value with a keyed hash (a pseudonym that cannot be reversed)."
        ),
    )


class MinimiseBlock(Block):
    kind = "minimise_data"
    category = "data"
    label = "Minimise data"
    help = (
        "Keeps only the columns a model needs. Identifier-like columns (student numbers, "
        "names, e-mails) and free text (teacher notes) are dropped or replaced with a keyed "
        "hash; the step's log lists every removed column and why."
    )
    icon = "eye-off"
    Params = MinimiseParams
    inputs = (Port("dataset", (PortType.DATASET,), "Dataset"),)
    outputs = (output("dataset", PortType.DATASET, "Minimised dataset"),)

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = dict(inputs["dataset"])
        version = version_for(context, ref)
        schema = [ColumnInfo(**c) for c in version.schema]
        plan = plan_minimisation(
            schema,
            version.role_set,
            keep=params.keep,
            identifiers=params.identifiers,
        )
        for dropped in plan.dropped:
            context.log(f"Removed '{dropped['column']}' ({dropped['why']})")
        for col in plan.hashed:
            context.log(f"Replaced '{col}' with a keyed hash")
        context.log(f"Kept {len(plan.keep)} column(s): {', '.join(plan.keep)}")
        context.metric("columns_removed", len(plan.dropped))
        context.metric("columns_hashed", len(plan.hashed))
        ref["minimise"] = plan.to_dict()
        ref["personal"] = [c for c in ref.get("personal", []) if c in plan.keep]
        return {"dataset": ref}


class SplitParams(Params):
    method: Literal["stratified", "school", "time"] = Field(
        "stratified",
        description=(
            "stratified: random rows, same share of at-risk students on both sides; school: "
            "whole schools are held out (does the model work at a school it never saw?); time: "
            "the latest terms are held out (does it work on next year's cohort?)."
        ),
    )
    test_share: float = Field(
        0.25, ge=0.05, le=0.5, description="Share of rows (or schools, or terms) held out."
    )
    seed: int = Field(0, ge=0, description="Random seed, so the split can be repeated exactly.")


class SplitBlock(Block):
    kind = "split"
    category = "data"
    label = "Split"
    help = (
        "Holds out part of the data for an honest test: random (stratified), by school, or by "
        "time/term. Training uses one part, validation and the bias gate the other."
    )
    icon = "scissors"
    Params = SplitParams
    inputs = (Port("dataset", (PortType.DATASET,), "Dataset"),)
    outputs = (
        output("train", PortType.DATASET, "Training part"),
        output("test", PortType.DATASET, "Held-out part"),
    )

    def execute(self, context: Context, inputs: dict[str, Any], params: Params) -> dict[str, Any]:
        ref = dict(inputs["dataset"])
        ref.pop("frame", None)  # rows an earlier step stored are not this step's output
        version_for(context, ref)
        frame, roles = load_reference(ref, pseudonym_key())
        train, test = split_indices(
            frame,
            method=params.method,
            test_share=params.test_share,
            seed=params.seed,
            label=roles.label,
            positive=roles.positive,
            school=roles.school,
            time=roles.time,
        )
        if len(train) == 0 or len(test) == 0:
            raise BlockError(
                "The split left one side empty: change the held-out share or the method."
            )
        context.log(f"{params.method} split: {len(train)} training rows, {len(test)} held out")
        context.metric("train_rows", len(train))
        context.metric("test_rows", len(test))
        split = {"method": params.method, "test_share": params.test_share, "seed": params.seed}
        outputs = {}
        for part, rows in (("train", train), ("test", test)):
            out = {**ref, "split": {**split, "part": part}}
            sha256 = _store(context, out, frame.iloc[rows])
            if sha256:
                out["frame"] = {"sha256": sha256, "rows": len(rows)}
                context.log(f"Stored {_part(out)} for the next steps: {sha256[:12]}…")
            outputs[part] = out
        return outputs


ENROLLMENT_COLUMNS = ("school", "year", "term", "enrollment")


def _is_enrollment(version: DatasetVersion) -> bool:
    """An enrollment history (counts per school, grade and term): it needs no label."""
    names = {c["name"] for c in version.schema}
    return all(c in names for c in ENROLLMENT_COLUMNS)


def _text_columns(version: DatasetVersion) -> list[str]:
    return [c["name"] for c in version.schema if c.get("kind") == "text"]


def _is_rated_answers(version: DatasetVersion) -> bool:
    """Answers in free text with a teacher's score in whole points (a numeric column whose name
    starts with "score"): a short-answer scorer's data, which needs no yes/no label."""
    scores = [
        c["name"]
        for c in version.schema
        if c.get("kind") == "numeric" and str(c["name"]).lower().startswith("score")
    ]
    return bool(_text_columns(version)) and bool(scores)


ANSWER_LOG_COLUMNS = ("student", "skill", "correct")


def _is_answer_log(version: DatasetVersion) -> bool:
    """An answer log for knowledge tracing (one row per answer): it needs no label."""
    names = {c["name"] for c in version.schema}
    return all(c in names for c in ANSWER_LOG_COLUMNS)
