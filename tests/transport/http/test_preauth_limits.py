"""The HTTP door's pre-auth limits over real loopback sockets: the unauthenticated request
rate (429 before any parsing), the per-source connection cap and what frees a slot, and the
pre-auth and body timeouts."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

from opsconsole.console import Console
from testkit.support import FakeClock, Operator, audit_events, call, console_settings, login_token, wait_until


def _failures(console: Console) -> int:
    return sum(1 for e in audit_events(console.settings.audit_path) if e["event"] == "auth.failure")


def test_unauthenticated_requests_beyond_the_rate_get_429_before_any_parsing(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    # 3 at once, then one every 100 s: the test never waits long enough for a refill.
    settings = console_settings(tmp_path, keys_dir, unauthenticated_rate=0.01, unauthenticated_burst=3)
    with Console(settings, clock=clock).start() as console:
        token = login_token(console.url, operators["alice"], clock())  # challenge + login: 2
        assert call(console.url, "POST", "/ops/auth/challenge", {"user": "bob"})[0] == 200  # 3
        failures = _failures(console)
        # Past the rate: a body that is not even JSON gets 429, not 400 ...
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        try:
            conn.request("POST", "/ops/auth/login", body=b"{not json", headers={"Content-Type": "text/plain"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 429, body
        assert int(resp.headers["Retry-After"]) >= 1
        assert b'"error":"rate_limited"' in body
        # ... a login with a forged signature is not checked (no failure is audited) ...
        forged = {"user": "alice", "nonce": "n", "signature": "-----BEGIN SSH SIGNATURE-----", "totp": "1"}
        assert call(console.url, "POST", "/ops/auth/login", forged)[0] == 429
        assert _failures(console) == failures
        # ... and a missing or unknown token gets 429 instead of 401.
        assert call(console.url, "GET", "/ops/whoami")[0] == 429
        assert call(console.url, "GET", "/ops/whoami", token="not-a-token")[0] == 429
        assert call(console.url, "GET", "/ops/no-such-route")[0] == 429
        # A valid session is never limited, and other sources have their own budget.
        assert all(call(console.url, "GET", "/ops/whoami", token=token)[0] == 200 for _ in range(10))
        assert call(console.url, "POST", "/ops/auth/challenge", {"user": "a"}, source="127.0.0.3")[0] == 200


def _partial_request(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(b"POST /ops/auth/challenge HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    return s


def test_an_authenticated_connection_no_longer_counts_against_its_source(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    settings = console_settings(tmp_path, keys_dir, max_unauthenticated_per_source=2, header_timeout=30)
    with Console(settings, clock=clock).start() as console:
        token = login_token(console.url, operators["alice"], clock())
        admission = console.http_admission
        # the login's connections closed
        wait_until(lambda: admission.pending("127.0.0.1") == 0, 30, "no pending connection")
        kept = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        held: list[socket.socket] = []
        try:
            kept.request("GET", "/ops/whoami", headers={"Authorization": f"Bearer {token}"})
            assert kept.getresponse().read() and admission.pending("127.0.0.1") == 0
            held = [_partial_request(console.port) for _ in range(2)]
            wait_until(lambda: admission.pending("127.0.0.1") == 2, 30, "two pending connections")
            # the source's share is taken: the next one is closed at accept, unanswered
            with socket.create_connection(("127.0.0.1", console.port), timeout=10) as extra:
                assert extra.recv(1) == b""
            assert call(console.url, "GET", "/ops/whoami", token=token, source="127.0.0.3")[0] == 200
            # the authenticated connection still serves, on the same socket
            sock = kept.sock
            kept.request("GET", "/ops/whoami", headers={"Authorization": f"Bearer {token}"})
            assert kept.getresponse().status == 200 and kept.sock is sock
        finally:
            kept.close()
            for s in held:
                s.close()
        assert dict(admission.stats().refused) == {"source_cap": 1}


def test_a_connection_that_never_authenticates_is_closed_after_the_preauth_timeout(
    tmp_path: Path, keys_dir: Path, operators: dict[str, Operator], clock: FakeClock
) -> None:
    # keep-alive idling is allowed for 30 s; only the pre-auth limit (1 s) can close these
    settings = console_settings(tmp_path, keys_dir, preauth_timeout=1, header_timeout=30)
    with Console(settings, clock=clock).start() as console:
        token = login_token(console.url, operators["alice"], clock())
        anonymous = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        operator = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
        try:
            anonymous.request("POST", "/ops/auth/challenge", body=b'{"user":"alice"}')
            assert anonymous.getresponse().read()
            operator.request("GET", "/ops/whoami", headers={"Authorization": f"Bearer {token}"})
            assert operator.getresponse().read()
            assert anonymous.sock is not None
            anonymous.sock.settimeout(10)
            assert anonymous.sock.recv(1) == b""  # closed by the server after about a second
            sock = operator.sock
            operator.request("GET", "/ops/whoami", headers={"Authorization": f"Bearer {token}"})
            assert operator.getresponse().status == 200 and operator.sock is sock
        finally:
            anonymous.close()
            operator.close()


def test_a_body_that_stalls_is_cut_by_the_body_timeout(tmp_path: Path, keys_dir: Path) -> None:
    settings = console_settings(tmp_path, keys_dir, body_timeout=0.3)
    with (
        Console(settings).start() as console,
        socket.create_connection(("127.0.0.1", console.port), timeout=10) as s,
    ):
        s.sendall(b"POST /ops/auth/challenge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert s.recv(1) == b""
