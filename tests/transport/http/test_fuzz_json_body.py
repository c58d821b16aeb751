"""The login/challenge JSON bodies, fuzzed: the parser alone with many inputs, then fewer over
real HTTP to the real console thread. Any body gets a JSON object or a 400, never a 500.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsconsole.console import Console
from opsconsole.errors import InvalidRequestError
from opsconsole.transport.http import json_body
from testkit.fuzz import fuzz
from testkit.support import FakeClock, Operator, call, console_settings, login_token, write_keys_dir

LOGIN_FIELDS = ("user", "nonce", "signature", "totp")


def outcome(raw: bytes, *required: str) -> object:
    try:
        return json_body.parse_object(raw, *required)
    except InvalidRequestError as exc:
        return ("400", str(exc))


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def assert_well_behaved(raw: bytes, *required: str) -> object:
    """The properties every body has, whatever it is."""
    first = outcome(raw, *required)
    assert outcome(raw, *required) == first  # the same body, the same answer
    if isinstance(first, dict):
        # What we accept, the standard parser reads the same way, and it is UTF-8 JSON again.
        assert json.loads(raw) == first
        json.dumps(first, ensure_ascii=False, allow_nan=False).encode("utf-8")
        assert depth_of(first) <= json_body.MAX_DEPTH
        assert all(isinstance(first[k], str) for k in required)
    return first


# JSON values without NaN, infinities or lone surrogates: what a body may carry.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
OBJECTS = st.dictionaries(st.sampled_from([*LOGIN_FIELDS, "x"]) | st.text(max_size=8), VALUES, max_size=6)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Bodies built to hit each rule: nesting, duplicates, constants, numbers, encodings."""
    kind = draw(
        st.sampled_from(
            ["nested", "duplicate", "constant", "big_int", "big_float", "surrogate", "utf16", "bom", "latin1"]
        )
    )
    obj = draw(OBJECTS)
    text = json.dumps(obj)
    if kind == "nested":
        depth = draw(st.integers(1, 40_000))
        opener = draw(st.sampled_from(["[", '{"user":', '[{"a":[']))
        text = opener * depth + ("]" * depth if opener == "[" else "")
    elif kind == "duplicate":
        key = draw(st.sampled_from(LOGIN_FIELDS))
        text = "{" + json.dumps(key) + ":" + json.dumps(draw(VALUES)) + "," + text[1:]
        if not obj:
            text = text.replace(",}", "}")
        text = text.replace("{", "{" + json.dumps(key) + ':"x",', 1) if draw(st.booleans()) else text
    elif kind == "constant":
        text = '{"user": ' + draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])) + "}"
    elif kind == "big_int":
        text = '{"user": "a", "n": ' + "9" * draw(st.integers(4000, 5000)) + "}"
    elif kind == "big_float":
        text = '{"user": "a", "n": ' + draw(st.sampled_from(["1e999", "-1e400", "1" * 400 + ".5"])) + "}"
    elif kind == "surrogate":
        unit = draw(st.integers(0xD800, 0xDFFF))
        text = '{"user": "ali' + f"\\u{unit:04x}" + 'ce"}'
    elif kind == "utf16":
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    elif kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    else:
        return '{"user": "é"}'.encode("latin-1")
    return text.encode()


@fuzz(200)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_object_or_a_400(raw: bytes) -> None:
    assert_well_behaved(raw, "user")


@fuzz(100)
@given(hostile_bodies())
def test_hostile_bodies_give_an_object_or_a_400(raw: bytes) -> None:
    assert_well_behaved(raw, *LOGIN_FIELDS)


@fuzz(80)
@given(OBJECTS, st.booleans())
def test_a_json_object_reads_back_exactly(obj: dict[str, Any], ascii_only: bool) -> None:
    raw = json.dumps(obj, ensure_ascii=ascii_only).encode()
    if depth_of(obj) <= json_body.MAX_DEPTH:
        assert outcome(raw) == obj
    assert_well_behaved(raw, *LOGIN_FIELDS)


@fuzz(60)
@given(st.lists(VALUES, max_size=3) | SCALARS)
def test_anything_but_an_object_is_a_400(value: object) -> None:
    assert outcome(json.dumps(value).encode()) == ("400", "body must be a JSON object")


@fuzz(60)
@given(OBJECTS, st.sampled_from(LOGIN_FIELDS), st.none() | st.integers() | st.lists(st.text(), max_size=2))
def test_a_required_field_of_the_wrong_type_is_a_400(obj: dict[str, Any], key: str, wrong: object) -> None:
    others = {k: v for k, v in obj.items() if k not in LOGIN_FIELDS}
    body = {**dict.fromkeys(LOGIN_FIELDS, "x"), **others, key: wrong}
    assert outcome(json.dumps(body).encode(), *LOGIN_FIELDS) == ("400", f"{key!r} must be a string")


# -- what fuzzing found, kept as plain tests ----------------------------------------------


def test_deeply_nested_body_is_a_400() -> None:
    # json.loads raised RecursionError: a 500 and a traceback in the host's log.
    assert outcome(b"[" * 5000) == ("400", "body is not valid JSON")
    assert outcome(b'{"a":' * 20 + b"1" + b"}" * 20)[0] == "400"


def test_lone_surrogate_in_a_field_is_a_400() -> None:
    # {"user": "\ud800"} was accepted; the login then failed to encode the challenge
    # message: a 500 and a traceback in the host's log.
    assert outcome(b'{"user": "\\ud800"}', "user") == (
        "400",
        "body has text that is not Unicode (a lone surrogate)",
    )
    assert outcome(b'{"user": "\\ud83d\\ude00"}', "user") == {"user": "😀"}  # a real pair is fine


def test_duplicate_keys_are_a_400() -> None:
    # The last "user" won silently; a proxy or an audit tool reading the first would disagree.
    assert outcome(b'{"user": "alice", "user": "mallory"}', "user") == ("400", "body has a duplicate key")


def test_utf16_and_bom_bodies_are_a_400() -> None:
    # json.loads(bytes) guessed UTF-16/32; RFC 8259 allows UTF-8 only.
    assert outcome('{"user": "a"}'.encode("utf-16"), "user")[0] == "400"  # type: ignore[index]
    assert outcome(b'\xef\xbb\xbf{"user": "a"}', "user")[0] == "400"  # type: ignore[index]


def test_nan_and_infinite_numbers_are_a_400() -> None:
    assert outcome(b'{"n": NaN}') == ("400", "NaN is not a JSON number")
    assert outcome(b'{"n": 1e999}') == ("400", "a number is too large")
    assert math.isfinite(outcome(b'{"n": 1e308}')["n"])  # type: ignore[index]


# -- over real HTTP to the real console thread ----------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, keypairs: dict[str, Path]
) -> Iterator[tuple[Console, Records]]:
    """One console for the module (Hypothesis runs many examples per test function)."""
    tmp = tmp_path_factory.mktemp("fuzzhttp")
    op = Operator("alice", "operator", keypairs["ed25519"])
    write_keys_dir(tmp / "keys", [op])
    errors = Records()
    logging.getLogger().addHandler(errors)
    clock = FakeClock()
    console = Console(console_settings(tmp, tmp / "keys"), clock=clock).start()
    try:
        yield console, errors
        # The host is unaffected: once the failures' lockout has passed, a real operator logs in.
        clock.advance(console.settings.lockout_max_delay + 60)
        login_token(console.url, op, clock())
    finally:
        console.stop()
        logging.getLogger().removeHandler(errors)
    assert [r.getMessage() for r in errors.records] == []  # no traceback reached the host's log


def answer(console: Console, path: str, raw: bytes) -> tuple[int, object]:
    status, body = call(console.url, "POST", path, raw)
    assert status != 500, body
    assert isinstance(body, dict)
    assert status == 200 or set(body) == {"error", "message"}
    return status, body


@fuzz(25)
@given(st.binary(max_size=200) | hostile_bodies() | OBJECTS.map(lambda o: json.dumps(o).encode()))
def test_challenge_bodies_over_http(live: tuple[Console, Records], raw: bytes) -> None:
    console, _ = live
    status, body = answer(console, "/ops/auth/challenge", raw)
    expected = outcome(raw, "user")
    if status == 429:
        return  # a per-source rate limit may refuse before any parsing
    if isinstance(expected, dict):
        assert status == 200, body
    else:
        assert (status, body) == (400, {"error": "bad_request", "message": expected[1]})  # type: ignore[index]


@fuzz(25)
@given(
    hostile_bodies() | OBJECTS.map(lambda o: json.dumps({**dict.fromkeys(LOGIN_FIELDS, "x"), **o}).encode())
)
def test_login_bodies_over_http(live: tuple[Console, Records], raw: bytes) -> None:
    console, _ = live
    status, body = answer(console, "/ops/auth/login", raw)
    expected = outcome(raw, *LOGIN_FIELDS)
    if status == 429:
        return
    if isinstance(expected, dict):
        # Well-formed but forged: the one answer every failed login gets.
        assert (status, body) == (401, {"error": "authentication_failed", "message": "authentication failed"})
    else:
        assert (status, body) == (400, {"error": "bad_request", "message": expected[1]})  # type: ignore[index]


def test_found_bodies_over_http(live: tuple[Console, Records]) -> None:
    console, _ = live
    for raw in (b"[" * 5000, b'{"user": "\\ud800"}', b'{"user": "a", "user": "b"}'):
        assert answer(console, "/ops/auth/challenge", raw)[0] in (400, 429)
    login = json.dumps(dict.fromkeys(LOGIN_FIELDS, "x")).replace('"x"', '"\\udc00"', 1).encode()
    assert answer(console, "/ops/auth/login", login)[0] in (400, 429)
