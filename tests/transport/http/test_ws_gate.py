"""The websocket gate over real sockets against the real console thread: a table of
Origin / Host / Sec-Fetch-* variants, each answered 101 or refused with its audit event.

The console's own origin is ``http://127.0.0.1:PORT``; ``allowed_origins`` adds a proxy's
``https://ops.example.com`` and an IDN one in punycode. Each handshake is written byte for
byte (testkit/ws_client.py), so duplicate headers and odd spellings reach the server as sent.
tests/acceptance/test_tornado_range.py runs this file again on the oldest Tornado we support.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado

from opsconsole.console import Console
from opsconsole.transport.http import ws_gate
from testkit.support import FakeClock, Operator, audit_events, browser_cookie, console_settings, login_token
from testkit.ws_client import CLOSE, RawWebSocket, frame, upgrade_headers

PROXY = "https://ops.example.com"
IDN = "https://xn--bcher-kva.example"  # bücher.example


@pytest.fixture
def gate_console(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> Iterator[Console]:
    settings = console_settings(tmp_path, keys_dir, allowed_origins=f"{PROXY},{IDN}")
    c = Console(settings, clock=clock).start()
    yield c
    c.stop()


@dataclass(frozen=True)
class Case:
    id: str
    extra: tuple[tuple[str, str], ...]  # header lines after the upgrade's own, as sent
    cred: str  # "bearer", "cookie", "both" or "none"
    status: int
    reason: str | None = None  # the audited refusal reason
    hosts: tuple[str, ...] = ("{host}",)
    version: str = "13"
    # Tornado >= 6.5's HTTP parser answers 400 itself before any handler runs (nothing to
    # upgrade, nothing audited); older ones hand the request to the gate.
    parser_may_refuse: bool = False


EVIL = "http://evil.example"
SFS = "Sec-Fetch-Site"


def origin(value: str) -> tuple[tuple[str, str], ...]:
    return (("Origin", value),)


CASES = [
    # -- upgraded: the exact origins, and the CLI without one
    Case("own-origin-cookie", origin("{origin}"), "cookie", 101),
    Case("own-origin-bearer", origin("{origin}"), "bearer", 101),
    Case("allowed-origin-cookie", origin(PROXY), "cookie", 101),
    Case("allowed-idn-punycode", origin(IDN), "cookie", 101),
    Case("bearer-without-origin", (), "bearer", 101),
    Case("header-name-lowercase", (("origin", "{origin}"),), "cookie", 101),
    Case("proxy-host-and-origin", origin(PROXY), "cookie", 101, hosts=("ops.example.com",)),
    Case("browser-shape", (("Origin", "{origin}"), (SFS, "same-origin")), "cookie", 101),
    Case("fetch-cross-site-exact-origin", (("Origin", PROXY), (SFS, "cross-site")), "cookie", 101),
    # -- no Origin
    Case("cookie-without-origin", (), "cookie", 403, "ws_origin_missing"),
    Case("cookie-and-bearer-without-origin", (), "both", 403, "ws_origin_missing"),
    Case("fetch-same-origin-without-origin", ((SFS, "same-origin"),), "cookie", 403, "ws_origin_missing"),
    Case("fetch-none-without-origin-bearer", ((SFS, "none"),), "bearer", 403, "ws_origin_missing"),
    Case(
        "fetch-mode-without-origin-bearer",
        (("Sec-Fetch-Mode", "websocket"),),
        "bearer",
        403,
        "ws_origin_missing",
    ),
    # -- an Origin that is not exactly one of ours
    Case("scheme-uppercase", origin("HTTP://127.0.0.1:{port}"), "cookie", 403, "ws_origin"),
    Case("host-uppercase-idn", origin("https://XN--BCHER-KVA.example"), "cookie", 403, "ws_origin"),
    Case("trailing-slash", origin("{origin}/"), "cookie", 403, "ws_origin"),
    Case("with-path", origin("{origin}/ops/ui/"), "cookie", 403, "ws_origin"),
    Case("other-scheme-same-host", origin("https://127.0.0.1:{port}"), "cookie", 403, "ws_origin"),
    Case("ws-scheme-same-host", origin("ws://127.0.0.1:{port}"), "cookie", 403, "ws_origin"),
    Case("localhost-for-127", origin("http://localhost:{port}"), "cookie", 403, "ws_origin"),
    Case("default-port-spelled-out", origin("https://ops.example.com:443"), "cookie", 403, "ws_origin"),
    Case("own-origin-without-port", origin("http://127.0.0.1"), "cookie", 403, "ws_origin"),
    Case("port-with-leading-zero", origin("http://127.0.0.1:0{port}"), "cookie", 403, "ws_origin"),
    Case("null", origin("null"), "cookie", 403, "ws_origin"),
    Case("empty", origin(""), "cookie", 403, "ws_origin"),
    Case("subdomain", origin("https://evil.ops.example.com"), "cookie", 403, "ws_origin"),
    Case("suffix", origin("https://ops.example.com.evil.example"), "cookie", 403, "ws_origin"),
    Case("userinfo", origin("http://user@127.0.0.1:{port}"), "cookie", 403, "ws_origin"),
    Case("idn-unicode-spelling", origin("https://bücher.example"), "cookie", 403, "ws_origin"),
    Case("foreign-with-bearer", origin(EVIL), "bearer", 403, "ws_origin"),
    Case("foreign-without-credentials", origin(EVIL), "none", 403, "ws_origin"),
    Case(
        "fetch-same-origin-foreign",
        (("Origin", EVIL), (SFS, "same-origin")),
        "cookie",
        403,
        "ws_origin",
    ),
    Case("fetch-none-foreign", (("Origin", EVIL), (SFS, "none")), "cookie", 403, "ws_origin"),
    # -- repeated and legacy origin headers
    Case(
        "two-origins-both-ours",
        (("Origin", "{origin}"), ("Origin", "{origin}")),
        "cookie",
        403,
        "ws_origin_repeated",
    ),
    Case(
        "two-origins-ours-first",
        (("Origin", "{origin}"), ("Origin", EVIL)),
        "cookie",
        403,
        "ws_origin_repeated",
    ),
    Case(
        "sec-websocket-origin-alone",
        (("Sec-WebSocket-Origin", "{origin}"),),
        "bearer",
        403,
        "ws_legacy_origin",
    ),
    Case(
        "sec-websocket-origin-foreign",
        (("Origin", "{origin}"), ("Sec-WebSocket-Origin", EVIL)),
        "cookie",
        403,
        "ws_legacy_origin",
    ),
    Case(
        "draft-8-version", (("Sec-WebSocket-Origin", "{origin}"),), "bearer", 426, "ws_version", version="8"
    ),
    # -- the Host header
    Case("host-other-port", origin("{origin}"), "cookie", 403, "ws_host", hosts=("127.0.0.1:{port1}",)),
    Case("host-localhost", origin("{origin}"), "cookie", 403, "ws_host", hosts=("localhost:{port}",)),
    Case("host-without-port", origin("{origin}"), "cookie", 403, "ws_host", hosts=("127.0.0.1",)),
    Case(
        "dns-rebinding-same-host-origin",
        origin("http://attacker.example:{port}"),
        "cookie",
        403,
        "ws_host",
        hosts=("attacker.example:{port}",),
    ),
    Case(
        "host-repeated",
        origin("{origin}"),
        "cookie",
        403,
        "ws_host",
        hosts=("{host}", "{host}"),
        parser_may_refuse=True,
    ),
    # -- the gate passes, authentication refuses
    Case("no-credentials", (), "none", 401, "ws_unauthorized"),
]


@pytest.fixture
def creds(gate_console: Console, operators: dict[str, Operator], clock: FakeClock) -> dict[str, str]:
    token = login_token(gate_console.url, operators["alice"], clock())
    return {"token": token, "cookie": browser_cookie(gate_console.url, token)}


def handshake(console: Console, case: Case, creds: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """Send the case's upgrade; returns the status and the audit events it caused."""
    audit = console.settings.audit_path
    before = len(audit_events(audit))
    fill = {
        "origin": console.url,
        "host": f"127.0.0.1:{console.port}",
        "port": console.port,
        "port1": console.port + 1,
    }
    headers = [("Host", h.format(**fill)) for h in case.hosts]
    for name, value in upgrade_headers("unused")[1:]:
        headers.append((name, case.version if name == "Sec-WebSocket-Version" else value))
    headers += [(name, value.format(**fill)) for name, value in case.extra]
    if case.cred in ("bearer", "both"):
        headers.append(("Authorization", f"Bearer {creds['token']}"))
    if case.cred in ("cookie", "both"):
        headers.append(("Cookie", f"opsconsole_session={creds['cookie']}"))
    ws = RawWebSocket(console.url)
    try:
        status = ws.upgrade(headers)
        if status == 101:  # a REPL session opened: close it by the book
            ws.send(frame(CLOSE, b"\x03\xe8"))
            assert ws.close_code() == 1000
    finally:
        ws.close()
    return status, audit_events(audit)[before:]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_table(gate_console: Console, creds: dict[str, str], case: Case) -> None:
    status, events = handshake(gate_console, case, creds)
    refusals = [e["fields"] for e in events if e["event"] == "auth.refused"]
    if case.parser_may_refuse and status == 400:
        assert events == []
        return
    assert status == case.status, f"tornado {tornado.version}: {case.id} answered {status}"
    if case.reason is None:
        assert refusals == []
        assert any(e["event"] == "repl.open" for e in events) or status != 101
    else:
        assert [r["reason"] for r in refusals] == [case.reason]
        assert refusals[0]["source"] == "127.0.0.1"
        assert refusals[0]["user"] == ("" if case.cred == "none" else "alice")


def test_obs3_websocket_gate_is_ours(gate_console: Console, creds: dict[str, str]) -> None:
    """Observation 3: handshakes Tornado itself lets through (the same-host shortcut, a
    trusted Sec-Fetch-Site, a missing Origin with a cookie, the legacy header) are refused
    by our gate, on every Tornado version, and each refusal is audited."""
    by_id = {c.id: c for c in CASES}
    for name in (
        "cookie-without-origin",
        "other-scheme-same-host",
        "scheme-uppercase",
        "trailing-slash",
        "fetch-same-origin-foreign",
        "sec-websocket-origin-alone",
        "dns-rebinding-same-host-origin",
    ):
        case = by_id[name]
        status, events = handshake(gate_console, case, creds)
        assert status == 403, f"{name} was let through ({status}) on tornado {tornado.version}"
        assert [e["fields"]["reason"] for e in events if e["event"] == "auth.refused"] == [case.reason]


# -- the decision itself, without sockets ----------------------------------------------------


class _Headers:
    def __init__(self, *lines: tuple[str, str]) -> None:
        self._lines = lines

    def get_list(self, name: str) -> list[str]:
        return [v for k, v in self._lines if k.lower() == name.lower()]


def _base(*extra: tuple[str, str]) -> _Headers:
    return _Headers(*upgrade_headers("127.0.0.1:8780"), *extra)


POLICY = ws_gate.Policy.of("http://127.0.0.1:8780", [PROXY])


def test_policy_hosts_are_the_origins_hosts() -> None:
    assert POLICY.hosts == {"127.0.0.1:8780", "ops.example.com"}
    assert POLICY.origins == {"http://127.0.0.1:8780", PROXY}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (_Headers(("Host", "127.0.0.1:8780")), "ws_not_upgrade"),
        (_base(("Upgrade", "websocket")), "ws_not_upgrade"),
        (_Headers(*upgrade_headers("127.0.0.1:8780", key="c2hvcnQ=")), "ws_bad_key"),
        (_Headers(*upgrade_headers("127.0.0.1:8780", key="not base64!")), "ws_bad_key"),
        (_base(("Sec-WebSocket-Version", "13")), "ws_version"),
    ],
)
def test_what_is_not_an_rfc6455_upgrade_is_refused(headers: _Headers, reason: str) -> None:
    refusal = ws_gate.decide(headers, POLICY, cookie=False)
    assert refusal is not None and refusal.reason == reason


def test_the_decision_is_the_same_for_the_same_headers() -> None:
    headers = _base(("Origin", EVIL))
    assert ws_gate.decide(headers, POLICY, cookie=True) == ws_gate.decide(headers, POLICY, cookie=True)
    assert ws_gate.decide(_base(), POLICY, cookie=False) is None
    assert ws_gate.decide(_base(("Origin", PROXY)), POLICY, cookie=True) is None
