"""WS /ops/terminal on the real console thread: the REPL works, sessions stay apart, Ctrl-C,
and every refusal (with its audit event)."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import threading
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from opsconsole.console import Console
from testkit.support import (
    FakeClock,
    Operator,
    audit_events,
    call,
    login_token,
    repl_sessions_ended,
    wait_until,
)
from testkit.terminal_client import Term

pytestmark = pytest.mark.asyncio
PROMPT = r">>> ?$"


@pytest.fixture
def op_token(console: Console, operators: dict[str, Operator], clock: FakeClock) -> str:
    return login_token(console.url, operators["alice"], clock())


def refusals(console: Console) -> list[str]:
    return [
        e["fields"]["reason"]
        for e in audit_events(console.settings.audit_path)
        if e["event"] == "auth.refused"
    ]


async def ready(console: Console, token: str, **kw: str) -> Term:
    term = await Term.open(console.url, token, **kw)
    await term.expect(PROMPT)
    return term


async def test_one_plus_one_and_top_level_await(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    try:
        await term.run("1+1", r"^2$")
        await term.run("import asyncio", PROMPT)
        await term.run("await asyncio.sleep(0.1, result=42)", r"^42$")
    finally:
        await term.close()


async def test_two_sessions_never_see_each_other(console: Console, op_token: str) -> None:
    a, b = await ready(console, op_token), await ready(console, op_token)
    try:
        await a.send("print('from' + '-alpha')")
        await b.send("print('from' + '-bravo')")
        await a.send("\r")
        await b.send("\r")
        await a.expect(r"^from-alpha$")
        await b.expect(r"^from-bravo$")
        await a.run("x = 'only-a'", PROMPT)
        await b.run("x", r"NameError")
        # each session's own output is in order: past these, anything crossed over would show
        await a.run("'fence' + '-a'", r"^'fence-a'$")
        await b.run("'fence' + '-b'", r"^'fence-b'$")
        assert "bravo" not in a.text and "alpha" not in b.text
        assert "only-a" not in b.text
    finally:
        await a.close()
        await b.close()


_GATES: dict[str, threading.Event] = {}  # what a REPL line in a test waits on, by test


async def test_a_blocking_eval_freezes_only_its_own_session(
    console: Console, op_token: str, tmp_path: Path
) -> None:
    # a's eval waits (at most 60 s) on an Event of this module: the REPL runs in this process
    gate = _GATES[tmp_path.name] = threading.Event()
    a, b = await ready(console, op_token), await ready(console, op_token)
    try:
        await a.run("import sys", PROMPT)
        start = len(a.text)
        hold = f"sys.modules[{__name__!r}]._GATES[{tmp_path.name!r}].wait(60)"
        await a.send(f"(print('hold' + 'ing'), {hold})[1]\r")
        await a.expect(r"^holding", start=start)
        # b answers, and the HTTP port too, while a cannot have finished: the gate is shut
        await b.run("2+2", r"^4$", timeout=30)
        status, _ = await asyncio.get_running_loop().run_in_executor(
            None, lambda: call(console.url, "GET", "/ops/threads", token=op_token)
        )
        assert status == 200
        assert "True" not in a.text[start:]
        gate.set()
        await a.expect(r"^True", start=start, timeout=30)
    finally:
        gate.set()
        _GATES.pop(tmp_path.name, None)
        await a.close()
        await b.close()


@pytest.fixture
def started() -> threading.Event:
    """Set by the REPL line under test once its eval runs (the REPL shares this process)."""
    return threading.Event()


@pytest.fixture
def repl_namespace(started: threading.Event) -> dict[str, object]:
    return {"started": started}


# Each line sets ``started`` once as its eval begins (a call in the loop would allocate, and a
# collection's weakref callbacks would then be where the interrupt lands).
@pytest.mark.parametrize(
    "line", ["started.set() or await asyncio.sleep(100)", "started.set() or exec('while True: pass')"]
)
async def test_ctrl_c_interrupts_and_the_prompt_returns(
    console: Console, op_token: str, started: threading.Event, line: str
) -> None:
    term = await ready(console, op_token)
    try:
        await term.run("import asyncio", PROMPT)
        await term.send(line + "\r")
        assert await asyncio.to_thread(started.wait, 10), "the eval never started"
        start = len(term.text)
        await term.send("\x03")
        await term.expect(r"(Interrupt|Cancelled)", timeout=5, start=start)
        await term.run("1+1", r"^2$")
    finally:
        await term.close()


async def test_each_line_is_audited_before_it_runs(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    try:
        await term.run("raise ValueError('audited-first')", r"^ValueError: audited-first")
    finally:
        await term.close()
    lines = [e for e in audit_events(console.settings.audit_path) if e["event"] == "repl.input"]
    assert any("audited-first" in e["fields"]["text"] for e in lines)
    assert lines[-1]["fields"]["user"] == "alice"


async def test_session_is_recorded_as_asciicast(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    await term.run("print('on the record')", r"on the record")
    await term.close()
    assert await asyncio.to_thread(repl_sessions_ended), "the session never ended"  # its cast is closed
    casts = list((console.settings.state_dir / "casts").glob("*.cast"))
    assert casts
    cast = casts[0]
    assert cast.stat().st_mode & 0o777 == 0o600
    header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    times = [e[0] for e in events]
    assert times == sorted(times)
    assert all(e[1] in ("o", "r") and isinstance(e[2], str) for e in events)
    assert "on the record" in "".join(e[2] for e in events if e[1] == "o")


async def test_resize_reaches_the_repl(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    try:
        # the resize and the keys after it reach the session loop in the order they were sent
        await term.frame("set_size", 40, 132)
        await term.run("import shutil, os", PROMPT)
        await term.run("print(get_ptpython().app.output.get_size())", r"rows=40, columns=132")
    finally:
        await term.close()


async def test_the_switch_interval_is_short_only_while_a_terminal_is_open(
    console: Console, op_token: str
) -> None:
    before = sys.getswitchinterval()
    assert console.settings.repl_switch_interval < before
    term = await ready(console, op_token)
    try:
        assert sys.getswitchinterval() == pytest.approx(console.settings.repl_switch_interval)
    finally:
        await term.close()
    # the session thread ends after the websocket closes
    await asyncio.to_thread(wait_until, lambda: sys.getswitchinterval() == before, 5, "the interval restored")


# -- refusals, each with an audit event ---------------------------------------------------


async def _refused(url: str, token: str | None, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(tornado.httpclient.HTTPClientError) as info:
        await Term.open(url, token, headers=headers)
    return info.value.code


async def test_no_credentials_is_401(console: Console) -> None:
    assert await _refused(console.url, None) == 401
    assert "ws_unauthorized" in refusals(console)


async def test_viewer_is_403(console: Console, operators: dict[str, Operator], clock: FakeClock) -> None:
    viewer = login_token(console.url, operators["bob"], clock())
    assert await _refused(console.url, viewer) == 403
    assert "ws_forbidden" in refusals(console)


async def test_foreign_origin_is_403(console: Console, op_token: str) -> None:
    assert await _refused(console.url, op_token, {"Origin": "http://evil.example"}) == 403
    assert "ws_origin" in refusals(console)


async def test_same_origin_is_allowed(console: Console, op_token: str) -> None:
    term = await ready(console, op_token, headers={"Origin": console.url})
    await term.close()


async def test_mismatched_host_is_403(console: Console, op_token: str) -> None:
    assert await _refused(console.url, op_token, {"Host": f"attacker.example:{console.port}"}) == 403
    assert "ws_host" in refusals(console)


async def test_too_big_message_is_closed_1009(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    await term.send("x" * (65 * 1024))
    assert await term.closed() == 1009
    await asyncio.to_thread(
        wait_until, lambda: "ws_message_too_big" in refusals(console), 5, "the refusal audited"
    )


async def test_malformed_message_is_closed_1008(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    await term.conn.write_message('["rm", "-rf"]')
    assert await term.closed() == 1008
    assert "ws_malformed_message" in refusals(console)


async def test_message_flood_is_closed_1008(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    for _ in range(1000):  # bounded: far past 2 × the 200/s default burst
        if term.conn.protocol is None:
            break
        await term.frame("set_size", 24, 80)
    assert await term.closed() == 1008
    assert "ws_rate_limit" in refusals(console)


async def test_logout_closes_the_terminal_1008(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: call(console.url, "POST", "/ops/auth/logout", {}, token=op_token)
    )
    # the terminal is otherwise idle and far from any timeout, so the logout is what closed it
    assert await term.closed(timeout=30) == 1008
    assert "ws_session_expired" in refusals(console)


async def test_expiry_closes_the_terminal(console: Console, op_token: str, clock: FakeClock) -> None:
    term = await ready(console, op_token)
    clock.advance(16 * 60)  # past the 15 min idle timeout
    assert await term.closed(timeout=30) == 1008


async def test_slow_reader_is_dropped_and_memory_stays_bounded(console: Console, op_token: str) -> None:
    term = await ready(console, op_token)
    rss_before = _rss()
    # 100 MB of output; this client never reads another frame.
    await term.send("for _ in range(100): print('y' * 1_000_000)\r\r")
    await asyncio.to_thread(
        wait_until, lambda: "ws_slow_client" in refusals(console), 60, "the slow client dropped"
    )
    growth = _rss() - rss_before
    assert growth < 64 * 1024 * 1024, f"RSS grew by {growth >> 20} MiB"
    await term.close()
    assert await asyncio.to_thread(repl_sessions_ended), "the dropped REPL session never ended"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
