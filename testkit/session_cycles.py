"""One REPL session through each door, used and ended in a way picked by its number: the
cycles of ``tests/acceptance/test_session_churn.py`` and ``bench/session_churn.py``."""

from __future__ import annotations

import time

import paramiko

from opsconsole.console import Console
from testkit.ssh_client import open_shell
from testkit.support import FakeClock, Operator
from testkit.terminal_client import Term

PROMPT = r">>> ?$"
PROBE = "churn_probe"  # a name every session defines: it finds the session's namespace on the heap


async def _tab_complete(term: Term, i: int) -> None:
    # jedi on the session's executor thread; the one name it can complete is the probe
    start = len(term.text)
    await term.send(PROBE[:-2] + "\t")
    await term.expect(PROBE[:-2] + r"(?:.|\n)*" + PROBE[-2:], start=start)  # "be" drawn in after it
    await term.run("", rf"^{i}$")


async def ws_cycle(url: str, token: str, i: int) -> None:
    """Open a terminal, run a line or a few, and end it in one of four ways (by ``i``)."""
    term = await Term.open(url, token)
    await term.expect(PROMPT)
    await term.run(f"{PROBE} = {i}", PROMPT)
    if i % 3 == 1:
        await term.run("1/0", r"ZeroDivisionError")  # sets the process-wide sys.last_*
    if i % 5 == 2:
        await _tab_complete(term, i)
    ending = i % 4
    if ending == 0:
        await term.close()  # the client's close frame
    elif ending == 1:
        await term.send("exit()\r")  # the REPL ends; the server closes
        assert await term.closed() == 1000
    elif ending == 2:
        await term.send("\x04")  # Ctrl-D at an empty prompt
        assert await term.closed() == 1000
    else:
        term.conn.stream.close()  # the connection drops: no close frame
        assert await term.closed() is None  # what was in flight, then the end; no close code


def read_until(channel: paramiko.Channel, marker: bytes, seen: bytes = b"") -> bytes:
    deadline = time.monotonic() + 15
    while marker not in seen:
        assert time.monotonic() < deadline, seen[-500:]
        data = channel.recv(65536)
        assert data, f"closed before {marker!r}: {seen[-500:]!r}"
        seen += data
    return seen


def ssh_cycle(console: Console, op: Operator, clock: FakeClock, i: int) -> None:
    """Log in, open a shell, run a line or two, and end it in one of three ways (by ``i``)."""
    clock.advance(30)  # each TOTP step logs a user in once
    transport, channel = open_shell(console, op, clock)
    try:
        channel.sendall(f"{PROBE} = {i}; print('ran', {PROBE} * 2)\r".encode())
        read_until(channel, f"ran {i * 2}".encode())
        if i % 3 == 1:
            channel.sendall(b"1/0\r")
            read_until(channel, b"ZeroDivisionError")
        ending = i % 3
        if ending in {0, 1}:
            channel.sendall(b"\x04" if ending == 0 else b"exit()\r")
            deadline = time.monotonic() + 15
            while not channel.exit_status_ready():
                assert time.monotonic() < deadline, "the shell did not end"
                channel.recv(65536)
            assert channel.recv_exit_status() == 0
    finally:
        transport.close()  # ending 2: the connection drops with the shell open
