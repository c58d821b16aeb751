"""Protocol errors on ``/ops/terminal`` closed by the book: hand-built frames over a raw
socket against the real console thread, each answered with RFC 6455's close code and
audited once per connection.

1002 a broken frame · 1003 a binary message · 1007 text that is not UTF-8 · 1008 a text
message that is not one of ours · 1009 a message over 64 KiB.
tests/acceptance/test_tornado_range.py runs this file again on the oldest Tornado we support.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterator

import pytest
import tornado

from opsconsole.console import Console
from opsconsole.errors import ProtocolError
from opsconsole.transport.http import terminal_socket, ws_frames, ws_messages, ws_protocol
from testkit.support import FakeClock, Operator, audit_events, login_token
from testkit.terminal_client import clean
from testkit.ws_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    BlockingTerm,
    RawWebSocket,
    frame,
    upgrade_headers,
)

KIB = 1024


@pytest.fixture
def ws(console: Console, operators: dict[str, Operator], clock: FakeClock) -> Iterator[RawWebSocket]:
    """An upgraded terminal connection (bearer token, no Origin: the CLI's shape)."""
    token = login_token(console.url, operators["alice"], clock())
    conn = RawWebSocket(console.url)
    assert conn.upgrade([*upgrade_headers(conn.netloc), ("Authorization", f"Bearer {token}")]) == 101
    yield conn
    conn.close()


def ws_refusals(console: Console) -> list[str]:
    return [
        e["fields"]["reason"]
        for e in audit_events(console.settings.audit_path)
        if e["event"] == "auth.refused" and e["fields"]["reason"].startswith("ws_")
    ]


def stdin(text: str) -> bytes:
    return json.dumps(["stdin", text], ensure_ascii=False).encode()


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, struct.pack(">H", code) + reason)


BIG = stdin("x" * (64 * KIB))  # one message just over the limit once framed as JSON
# (frames to send, close code, audited reason)
VIOLATIONS = {
    "invalid-utf8": ([frame(TEXT, b'["stdin", "\xff\xfe"]')], 1007, "ws_invalid_utf8"),
    "invalid-utf8-across-fragments": (
        [frame(TEXT, b'["stdin", "\xc3', fin=False), frame(CONTINUATION, b'("]')],
        1007,
        "ws_invalid_utf8",
    ),
    "surrogate-encoded-in-utf8": ([frame(TEXT, b'["stdin", "\xed\xa0\x80"]')], 1007, "ws_invalid_utf8"),
    "binary": ([frame(BINARY, stdin("1+1\r"))], 1003, "ws_binary_message"),
    "over-64-kib": ([frame(TEXT, BIG)], 1009, "ws_message_too_big"),
    "over-64-kib-in-fragments": (
        [frame(TEXT, BIG[: 40 * KIB], fin=False), frame(CONTINUATION, BIG[40 * KIB :])],
        1009,
        "ws_message_too_big",
    ),
    "not-json": ([frame(TEXT, b"print(1)")], 1008, "ws_malformed_message"),
    "unknown-type": ([frame(TEXT, b'["rm", "-rf"]')], 1008, "ws_malformed_message"),
    "json-object": ([frame(TEXT, b'{"stdin": "x"}')], 1008, "ws_malformed_message"),
    "set-size-with-floats": ([frame(TEXT, b'["set_size", 24.0, 80]')], 1008, "ws_malformed_message"),
    "nested-past-the-recursion-limit": ([frame(TEXT, b"[" * 60000)], 1008, "ws_malformed_message"),
    "reserved-bit-1": ([frame(TEXT, stdin("x"), rsv=0b100)], 1002, "ws_reserved_bits"),
    "reserved-bit-3": ([frame(TEXT, stdin("x"), rsv=0b001)], 1002, "ws_reserved_bits"),
    "unmasked": ([frame(TEXT, stdin("x"), masked=False)], 1002, "ws_unmasked_frame"),
    "ping-126-bytes": ([frame(PING, b"p" * 126)], 1002, "ws_control_too_long"),
    "fragmented-ping": ([frame(PING, b"p", fin=False)], 1002, "ws_fragmented_control"),
    "continuation-without-message": ([frame(CONTINUATION, stdin("x"))], 1002, "ws_bad_continuation"),
    "new-message-inside-fragmented": (
        [frame(TEXT, b'["stdin", ', fin=False), frame(TEXT, stdin("x"))],
        1002,
        "ws_bad_continuation",
    ),
    "opcode-3": ([frame(0x3, b"")], 1002, "ws_bad_opcode"),
    "opcode-0xb": ([frame(0xB, b"")], 1002, "ws_bad_opcode"),
    "close-with-1-byte": ([frame(CLOSE, b"\x03")], 1002, "ws_bad_close"),
    "close-with-code-1005": ([close_frame(1005)], 1002, "ws_bad_close"),
    "close-with-code-999": ([close_frame(999)], 1002, "ws_bad_close"),
    "close-reason-not-utf8": ([close_frame(1000, b"\xff")], 1007, "ws_invalid_utf8"),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violation_is_closed_with_its_code_and_audited_once(
    console: Console, ws: RawWebSocket, name: str
) -> None:
    frames, code, reason = VIOLATIONS[name]
    ws.send(b"".join(frames))
    assert ws.close_code() == code, f"tornado {tornado.version}"
    assert ws_refusals(console) == [reason]


def test_obs4_invalid_utf8_frame_closes_with_1007(console: Console, ws: RawWebSocket) -> None:
    """Observation 4: a text frame with invalid UTF-8 dropped TCP with no close frame."""
    ws.send(frame(TEXT, b'["stdin", "caf\xe9"]'))  # Latin-1, not UTF-8
    assert ws.close_code() == 1007
    assert ws_refusals(console) == ["ws_invalid_utf8"]


def test_only_the_first_violation_is_audited(console: Console, ws: RawWebSocket) -> None:
    ws.send(
        frame(TEXT, b"\xff")
        + frame(BINARY, b"x")
        + frame(TEXT, b"x", rsv=1)
        + frame(TEXT, b"[" * 100)
        + frame(PING, b"p" * 126)
    )
    assert ws.close_code() == 1007
    assert ws_refusals(console) == ["ws_invalid_utf8"]


def test_a_length_that_cannot_be_followed_still_gets_its_close_frame(
    console: Console, ws: RawWebSocket
) -> None:
    head = struct.pack(">BBQ", 0x81, 0xFF, 1 << 63)  # the 64-bit length's top bit must be 0
    ws.send(head + b"\x00" * 4 + b"junk" * 100)
    opcode, payload = ws.read_control()
    assert (opcode, struct.unpack(">H", payload[:2])[0]) == (CLOSE, 1002)
    assert ws_refusals(console) == ["ws_bad_length"]


def test_good_frames_still_work(console: Console, ws: RawWebSocket) -> None:
    """Fragments (a UTF-8 character split across them), pings between them, then a clean close."""
    message = stdin("print('b' + 'é' * 3)\r")
    cut = message.index("é".encode()) + 1  # inside the two-byte character
    ws.send(frame(TEXT, message[:cut], fin=False))
    ws.send(frame(PING, b"between"))
    ws.send(frame(CONTINUATION, message[cut:]))
    seen, pong = "", False
    deadline = time.monotonic() + 20
    while not re.search(r"^béé", clean(seen), re.MULTILINE):
        assert time.monotonic() < deadline, clean(seen)[-500:]
        opcode, payload = ws.read_frame()
        if opcode == TEXT:
            seen += json.loads(payload)[1]
        pong = pong or (opcode, payload) == (PONG, b"between")
    assert pong
    ws.send(close_frame(1000, b"bye"))
    assert ws.close_code() == 1000
    assert ws_refusals(console) == []


def test_on_a_drifted_tornado_the_stock_reader_stands_in(
    console: Console,
    operators: dict[str, Operator],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fallback: Tornado's own reader, our message checks, and one warning in the log."""
    monkeypatch.setattr(ws_protocol, "SUPPORTED", False)
    monkeypatch.setattr(terminal_socket, "_warned", [])
    token = login_token(console.url, operators["alice"], clock())
    for _ in range(2):
        conn = RawWebSocket(console.url)
        try:
            assert conn.upgrade([*upgrade_headers(conn.netloc), ("Authorization", f"Bearer {token}")]) == 101
            conn.send(frame(BINARY, b"x"))
            assert conn.close_code() == 1003
        finally:
            conn.close()
    assert ws_refusals(console) == ["ws_binary_message"] * 2
    warnings = [r for r in caplog.records if "frame reader not replaced" in r.getMessage()]
    assert len(warnings) == 1


def test_the_benchmarks_blocking_client_runs_a_line(
    console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    term = BlockingTerm(console.url, login_token(console.url, operators["alice"], clock()))
    try:
        seen = ""
        deadline = time.monotonic() + 20
        for pattern, typed in ((r">>> ?$", "6*7\r"), (r"^42$", None)):
            while not re.search(pattern, clean(seen), re.MULTILINE):
                assert time.monotonic() < deadline, clean(seen)[-500:]
                seen += term.read_text()
            if typed:
                seen = ""
                term.send(typed)
    finally:
        term.close()


# -- the pure parts ----------------------------------------------------------------------


def test_the_frame_reader_fits_this_tornado() -> None:
    """Fails when Tornado's private frame-reading members change shape (the handler then
    falls back to Tornado's own reader, which drops broken connections without a code)."""
    assert ws_protocol.shape_problems() == [], tornado.version
    assert ws_protocol.SUPPORTED


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"[]", 1003),
        ("x" * (64 * KIB + 1), 1009),
        ("é" * (32 * KIB + 1), 1009),
        ("[]", 1008),
        ('["stdin"]', 1008),
    ],
)
def test_message_parser_codes(message: str | bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        ws_messages.parse(message, max_bytes=64 * KIB)
    assert info.value.code == code


def test_message_parser_accepts_ours() -> None:
    assert ws_messages.parse('["stdin", "1+1\\r"]', max_bytes=64 * KIB) == ws_messages.Stdin("1+1\r")
    assert ws_messages.parse('["set_size", 40, 132]', max_bytes=64 * KIB) == ws_messages.SetSize(40, 132)


def test_unmask_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 5 + b"odd"
    mask = b"\x01\x80\xfe\x7f"
    assert ws_frames.unmask(mask, ws_frames.unmask(mask, data)) == data
    assert ws_frames.unmask(mask, b"\x00\x00\x00\x00\x00") == mask + mask[:1]
