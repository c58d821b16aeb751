"""The demo host's log under a flood of unauthenticated requests from four loopback sources: a
handful of log lines, and every refused login accounted for in the audit log."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from pathlib import Path

from testkit.demo_process import run_demo
from testkit.support import audit_events

SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _flood(url: str, source: str, until: float, statuses: Counter[tuple[str, str, int]]) -> None:
    # One keep-alive connection per source, bound to that loopback address; reconnects when
    # the console closes it. Unauthenticated: a made-up token, and logins that cannot succeed.
    port = int(url.rsplit(":", 1)[1])
    login = json.dumps({"user": "mallory", "nonce": "00" * 16, "signature": "x", "totp": "123456"})
    conn: http.client.HTTPConnection | None = None
    n = 0
    while time.monotonic() < until:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        try:
            if n % 2:
                conn.request("POST", "/ops/auth/login", login, {"Content-Type": "application/json"})
                kind = "login"
            else:
                conn.request("GET", "/ops/threads", headers={"Authorization": "Bearer not-a-token"})
                kind = "token"
            resp = conn.getresponse()
            resp.read()
            statuses[(source, kind, resp.status)] += 1
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = None
        n += 1
    if conn is not None:
        conn.close()


def test_obs5_log_is_not_an_attackers_megaphone(tmp_path: Path) -> None:
    """A 3 s flood of unauthenticated requests from 4 sources: a handful of log lines, and the
    audit log keeps each refused login either one by one (the first 20 per reason and source
    in a window) or in counted summaries, adding up to exactly the refusals made."""
    state = tmp_path / "demo"
    statuses: Counter[tuple[str, str, int]] = Counter()
    seconds = 3.0
    gen = run_demo(state, log_in=False)
    demo = next(gen)
    try:
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_flood, args=(demo.url, source, until, statuses)) for source in SOURCES
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)
    finally:
        for _ in gen:  # stops the demo (SIGINT) and collects its output
            pass
    refused = sum(n for (_, _, status), n in statuses.items() if status in (401, 429))
    assert refused >= 200, statuses  # a flood, even on a loaded machine
    assert "Traceback" not in demo.errors, demo.errors
    lines = [line for line in demo.errors.splitlines() if line.strip()]
    # Per source and cause (401, 429) a first line and a count line: a few lines a second.
    assert len(lines) <= 24, "\n".join(lines)
    assert any("more in the last" in line for line in lines), "\n".join(lines)

    events = audit_events(state / "state" / "audit.jsonl")
    one_by_one: Counter[tuple[str, str]] = Counter()
    summarised: Counter[tuple[str, str]] = Counter()
    for e in events:
        f = e["fields"]
        if e["event"] == "auth.failure" and f["source"] in SOURCES:
            one_by_one[(f["source"], f["reason"])] += 1
        elif e["event"] == "auth.summary" and f["of"] == "auth.failure":
            summarised[(f["source"], f["reason"])] += f["count"]
    assert all(n <= 20 for n in one_by_one.values()), one_by_one
    for source in SOURCES:
        logins = statuses[(source, "login", 401)]
        recorded = sum(n for (s, _), n in one_by_one.items() if s == source)
        folded = sum(n for (s, _), n in summarised.items() if s == source)
        assert recorded + folded == logins, (source, recorded, folded, logins)
        reasons = {r for s, r in one_by_one if s == source}
        if logins > 20 * len(reasons):  # some (reason, source) went past its burst: folded
            assert folded > recorded, (source, one_by_one, summarised)
    limited = sum(n for (_, _, status), n in statuses.items() if status == 429)
    assert summarised or limited, "the refused logins were neither folded nor rate-limited"
