"""Browser tickets: single use, short-lived, traded for a strict HttpOnly cookie."""

from __future__ import annotations

import json

import pytest

from opsconsole.console import Console
from testkit.support import FakeClock, Operator, audit_events, call, login_token


@pytest.fixture
def op_token(console: Console, operators: dict[str, Operator], clock: FakeClock) -> str:
    return login_token(console.url, operators["alice"], clock())


def test_ticket_is_single_use_and_expires(console: Console, op_token: str, clock: FakeClock) -> None:
    status, link = call(console.url, "POST", "/ops/auth/ticket", {}, token=op_token)
    assert status == 200 and link["expires_in"] <= 60
    assert link["url"].startswith(console.url + "/ops/ui/#ticket=")
    redeem = {"ticket": link["ticket"]}
    status, me = call(console.url, "POST", "/ops/auth/redeem", redeem, headers={"Origin": console.url})
    assert (status, me["user"]) == (200, "alice")
    assert call(console.url, "POST", "/ops/auth/redeem", redeem)[0] == 401  # reused
    _, late = call(console.url, "POST", "/ops/auth/ticket", {}, token=op_token)
    clock.advance(61)
    assert call(console.url, "POST", "/ops/auth/redeem", {"ticket": late["ticket"]})[0] == 401  # expired
    reasons = [
        e["fields"]["reason"]
        for e in audit_events(console.settings.audit_path)
        if e["event"] == "auth.failure"
    ]
    assert "ticket_unknown" in reasons and "ticket_expired" in reasons


def test_redeem_sets_a_strict_httponly_cookie(console: Console, op_token: str) -> None:
    import http.client

    _, link = call(console.url, "POST", "/ops/auth/ticket", {}, token=op_token)
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request(
        "POST",
        "/ops/auth/redeem",
        json.dumps({"ticket": link["ticket"]}),
        {"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    resp.read()
    cookie = resp.getheader("Set-Cookie") or ""
    conn.close()
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ops/" in cookie
    assert "Secure" not in cookie  # loopback http only
    token = cookie.split(";")[0].split("=", 1)[1]
    assert (
        call(console.url, "GET", "/ops/whoami", headers={"Cookie": f"opsconsole_session={token}"})[0] == 200
    )
    # A cookie never authorises a cross-origin state change.
    status, _ = call(
        console.url,
        "POST",
        "/ops/auth/logout",
        {},
        headers={"Cookie": f"opsconsole_session={token}", "Origin": "http://evil.example"},
    )
    assert status == 403
