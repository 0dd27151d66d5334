"""The block registry: every Block class defined in a module of this package, keyed by
(kind, version). Adding a block is adding one class to one module here (a new module is found
too): nothing else names it. `discover()` builds the registry again (tests use it)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from workflows.blocks.base import Block, PortType

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

REGISTRY: dict[tuple[str, int], type[Block]] = {}


def discover() -> dict[tuple[str, int], type[Block]]:
    """Import every module of this package and (re)fill REGISTRY with the blocks they define."""
    found: dict[tuple[str, int], type[Block]] = {}
    importlib.invalidate_caches()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Block) and cls is not Block and cls.__module__ == module.__name__:
                if cls.key() in found:
                    raise RuntimeError(f"two blocks claim {cls.key()}: {found[cls.key()]}, {cls}")
                if cls.category not in CATEGORY_LABELS:
                    raise RuntimeError(
                        f"{cls.__name__}: category {cls.category!r} is not one of "
                        f"{', '.join(CATEGORY_LABELS)}"
                    )
                found[cls.key()] = cls
    REGISTRY.clear()
    REGISTRY.update(found)
    return REGISTRY


def versions_of(kind: str) -> list[int]:
    return sorted(v for k, v in REGISTRY if k == kind)


def catalog() -> list[dict]:
    return [cls.describe() for _, cls in sorted(REGISTRY.items())]


discover()

__all__ = ["CATEGORY_LABELS", "REGISTRY", "Block", "PortType", "catalog", "discover", "versions_of"]
