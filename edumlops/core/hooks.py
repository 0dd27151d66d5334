"""Hooks: how a lower layer asks a question that only a layer above can answer.

A domain app declares a hook with a default answer; the app above registers the real answer in
its `AppConfig.ready()`. The domain app never imports the layer above, so dependencies keep
pointing down (ARCHITECTURE.md §4). Events that set something in motion (an alert raised) are
Django signals instead; a hook is for a question with an answer (who approved this run?).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Hook(Generic[T]):
    def __init__(self, name: str, default: Callable[..., T]) -> None:
        self.name = name
        self._default = default
        self._answer: Callable[..., T] | None = None

    def register(self, answer: Callable[..., T]) -> Callable[..., T]:
        """Set the answer (usable as a decorator); the last registration wins."""
        self._answer = answer
        return answer

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        return (self._answer or self._default)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {'registered' if self._answer else 'default'}>"
