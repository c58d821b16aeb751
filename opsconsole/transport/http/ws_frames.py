"""RFC 6455 frames as a server must police them: pure checks, no IO.

Each check returns nothing or raises ``ProtocolError`` carrying the close code the RFC asks
for: 1002 for a broken frame, 1007 for text that is not UTF-8, 1009 for a message over the
limit. ``transport/ws_protocol.py`` reads frames off the socket and asks these.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from opsconsole.errors import ProtocolError

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})
# Close codes a peer may send (RFC 6455 7.4.1-7.4.2): the defined ones and 3000-4999;
# 1004-1006 and 1015 are reserved for local use and never go on the wire.
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


@dataclass(frozen=True, slots=True)
class Head:
    """The first two bytes of a frame."""

    fin: bool
    rsv: int  # the three reserved bits, 0..7
    opcode: int
    masked: bool
    length7: int  # 0..125, or 126 / 127: the length follows in 2 / 8 bytes

    @classmethod
    def parse(cls, two: bytes) -> Head:
        b0, b1 = two[0], two[1]
        return cls(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F)

    @property
    def control(self) -> bool:
        return bool(self.opcode & 0x8)


def check_head(head: Head, *, in_message: bool) -> None:
    """A frame's header before its length is read; ``in_message``: a fragmented message is open.

    No extension is ever negotiated, so every reserved bit must be clear.
    """
    if head.rsv:
        raise ProtocolError(1002, "ws_reserved_bits", "reserved bits set; no extension was negotiated")
    if head.opcode not in OPCODES:
        raise ProtocolError(1002, "ws_bad_opcode", f"unknown opcode {head.opcode:#x}")
    if not head.masked:
        raise ProtocolError(1002, "ws_unmasked_frame", "client frames must be masked")
    if head.control:
        if not head.fin:
            raise ProtocolError(1002, "ws_fragmented_control", "control frames must not be fragmented")
        if head.length7 > 125:
            raise ProtocolError(1002, "ws_control_too_long", "control frames carry at most 125 bytes")
    elif head.opcode == CONTINUATION and not in_message:
        raise ProtocolError(1002, "ws_bad_continuation", "continuation frame without a message")
    elif head.opcode != CONTINUATION and in_message:
        raise ProtocolError(1002, "ws_bad_continuation", "new message before the last one ended")


def extended_length(head: Head, raw: bytes) -> int:
    """The payload length from the 2 or 8 bytes after the header (``raw``)."""
    if head.length7 == 126:
        return int(struct.unpack(">H", raw)[0])
    length = int(struct.unpack(">Q", raw)[0])
    if length >> 63:
        raise ProtocolError(1002, "ws_bad_length", "the most significant length bit must be 0")
    return length


def check_size(buffered: int, length: int, limit: int) -> None:
    """A message (``buffered`` bytes so far plus this frame's ``length``) within ``limit``."""
    if buffered + length > limit:
        raise ProtocolError(1009, "ws_message_too_big", f"messages are at most {limit} bytes")


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` (as whole integers: no Python loop per byte)."""
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def check_text(payload: bytes) -> None:
    """A text message must be UTF-8 (RFC 6455 8.1); 1007 otherwise."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "ws_invalid_utf8", "text message is not valid UTF-8") from None


def check_close(payload: bytes) -> None:
    """A close frame's body: empty, or a code a peer may send and a UTF-8 reason."""
    if not payload:
        return
    if len(payload) == 1:
        raise ProtocolError(1002, "ws_bad_close", "a close frame body needs a 2-byte code")
    code = int(struct.unpack(">H", payload[:2])[0])
    if code not in _PEER_CODES and not 3000 <= code <= 4999:
        raise ProtocolError(1002, "ws_bad_close", f"close code {code} may not be sent")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "ws_invalid_utf8", "close reason is not valid UTF-8") from None
