"""REPL sessions opened and ended again and again against a real console: does the memory come back?

1. websocket, against the demo (``opsconsole demo``, a process of its own, as a service is):
   sessions opened with the tests' asyncio client, used (a line; every 3rd also an error, every
   5th a Tab completion) and ended in turn by a close frame, ``exit()``, Ctrl-D and a dropped
   connection (``testkit/session_cycles.py``). After every 100, a session of its own runs
   ``gc.collect()`` in the demo and counts the live ``ReplSession`` objects (itself left out),
   and the demo's RSS is read from /proc: raw, and "held" after ``malloc_trim(0)`` (glibc keeps
   freed heap pages in per-thread arenas; held is what the process still uses).
2. SSH, with a paramiko client, against a console in this process: a TOTP step logs a user in
   once, so hundreds of SSH logins need the injected clock the tests use. RSS is this process's
   (the paramiko client's share included).
3. Side by side: 50 websocket sessions against a console in a child process, with the cut of
   ``opsconsole.repl.filter_cache`` (prompt_toolkit's filter caches) and without it (prompt_toolkit
   as shipped: what the issue measured), rounds alternating, medians and their ratio. The cut is
   process-wide and for good, hence a child process per round.

Marks start after 5 warm-up sessions (imports, jedi's caches). Each line: sessions so far, live
ReplSession, RSS, held RSS, the held growth of the last 100 and its ratio to the first 100's
growth; then the growth per session after the first 100.

    .venv/bin/python bench/session_churn.py [WS_SESSIONS [SSH_SESSIONS]]    (default 500 and 200)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsconsole.console import Console
from opsconsole.repl.session import ReplSession
from testkit.demo_process import run_demo
from testkit.session_cycles import PROMPT, ssh_cycle, ws_cycle
from testkit.support import FakeClock, Operator, console_settings, keygen, login_token, rss, write_keys_dir
from testkit.terminal_client import Term

STEP = 100
WARM_UP = 5  # sessions before the first mark: each kind of line and ending once (imports, jedi)
MIB = 2**20
SESSION_THREADS = ("opsconsole-repl-", "opsconsole-ssh-")
# Run in the demo by a session of its own: wait for the other sessions' threads (the last one
# may still be ending), collect, count the live sessions but this one.
COUNT_LINE = (
    "import gc as _gc, threading as _t; from opsconsole.repl.session import ReplSession as _R; "
    "_me = _t.current_thread().name; "
    "[_x.join(10) for _x in _t.enumerate() if _x.name.startswith('opsconsole-repl-') "
    "and not _x.name.startswith(_me) and _x.ident]; "
    "_gc.collect(); print('live', sum(type(_o) is _R for _o in _gc.get_objects()) - 1)"
)
TRIM_LINE = "import ctypes as _c; _c.CDLL(None).malloc_trim(0)"


@dataclass(frozen=True)
class Mark:
    sessions: int
    live: int
    rss: int
    held: int


def report(door: str, marks: list[Mark]) -> None:
    print(f"\n{door}")
    print(f"{'sessions':>8} {'live':>5} {'RSS MiB':>8} {'held MiB':>9} {'held +/100':>11} {'ratio':>6}")
    print(f"(marks from the {WARM_UP}th session on: the first {WARM_UP} warm up imports and jedi)")
    first = marks[1].held - marks[0].held if len(marks) > 1 else 0
    for before, mark in zip([None, *marks], marks, strict=False):
        grown = "" if before is None else f"{(mark.held - before.held) / MIB:+.2f}"
        ratio = f"{(mark.held - before.held) / first:.2f}" if before is not None and first > 0 else ""
        print(
            f"{mark.sessions:>8} {mark.live:>5} {mark.rss / MIB:>8.1f} {mark.held / MIB:>9.1f} "
            f"{grown:>11} {ratio:>6}"
        )
    if len(marks) > 2:
        later = marks[-1].held - marks[1].held
        per = later / (marks[-1].sessions - marks[1].sessions)
        print(f"after the first {STEP}: {per / 1024:+.1f} KiB held per session")


# -- the websocket, against the demo process -------------------------------------------------------


async def ws_mark(url: str, token: str, pid: int, sessions: int) -> Mark:
    term = await Term.open(url, token)
    try:
        await term.expect(PROMPT)
        start = len(term.text)
        await term.send(COUNT_LINE + "\r")
        live = int((await term.expect(r"^live (\d+)$", 60, start=start)).group(1))
        raw = rss(pid)
        await term.run(TRIM_LINE, PROMPT)
        return Mark(sessions, live, raw, rss(pid))
    finally:
        await term.close()


async def websocket(total: int) -> list[Mark]:
    with tempfile.TemporaryDirectory() as state:
        runner = run_demo(Path(state) / "demo")
        demo = next(runner)
        try:
            pid = demo.proc.pid
            for i in range(WARM_UP):
                await ws_cycle(demo.url, demo.token, i)
            marks = [await ws_mark(demo.url, demo.token, pid, WARM_UP)]
            for i in range(WARM_UP, total + WARM_UP):
                await ws_cycle(demo.url, demo.token, i)
                if (i + 1 - WARM_UP) % STEP == 0:
                    marks.append(await ws_mark(demo.url, demo.token, pid, i + 1))
                    print(f"  websocket: {i + 1} sessions", file=sys.stderr)
            return marks
        finally:
            next(runner, None)


# -- SSH, against a console in this process --------------------------------------------------------


def held_here() -> int:
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)
    return rss()


def local_mark(sessions: int) -> Mark:
    for thread in threading.enumerate():  # the last session may still be ending
        if thread.name.startswith(SESSION_THREADS) and thread.ident is not None:
            thread.join(10)
    del thread
    gc.collect()
    live = sum(type(o) is ReplSession for o in gc.get_objects())
    raw = rss()
    return Mark(sessions, live, raw, held_here())


def ssh(total: int) -> list[Mark]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        op = Operator("alice", "operator", keygen(root / "alice"))
        write_keys_dir(root / "keys", [op])
        clock = FakeClock()
        console = Console(console_settings(root, root / "keys", ssh_port=0), clock=clock).start()
        try:
            for i in range(WARM_UP):
                ssh_cycle(console, op, clock, i)
            marks = [local_mark(WARM_UP)]
            for i in range(WARM_UP, total + WARM_UP):
                ssh_cycle(console, op, clock, i)
                if (i + 1 - WARM_UP) % STEP == 0:
                    marks.append(local_mark(i + 1))
                    print(f"  SSH: {i + 1} sessions", file=sys.stderr)
            return marks
        finally:
            console.stop()


# -- with and without the filter-cache cut, side by side -------------------------------------------

SIDE_SESSIONS = 50
ROUNDS = 2


async def child_round(cut: bool) -> None:
    """One round in this (child) process: held growth per session and what is left, as JSON."""
    if not cut:
        from opsconsole.repl import filter_cache

        filter_cache.install = lambda: "not_needed"  # prompt_toolkit as shipped
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        op = Operator("alice", "operator", keygen(root / "alice"))
        write_keys_dir(root / "keys", [op])
        clock = FakeClock()
        console = Console(console_settings(root, root / "keys"), clock=clock).start()
        try:
            token = login_token(console.url, op, clock())
            for i in range(WARM_UP):
                await ws_cycle(console.url, token, i)
            before = local_mark(WARM_UP)
            for i in range(WARM_UP, WARM_UP + SIDE_SESSIONS):
                await ws_cycle(console.url, token, i)
            after = local_mark(WARM_UP + SIDE_SESSIONS)
        finally:
            console.stop()
    per = (after.held - before.held) / SIDE_SESSIONS
    print(json.dumps({"per_session": per, "live": after.live}))


def side_by_side() -> None:
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for cut in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, "--child", "cut" if cut else "as-shipped"],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            results[cut].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"\n{SIDE_SESSIONS} websocket sessions after {WARM_UP} warm-up ones, console in a child process, "
        f"{ROUNDS} rounds each"
    )
    medians = {}
    for cut, label in ((False, "prompt_toolkit as shipped"), (True, "with the filter-cache cut")):
        medians[cut] = statistics.median(r["per_session"] for r in results[cut])
        live = max(int(r["live"]) for r in results[cut])
        print(f"  {label:<27} held +{medians[cut] / 1024:8.1f} KiB per session, live ReplSession {live}")
    if medians[True] > 0:
        print(f"  ratio as shipped / cut: {medians[False] / medians[True]:.0f}x")


def main() -> None:
    # The paramiko client's and server's "Socket exception" lines for dropped connections are
    # not what this measures; they would bury the table.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    args = [int(a) for a in sys.argv[1:3] if re.fullmatch(r"\d+", a)]
    ws_total = args[0] if args else 500
    ssh_total = args[1] if len(args) > 1 else 200
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(child_round(sys.argv[2] == "cut"))
        return
    ws_marks = asyncio.run(websocket(ws_total))
    ssh_marks = ssh(ssh_total)
    report("websocket (demo process; asyncio client from testkit/terminal_client.py)", ws_marks)
    report("SSH (console in this process; paramiko client)", ssh_marks)
    side_by_side()


if __name__ == "__main__":
    main()
