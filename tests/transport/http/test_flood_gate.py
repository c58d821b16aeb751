"""The HTTP door's cheap 429 for floods of requests without a session, over real loopback
sockets: a pipelined burst past the rate gets the canned 429 and a close, a live session is
never limited, other sources keep their budget, nothing is audited per request, and a source
that keeps ignoring Retry-After is refused at accept() for a penalty that expires."""

from __future__ import annotations

import json
import math
import socket
import time
from pathlib import Path

from opsconsole.auth.sources import RequestRate
from opsconsole.console import Console
from opsconsole.transport.admission import COSTS, Penalties
from testkit.support import FakeClock, Operator, audit_events, call, console_settings, login_token

FORGED = "not-a-token"


def _request(path: str = "/ops/whoami", token: str = FORGED, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()


def _exchange(
    port: int, source: str, data: bytes, *, head: bool = False
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data`` at once from ``source``; the responses read until the server closes.

    ``head``: the requests are HEADs, whose answers have no body whatever their Content-Length.
    """
    answers: list[tuple[int, dict[str, str], bytes]] = []
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(data)
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                lines = buf[:end].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                length = 0 if head else int(headers.get("content-length", "0"))
                if len(buf) >= end + 4 + length:
                    answers.append((int(lines[0].split()[1]), headers, buf[end + 4 : end + 4 + length]))
                    buf = buf[end + 4 + length :]
                    continue
            chunk = sock.recv(65536)  # bounded by the socket's timeout
            if not chunk:
                break
            buf += chunk
    assert buf == b"", buf
    return answers


def test_a_pipelined_burst_past_the_rate_gets_the_canned_429_and_the_connection_closes(
    tmp_path: Path, keys_dir: Path, clock: FakeClock
) -> None:
    settings = console_settings(tmp_path, keys_dir, unauthenticated_rate=0.01, unauthenticated_burst=5)
    with Console(settings, clock=clock).start() as console:
        audited = len(audit_events(settings.audit_path))
        answers = _exchange(console.port, "127.0.0.2", _request() * 40)
        # The burst's five are answered by the handlers (401); the sixth gets the gate's 429
        # and the connection closes: the 34 pipelined behind it are never answered.
        assert [status for status, _, _ in answers] == [401] * 5 + [429]
        _, headers, body = answers[-1]
        assert int(headers["retry-after"]) >= 1
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert json.loads(body) == {
            "error": "rate_limited",
            "message": "too many requests without a session; retry later",
        }
        # A login body is not read, let alone parsed or checked: 429 for what is not JSON.
        login = b"POST /ops/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{not json"
        assert [s for s, _, _ in _exchange(console.port, "127.0.0.2", login)] == [429]
        # A HEAD gets the headers only.
        head = _exchange(console.port, "127.0.0.2", _request().replace(b"GET", b"HEAD", 1), head=True)
        assert [(s, b) for s, _, b in head] == [(429, b"")]
        # Nothing of this reached the audit log request by request.
        assert len(audit_events(settings.audit_path)) == audited
        assert console.http_admission.stats().refused == ()  # nor any penalty yet


def test_a_live_session_from_a_source_over_its_rate_is_never_limited(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    settings = console_settings(tmp_path, keys_dir, unauthenticated_rate=0.01, unauthenticated_burst=2)
    with Console(settings, clock=clock).start() as console:
        token = login_token(console.url, operators["alice"], clock())  # two from 127.0.0.1
        assert call(console.url, "GET", "/ops/whoami", token="forged")[0] == 429  # 127.0.0.1 is over
        # The bearer header and the browser's cookie alike, 30 pipelined on one connection.
        burst = (
            _request(token=token) * 15
            + _request(token="", extra=f"Cookie: opsconsole_session={token}\r\n") * 14
        )
        answers = _exchange(
            console.port, "127.0.0.1", burst + _request(token=token, extra="Connection: close\r\n")
        )
        assert [s for s, _, _ in answers] == [200] * 30
        # On that same source, a request without one still gets 429.
        assert call(console.url, "GET", "/ops/whoami")[0] == 429


def test_another_source_keeps_its_own_budget(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> None:
    settings = console_settings(tmp_path, keys_dir, unauthenticated_rate=0.01, unauthenticated_burst=3)
    with Console(settings, clock=clock).start() as console:
        assert [s for s, _, _ in _exchange(console.port, "127.0.0.2", _request() * 10)] == [401] * 3 + [429]
        last = _request(extra="Connection: close\r\n")
        assert [s for s, _, _ in _exchange(console.port, "127.0.0.3", _request() * 2 + last)] == [401] * 3


def test_a_source_that_keeps_ignoring_retry_after_is_refused_at_accept(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    settings = console_settings(
        tmp_path, keys_dir, unauthenticated_rate=0.01, unauthenticated_burst=2, penalty_min=6, penalty_max=60
    )
    with Console(settings, clock=clock).start() as console:
        audited = len(audit_events(settings.audit_path))
        refused_at_accept = False
        deadline = time.monotonic() + 20
        attempts = 0
        # Each connection closed for the rate costs COSTS["rate"]; a few in a row reach
        # penalty_min, after which the source's connections are closed before any answer.
        while not refused_at_accept and attempts < 50 and time.monotonic() < deadline:
            attempts += 1
            try:
                refused_at_accept = _exchange(console.port, "127.0.0.4", _request() * 4) == []
            except ConnectionResetError:
                refused_at_accept = True
        assert refused_at_accept, attempts
        assert attempts >= settings.penalty_min / COSTS["rate"]
        assert dict(console.http_admission.stats().refused)["penalty"] >= 1
        # Other sources are not touched, and a login from one still works.
        assert login_token(console.url, operators["alice"], clock())
        assert call(console.url, "GET", "/ops/whoami", source="127.0.0.5")[0] == 401
        # The penalty was named once in the log, not audited per request.
        assert (
            len([e for e in audit_events(settings.audit_path)[audited:] if e["event"] == "auth.failure"]) <= 1
        )


def test_the_rate_penalty_engages_and_expires_on_the_clock(clock: FakeClock) -> None:
    penalties = Penalties(min_seconds=15, max_seconds=600, clock=clock)
    closes = 0
    while penalties.remaining("192.0.2.9") == 0:
        penalties.penalise("192.0.2.9", "rate")
        closes += 1
        assert closes <= 100
    assert closes == math.ceil(15 / COSTS["rate"])
    assert penalties.remaining("192.0.2.10") == 0  # per source
    clock.advance(penalties.remaining("192.0.2.9") - 0.5)
    assert penalties.remaining("192.0.2.9") > 0
    clock.advance(1.0)
    assert penalties.remaining("192.0.2.9") == 0


def test_peek_counts_nothing(clock: FakeClock) -> None:
    rate = RequestRate(rate=1.0, burst=2, clock=clock)
    assert all(rate.peek("192.0.2.1").allowed for _ in range(10))
    assert rate.take("192.0.2.1").allowed and rate.take("192.0.2.1").allowed
    refused = rate.peek("192.0.2.1")
    assert not refused.allowed and refused.retry_after == 1.0
    assert not rate.take("192.0.2.1").allowed
    clock.advance(1.0)
    assert rate.peek("192.0.2.1").allowed and rate.peek("::ffff:192.0.2.1").allowed
