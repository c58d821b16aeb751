"""Request bodies: the JSON object a POST route reads, decoded strictly. Pure.

Strict where the standard library is lenient, so that no body can make the parser itself
fail and no two readers of one body (a proxy, an audit tool, us) can disagree about it:

- UTF-8 only, as RFC 8259 requires (``json.loads`` would also guess UTF-16 and UTF-32);
- at most ``MAX_DEPTH`` levels of nesting (the C scanner recurses once per level);
- no duplicate keys (parsers differ on which one wins), no NaN or Infinity, no number that
  only fits as an infinite float;
- no lone surrogates (``"\\ud800"`` decodes to a str that cannot be encoded back).

Called on the console IO loop by ``BaseHandler.json_body``; raises ``InvalidRequestError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from opsconsole.errors import InvalidRequestError

MAX_DEPTH = 16  # our bodies are flat objects; this leaves room and stays far from the C stack
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_object(raw: bytes, *required: str) -> dict[str, Any]:
    """The body as a JSON object whose ``required`` keys are strings; InvalidRequestError if not."""
    try:
        text = raw.decode("utf-8")
        body = json.loads(
            text or "null",
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidRequestError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("body must be a JSON object")
    _check_values(body)
    for key in required:
        if not isinstance(body.get(key), str):
            raise InvalidRequestError(f"{key!r} must be a string")
    return body


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidRequestError("body has a duplicate key")
    return obj


def _no_constant(name: str) -> float:
    raise InvalidRequestError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidRequestError("a number is too large")
    return value


def _check_values(body: dict[str, Any]) -> None:
    # Iterative, so a check of depth cannot itself recurse.
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise InvalidRequestError("body has text that is not Unicode (a lone surrogate)")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidRequestError(f"body is nested more than {MAX_DEPTH} levels deep")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
