"""The one place results become JSON-able data or readable text.

``to_data`` works for every frozen dataclass result. Each area's text renderer lives in a
module of this package and registers itself with ``@text_renderer(ResultType)``; the
imports below load them all. The HTTP API (``?format=text``), the CLI and the REPL helpers
all print through ``to_text``.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import PurePath
from typing import Any

from opsconsole.diagnostics.render import allocations, gc, leaks, objects, process, profile, threads  # noqa: F401
from opsconsole.diagnostics.render.registry import TEXT, text_renderer

__all__ = ["text_renderer", "to_data", "to_text"]


def to_data(value: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, paths → str, enums → values; recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def to_text(value: Any) -> str:
    """Readable text for a result, as the CLI and the REPL helpers print it."""
    fn = TEXT.get(type(value))
    if fn is None:
        raise TypeError(f"no text renderer for {type(value).__name__}")
    return fn(value)
