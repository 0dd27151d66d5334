"""What every monitoring check shares: strict parameter models whose teacher-editable thresholds
(marked ``{"threshold": "school"}``) can be set per school, and the error a check raises when it
cannot run at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Self

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo

SCHOOL_THRESHOLDS_HELP = (
    "Per-school values set on the Thresholds page: school code → {parameter: value}. Only the "
    "parameters teachers may change, each within its own allowed range."
)


class CheckError(Exception):
    """The check cannot run; the message says what to fix."""


class CheckParams(BaseModel):
    """A check's parameters: strict, no unknown fields (like a block's)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class PerSchoolParams(CheckParams):
    """A check whose teacher-editable thresholds (marked ``{"threshold": "school"}``) can be
    set per school, in its ``school_thresholds`` parameter (declared last by each subclass, so
    it comes last in the block's form)."""

    if TYPE_CHECKING:
        school_thresholds: dict[str, dict[str, float]]

    @classmethod
    def school_fields(cls) -> dict[str, FieldInfo]:
        return {
            name: info
            for name, info in cls.model_fields.items()
            if isinstance(info.json_schema_extra, dict)
            and info.json_schema_extra.get("threshold") == "school"
        }

    @field_validator("school_thresholds", check_fields=False)
    @classmethod
    def _known_fields_within_bounds(
        cls, value: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        editable = cls.school_fields()
        for code, values in value.items():
            for name, number in values.items():
                if name not in editable:
                    raise ValueError(
                        f'school "{code}": "{name}" cannot be set per school (these can: '
                        f"{', '.join(editable)})"
                    )
                _check_bounds(code, name, number, editable[name])
        return value

    def for_school(self, code: str) -> Self:
        """These parameters with the school's own values where it has any."""
        own = self.school_thresholds.get(code)
        return self.model_copy(update=own) if own else self


def _check_bounds(code: str, name: str, number: float, info: FieldInfo) -> None:
    try:
        TypeAdapter(Annotated[info.annotation, info]).validate_python(number)
    except ValidationError as exc:
        raise ValueError(
            f'school "{code}": {name} = {number:g} is out of range: '
            f"{exc.errors()[0]['msg'].lower()}"
        ) from None
