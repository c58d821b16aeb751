"""No session outlives its door: REPL sessions opened, used and ended through the websocket and
the SSH port, again and again, leave nothing of themselves in memory.

What is left is counted on the heap itself (``gc.get_objects()`` after a full collection), never
from the console's own bookkeeping: every object a session is made of, its namespace dict (found
by a name each session defines), its threads and its recording's open file. Sessions end every
way they can: the client closes, the operator types ``exit()`` or Ctrl-D, the connection drops,
the login is logged out or expires, an SSH shell idles out. Lines that fail (``sys.last_*``),
Tab completions (jedi, executor threads) and plain lines are run on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.application import Application

from opsconsole.console import Console
from opsconsole.repl.asciicast import CastRecorder
from opsconsole.repl.bridge import TerminalBridge
from opsconsole.repl.interrupt import Interrupter
from opsconsole.repl.keyboard import Keyboard
from opsconsole.repl.loop import ContextExecutor, SessionLoop
from opsconsole.repl.output import SessionOutput
from opsconsole.repl.session import ReplSession
from opsconsole.repl.shell import OpsRepl
from opsconsole.repl.stdin import LineReader
from opsconsole.transport.http.terminal_socket import TerminalHandler
from opsconsole.transport.ssh import ssh_server
from opsconsole.transport.ssh.shell_channel import ShellChannel
from testkit.session_cycles import PROBE, PROMPT, read_until, ssh_cycle, ws_cycle
from testkit.ssh_client import both_factors, open_shell, paramiko_client
from testkit.support import FakeClock, Operator, call, console_settings, login_token, rss
from testkit.terminal_client import Term

WARM_UP = 5
RSS_SLACK = 8 * 1024 * 1024
PER_SESSION: tuple[type, ...] = (
    ReplSession,
    OpsRepl,
    Application,
    TerminalBridge,
    Keyboard,
    SessionOutput,
    LineReader,
    Interrupter,
    SessionLoop,
    ContextExecutor,
    CastRecorder,
    TerminalHandler,
    ShellChannel,
    ssh_server.AuditedTransport,  # the server side of an SSH connection (the client is a plain Transport)
)
# session, executor, interrupt-timer, SSH reader and SSH transport threads (not "opsconsole-ssh",
# the accept thread, which lives as long as the console)
THREAD_PREFIXES = ("opsconsole-repl-", "opsconsole-ssh-")


@pytest.fixture
def churn_console(tmp_path: Path, keys_dir: Path, clock: FakeClock) -> Iterator[Console]:
    """Both doors on one console: the websocket and the SSH port."""
    c = Console(console_settings(tmp_path, keys_dir, ssh_port=0), clock=clock).start()
    yield c
    c.stop()


# -- counting what is left --------------------------------------------------------------------------


def _session_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIXES)]


def _open_casts(console: Console) -> list[str]:
    casts = str(console.settings.state_dir / "casts")
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd listing itself, closed meanwhile
        if target.startswith(casts):
            found.append(target)
    return found


# What was alive before the test began (left by another test of this process, whose finding it
# is): set aside, and held so that no object of this test can take one of their ids.
_earlier: list[object] = []


def _of_a_session(obj: object) -> bool:
    return isinstance(obj, PER_SESSION) or (type(obj) is dict and PROBE in obj)


@pytest.fixture(autouse=True)
def _set_aside_earlier_sessions() -> Iterator[None]:
    gc.collect()
    _earlier[:] = [o for o in gc.get_objects() if _of_a_session(o)] + _session_threads()
    yield
    _earlier.clear()


def leftovers(console: Console) -> Counter[str]:
    """What is left of this test's REPL sessions after a full collection, by kind (empty: nothing)."""
    gc.collect()
    earlier = {id(o) for o in _earlier}
    left: Counter[str] = Counter()
    for obj in gc.get_objects():
        if id(obj) in earlier or not _of_a_session(obj):
            continue
        left["namespace dict" if type(obj) is dict else type(obj).__qualname__] += 1
    left.update(f"thread {t.name}" for t in _session_threads() if id(t) not in earlier)
    left.update(f"open recording {path}" for path in _open_casts(console))
    return left


def _join_session_threads(deadline: float) -> None:
    # A function of its own: a loop variable left in settle()'s frame would keep the last
    # thread, and through its target the session's objects, alive.
    for thread in _session_threads():
        if thread.ident is not None:  # one being started right now: the next round joins it
            thread.join(max(0.0, deadline - time.monotonic()))


def settle(console: Console, token: str | None = None, timeout: float = 30.0) -> Counter[str]:
    """Wait until nothing of any session is left, or the deadline; returns what is left.

    Waits on what teardown runs on: the session threads (joined), then the console's IO loop
    (a request served there means every callback queued before it has run).
    """
    deadline = time.monotonic() + timeout
    while True:
        _join_session_threads(deadline)
        if token is not None:
            status, _ = call(console.url, "GET", "/ops/whoami", token=token)
            assert status == 200
        left = leftovers(console)
        if not left or time.monotonic() >= deadline:
            return left


def held_rss() -> int:
    """RSS once glibc has handed back the free pages of its heaps (``malloc_trim``).

    Each thread allocates from one of up to 8 × cores glibc arenas, and an arena keeps the free
    memory of the biggest session it has hosted: after five sessions not every arena has had
    its turn, and raw RSS creeps up to a plateau that says where threads landed, not what the
    sessions keep. Trimmed, RSS is what the process holds (objects plus fragmentation).
    """
    with contextlib.suppress(AttributeError, OSError):  # not glibc: raw RSS
        ctypes.CDLL(None).malloc_trim(0)
    return rss()


# -- the observation and the churn ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_obs1_closed_terminal_does_not_stay_in_memory(
    churn_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    # As reported: open a terminal (web, then SSH), run one line, close it; ten times each.
    alice = operators["alice"]
    token = login_token(churn_console.url, alice, clock())
    for i in range(10):
        term = await Term.open(churn_console.url, token)
        await term.expect(PROMPT)
        await term.run(f"{PROBE} = {i}", PROMPT)
        await term.close()
    assert settle(churn_console, token) == Counter()
    for i in range(10):
        clock.advance(30)  # each TOTP step logs a user in once
        transport, channel = open_shell(churn_console, alice, clock)
        channel.sendall(f"{PROBE} = {i}; print('ran', {PROBE} * 2)\r".encode())
        read_until(channel, f"ran {i * 2}".encode())
        transport.close()
    assert settle(churn_console, token) == Counter()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_fifty_websocket_sessions_leave_nothing_and_rss_stays_flat(
    churn_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    token = login_token(churn_console.url, operators["alice"], clock())
    for i in range(WARM_UP):
        await ws_cycle(churn_console.url, token, i)
    assert settle(churn_console, token) == Counter()
    warm = held_rss()
    for i in range(WARM_UP, 50):
        await ws_cycle(churn_console.url, token, i)
    assert settle(churn_console, token) == Counter()
    grown = held_rss() - warm
    assert grown < RSS_SLACK, f"RSS grew {grown / 2**20:.1f} MiB over {50 - WARM_UP} sessions"


@pytest.mark.slow
def test_twenty_ssh_sessions_leave_nothing_and_rss_stays_flat(
    churn_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    alice = operators["alice"]
    for i in range(WARM_UP):
        ssh_cycle(churn_console, alice, clock, i)
    assert settle(churn_console) == Counter()
    warm = held_rss()
    for i in range(WARM_UP, 20):
        ssh_cycle(churn_console, alice, clock, i)
    assert settle(churn_console) == Counter()
    grown = held_rss() - warm
    assert grown < RSS_SLACK, f"RSS grew {grown / 2**20:.1f} MiB over {20 - WARM_UP} sessions"


# -- logout and expiry end the session too ----------------------------------------------------------


@pytest.mark.asyncio
async def test_logout_and_expiry_end_the_terminal_and_free_its_session(
    churn_console: Console, operators: dict[str, Operator], clock: FakeClock
) -> None:
    alice = operators["alice"]
    token = login_token(churn_console.url, alice, clock())
    term = await Term.open(churn_console.url, token)
    await term.expect(PROMPT)
    await term.run(f"{PROBE} = 'logout'", PROMPT)
    status, _ = await asyncio.get_running_loop().run_in_executor(
        None, lambda: call(churn_console.url, "POST", "/ops/auth/logout", {}, token=token)
    )
    assert status == 200
    assert await term.closed() == 1008
    assert settle(churn_console) == Counter()

    clock.advance(30)
    token = login_token(churn_console.url, alice, clock())
    term = await Term.open(churn_console.url, token)
    await term.expect(PROMPT)
    await term.run(f"{PROBE} = 'expiry'", PROMPT)
    clock.advance(churn_console.settings.session_idle_timeout + 60)
    assert await term.closed() == 1008
    assert settle(churn_console) == Counter()


def test_an_idle_ssh_shell_ends_and_frees_its_session(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, operators: dict[str, Operator]
) -> None:
    console = Console(console_settings(tmp_path, keys_dir, ssh_port=0, session_idle_timeout=1), clock=clock)
    console.start()
    try:
        alice = operators["alice"]
        transport = paramiko_client(console)
        try:
            both_factors(transport, alice.user, alice.key, alice.code(clock()))
            channel = transport.open_session(timeout=5)
            channel.get_pty(width=100, height=30)
            channel.invoke_shell()  # and never a keystroke: on a slow machine, maybe not even a prompt
            channel.settimeout(15)  # a shell that never ends fails the test instead of hanging it
            seen = b""
            deadline = time.monotonic() + 15
            while data := channel.recv(65536):
                assert time.monotonic() < deadline, seen[-500:]
                seen += data
            assert b"session closed: no input for 1 s" in seen
        finally:
            transport.close()
        assert settle(console) == Counter()
    finally:
        console.stop()


@pytest.mark.asyncio
async def test_stopping_the_console_frees_an_open_terminal(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, operators: dict[str, Operator]
) -> None:
    # The console stops while a terminal is still connected: the handler's pending task must not
    # stay in Tornado's process-wide IOLoop._pending_tasks with the session.
    console = Console(console_settings(tmp_path, keys_dir), clock=clock).start()
    try:
        token = login_token(console.url, operators["alice"], clock())
        term = await Term.open(console.url, token)
        await term.expect(PROMPT)
        await term.run(f"{PROBE} = 'open at stop'", PROMPT)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, console.stop)
    await term.closed()
    assert settle(console) == Counter()
