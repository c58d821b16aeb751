"""Where text renderers register: ``@text_renderer(ResultType)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")
TEXT: dict[type, Callable[[Any], str]] = {}


def text_renderer(kind: type[R]) -> Callable[[Callable[[R], str]], Callable[[R], str]]:
    def register(fn: Callable[[R], str]) -> Callable[[R], str]:
        TEXT[kind] = fn
        return fn

    return register
