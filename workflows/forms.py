"""A JSON-Schema property read once as a form field: its type, bounds, enum choices, label and
help, and the typed (pydantic) field that checks a value for it.

The template gallery shows and checks a template's choices with it, and the Thresholds page the
bounds of a block's threshold parameters, so both read a schema the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from edumlops.ml.naming import MODEL_NAME_PATTERN

Number = int | float

# `"format"` values a schema may use instead of spelling out a pattern kept elsewhere
FORMATS = {"model-name": MODEL_NAME_PATTERN}

_TYPES: dict[str, Any] = {"integer": int, "number": float, "string": str, "boolean": bool}


def fmt(value: Number | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.10g}"


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number, read from its JSON Schema."""

    minimum: Number | None = None
    maximum: Number | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    integer: bool = False

    @classmethod
    def of(cls, prop: Mapping[str, Any]) -> Bounds:
        return cls(
            minimum=prop.get("exclusiveMinimum", prop.get("minimum")),
            maximum=prop.get("exclusiveMaximum", prop.get("maximum")),
            exclusive_minimum="exclusiveMinimum" in prop,
            exclusive_maximum="exclusiveMaximum" in prop,
            integer="integer" in _types(prop),
        )

    def admits(self, value: Number) -> bool:
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value < low or (self.exclusive_minimum and value == low))
        too_high = high is not None and (value > high or (self.exclusive_maximum and value == high))
        return not (too_low or too_high)

    def text(self) -> str:
        """In words: "from 0 to 1", "more than 0 and at most 2"."""
        low, high = fmt(self.minimum), fmt(self.maximum)
        if self.minimum is not None and self.maximum is not None:
            if not self.exclusive_minimum and not self.exclusive_maximum:
                return f"from {low} to {high}"
            first = f"more than {low}" if self.exclusive_minimum else f"at least {low}"
            second = f"less than {high}" if self.exclusive_maximum else f"at most {high}"
            return f"{first} and {second}"
        if self.minimum is not None:
            return f"more than {low}" if self.exclusive_minimum else f"at least {low}"
        if self.maximum is not None:
            return f"less than {high}" if self.exclusive_maximum else f"at most {high}"
        return "any number"

    @property
    def step(self) -> str:
        return "1" if self.integer else "any"


def _types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _typed(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """The branch that carries the type and bounds (pydantic writes `X | None` as anyOf)."""
    return next((p for p in prop.get("anyOf", [prop]) if "type" in p), prop)


@dataclass(frozen=True)
class FormField:
    """One property of an object schema as a form shows and checks it."""

    name: str
    label: str
    help: str
    widget: str
    default: Any
    required: bool
    bounds: Bounds
    pattern: str | None
    options: tuple[Any, ...]  # the enum's values, in order
    prop: Mapping[str, Any]  # the property itself, for the keywords a page adds (unit, step…)

    @classmethod
    def of(cls, name: str, prop: Mapping[str, Any], required: bool = False) -> FormField:
        typed = _typed(prop)
        return cls(
            name=name,
            label=prop.get("label") or prop.get("title") or name,
            help=prop.get("description", ""),
            widget=prop.get("widget", "text"),
            default=prop.get("default"),
            required=required,
            bounds=Bounds.of(typed),
            pattern=typed.get("pattern") or FORMATS.get(typed.get("format", "")),
            options=tuple(typed.get("enum", ())),
            prop=prop,
        )

    def annotation(self) -> Any:
        """The Python type a value must have."""
        typed = _typed(self.prop)
        kinds = _types(typed)
        if self.options:
            kind: Any = Literal[self.options]
        elif "array" in kinds:
            kind = list[_TYPES[typed.get("items", {}).get("type", "string")]]
        else:
            kind = _TYPES[next(k for k in kinds if k != "null")]
        return kind | None if "null" in prop_types(self.prop) else kind

    def pydantic(self) -> tuple[Any, Any]:
        """The field of a pydantic model that checks a value against the property."""
        typed = _typed(self.prop)
        limits = {
            "ge": typed.get("minimum"),
            "le": typed.get("maximum"),
            "gt": typed.get("exclusiveMinimum"),
            "lt": typed.get("exclusiveMaximum"),
            "pattern": self.pattern,
        }
        spec: dict[str, Any] = {k: v for k, v in limits.items() if v is not None}
        if not self.required:
            spec["default"] = self.default  # pydantic copies a list or dict for each value
        return self.annotation(), Field(title=self.label, description=self.help or None, **spec)


def prop_types(prop: Mapping[str, Any]) -> list[str]:
    """Every type a property admits, across an anyOf."""
    return [t for p in prop.get("anyOf", [prop]) for t in _types(p)]


def fields_of(schema: Mapping[str, Any]) -> list[FormField]:
    """The properties of an object schema as form fields, in order."""
    required = set(schema.get("required", []))
    return [
        FormField.of(name, prop, name in required)
        for name, prop in schema.get("properties", {}).items()
    ]


def model_of(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model checking a value against an object schema: types, bounds, patterns,
    enums, defaults, and no property it does not list."""
    fields = {f.name: f.pydantic() for f in fields_of(schema)}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
