"""The terminal's websocket messages: ``["stdin", text]`` and ``["set_size", rows, cols]``.

Pure: a message in, a frozen message out, or ``ProtocolError`` with the close code:

- a binary message → 1003 (unsupported data: the terminal speaks text only);
- over ``max_bytes`` of UTF-8 → 1009;
- text that is not a JSON array of a known type with the right fields → 1008 (policy
  violation). 1007 is kept for what RFC 6455 names it for, a text frame that is not UTF-8,
  which the frame reader (``transport/ws_protocol.py``) refuses before a message exists.

A lone surrogate escaped in ``stdin`` text (``"\\ud800"``) becomes U+FFFD, as a terminal
shows a broken byte: the REPL only ever gets text it can encode.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from opsconsole.errors import ProtocolError

SHAPES = '["stdin", text] or ["set_size", rows, cols]'
# Half of a UTF-16 pair, which JSON can escape but no codec can encode.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Stdin:
    text: str


@dataclass(frozen=True, slots=True)
class SetSize:
    rows: int
    cols: int


def parse(message: str | bytes, *, max_bytes: int) -> Stdin | SetSize:
    if isinstance(message, bytes):
        raise ProtocolError(1003, "ws_binary_message", "binary messages are not accepted")
    if _utf8_size(message, max_bytes) > max_bytes:
        raise ProtocolError(1009, "ws_message_too_big", f"messages are at most {max_bytes} bytes")
    try:
        frame = json.loads(message)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the C stack guard
        raise ProtocolError(1008, "ws_malformed_message", f"not JSON; messages are {SHAPES}") from None
    if isinstance(frame, list) and frame:
        kind = frame[0]
        if kind == "stdin" and len(frame) == 2 and isinstance(frame[1], str):
            return Stdin(_LONE_SURROGATE.sub("\ufffd", frame[1]))
        if kind == "set_size" and len(frame) == 3 and all(type(v) is int for v in frame[1:]):
            return SetSize(frame[1], frame[2])
    raise ProtocolError(1008, "ws_malformed_message", f"messages are {SHAPES}")


def _utf8_size(message: str, max_bytes: int) -> int:
    # A str of n characters is at most 4n UTF-8 bytes: only long ones need encoding.
    if len(message) * 4 <= max_bytes:
        return len(message)
    return len(message.encode("utf-8", "surrogatepass"))
