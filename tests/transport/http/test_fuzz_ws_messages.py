"""The terminal's websocket message parser, fuzzed: any message is a Stdin, a SetSize or a
ProtocolError with a close code, the same every time; well-formed messages read back exactly.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsconsole.console import Console
from opsconsole.errors import ProtocolError
from opsconsole.transport.http import ws_messages
from opsconsole.transport.http.terminal_socket import MAX_MESSAGE
from testkit.fuzz import fuzz
from testkit.support import FakeClock, Operator, login_token
from testkit.terminal_client import Term

CLOSE_CODES = {1003, 1008, 1009}


def outcome(message: str | bytes) -> object:
    try:
        return ws_messages.parse(message, max_bytes=MAX_MESSAGE)
    except ProtocolError as exc:
        return ("closed", exc.code, exc.reason)


def assert_well_behaved(message: str | bytes) -> object:
    first = outcome(message)
    assert outcome(message) == first  # the same message, the same answer
    if isinstance(first, tuple):
        assert first[1] in CLOSE_CODES
    else:
        assert isinstance(first, ws_messages.Stdin | ws_messages.SetSize)
    if isinstance(first, ws_messages.Stdin):
        first.text.encode("utf-8")  # what reaches the REPL is Unicode text
    return first


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["stdin", "set_size"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@fuzz(200)
@given(st.text(max_size=200) | st.binary(max_size=50))
def test_any_message_is_parsed_or_closed_with_a_code(message: str | bytes) -> None:
    assert_well_behaved(message)


@fuzz(100)
@given(st.lists(JSON_VALUES, max_size=4), st.sampled_from(["stdin", "set_size", "resize", "", None]))
def test_any_json_array_is_parsed_or_closed_with_a_code(rest: list[object], kind: str | None) -> None:
    assert_well_behaved(json.dumps([kind, *rest]))


@fuzz(60)
@given(
    depth=st.integers(1, MAX_MESSAGE // 2),
    opener=st.sampled_from(["[", '["stdin",', '{"a":', '["set_size",1,']),
    closed=st.booleans(),
)
def test_deep_nesting_is_closed_not_raised(depth: int, opener: str, closed: bool) -> None:
    body = opener * (depth // len(opener) + 1)
    body = body[: MAX_MESSAGE - 2 * depth] if len(body) > MAX_MESSAGE // 2 else body
    message = body + ("]" * depth if closed else "")
    assert isinstance(assert_well_behaved(message), tuple)


@fuzz(150)
@given(st.text(max_size=300))
def test_stdin_reads_back_exactly(text: str) -> None:
    message = json.dumps(["stdin", text], ensure_ascii=False)
    if len(message.encode()) <= MAX_MESSAGE:
        assert outcome(message) == ws_messages.Stdin(text)


@fuzz(100)
@given(rows=st.integers(-(2**70), 2**70), cols=st.integers(-(2**70), 2**70))
def test_set_size_reads_back_exactly(rows: int, cols: int) -> None:
    # Any size: clamping to the terminal's limits is the handler's business.
    assert outcome(json.dumps(["set_size", rows, cols])) == ws_messages.SetSize(rows, cols)
    assert outcome(json.dumps(["set_size", rows, bool(cols)]))[0] == "closed"  # type: ignore[index]
    assert outcome(json.dumps(["set_size", float(rows), cols]))[0] == "closed"  # type: ignore[index]


@fuzz(100)
@given(
    before=st.text(max_size=20),
    unit=st.integers(0xD800, 0xDFFF),
    after=st.text(max_size=20),
)
def test_stdin_with_a_lone_surrogate_escape_reaches_the_repl_as_unicode(
    before: str, unit: int, after: str
) -> None:
    message = '["stdin", ' + json.dumps(before)[:-1] + f"\\u{unit:04x}" + json.dumps(after)[1:] + "]"
    parsed = assert_well_behaved(message)
    assert parsed == ws_messages.Stdin(before + "\ufffd" + after)


# -- what fuzzing found, kept as plain tests ----------------------------------------------


def test_stdin_lone_surrogate_becomes_a_replacement_character() -> None:
    # "\ud800" reached the REPL as a str that cannot be encoded: ptpython printed
    # "Syntax Error: 'utf-8' codec can't encode character" instead of reading the line.
    assert outcome('["stdin", "a\\ud800b"]') == ws_messages.Stdin("a\ufffdb")
    assert outcome('["stdin", "\\udc00\\ud800"]') == ws_messages.Stdin("\ufffd\ufffd")
    assert outcome('["stdin", "\\ud83d\\ude00"]') == ws_messages.Stdin("😀")  # a real pair stays


def test_nested_arrays_as_deep_as_a_message_allows_are_closed_1008() -> None:
    # json.loads raised RecursionError: the connection dropped with no close frame.
    assert outcome("[" * MAX_MESSAGE) == ("closed", 1008, "ws_malformed_message")


@pytest.mark.asyncio
async def test_a_lone_surrogate_typed_over_the_real_websocket_reaches_the_repl_as_unicode(
    console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    term = await Term.open(console.url, login_token(console.url, operators["alice"], clock()))
    try:
        await term.expect(r">>> ?$")
        await term.conn.write_message('["stdin", "s = \\"a\\ud800b\\"\\r"]')
        await term.run("print(ascii(s), s.encode())", r"^'a\\ufffdb' b'a\\xef\\xbf\\xbdb'$")
    finally:
        await term.close()
