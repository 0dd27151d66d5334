"""The block registry: every Block class defined in the category modules below, keyed by
(kind, version). Fixed at start-up; adding a block is adding one class to one of these modules."""

from __future__ import annotations

import inspect
from types import ModuleType

from workflows.blocks import (
    data,
    deployment,
    flow,
    gates,
    modelling,
    monitoring,
    notify,
    triggers,
)
from workflows.blocks.base import Block, PortType

CATEGORY_MODULES: tuple[ModuleType, ...] = (
    triggers,
    data,
    modelling,
    gates,
    deployment,
    monitoring,
    flow,
    notify,
)
CATEGORY_LABELS = {
    "trigger": "Start",
    "data": "Data",
    "model": "Models",
    "gate": "Gates and approvals",
    "deploy": "Roll out",
    "monitor": "Monitor",
    "flow": "Flow",
    "notify": "Tell people",
}


def _collect(modules: tuple[ModuleType, ...]) -> dict[tuple[str, int], type[Block]]:
    registry: dict[tuple[str, int], type[Block]] = {}
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Block) and cls is not Block and cls.__module__ == module.__name__:
                if cls.key() in registry:
                    raise RuntimeError(
                        f"two blocks claim {cls.key()}: {registry[cls.key()]}, {cls}"
                    )
                registry[cls.key()] = cls
    return registry


REGISTRY: dict[tuple[str, int], type[Block]] = _collect(CATEGORY_MODULES)


def versions_of(kind: str) -> list[int]:
    return sorted(v for k, v in REGISTRY if k == kind)


def catalog() -> list[dict]:
    return [cls.describe() for _, cls in sorted(REGISTRY.items())]


__all__ = ["REGISTRY", "Block", "PortType", "catalog", "versions_of"]
