"""ReplSession driven in-process: real ptpython, real session threads, a list as the terminal.

Each session is opened through the ``repl`` fixture, which closes it at the end and checks
that its thread ended and ``on_close`` ran once. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opsconsole.errors import ConsoleError
from opsconsole.repl import gil, keyboard
from opsconsole.repl.asciicast import CastRecorder
from opsconsole.repl.session import ReplSession
from testkit.terminal_client import ANSI

PROMPT = r">>> ?$"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
ESCAPE_TIMEOUT = 0.5  # prompt_toolkit's Application.ttimeoutlen


def past_escape_timeout() -> None:
    """Let prompt_toolkit's escape-flush timer fire (it runs ``ESCAPE_TIMEOUT`` after each read of
    keys, the first prompt's included). Nothing reports that it fired and it draws nothing, so
    this waits out its length with a margin: the suite's one timed wait that is not a poll."""
    time.sleep(ESCAPE_TIMEOUT + 0.2)


class Screen:
    """The sink of one session: collects output; waits on it with ANSI escapes stripped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._parts: list[str] = []
        self.calls = 0
        self.threads: set[str] = set()

    def __call__(self, text: str) -> None:
        with self._cond:
            self._parts.append(text)
            self.calls += 1
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    @property
    def raw(self) -> str:
        with self._cond:
            return "".join(self._parts)

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw).replace("\r", "")

    def wait_for(self, pattern: str, timeout: float = 10.0, *, start: int = 0) -> re.Match[str]:
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(self.text, start)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{pattern!r} not seen in {timeout}s; output:\n{self.text[-3000:]}")
                self._cond.wait(min(left, 0.2))


@dataclass
class Running:
    session: ReplSession
    screen: Screen
    recorded: list[str]
    statuses: list[int] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    def run(self, line: str, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Type ``line`` + Enter; wait for ``pattern`` in what follows."""
        start = len(self.screen.text)
        self.session.feed(line + "\r")
        return self.screen.wait_for(pattern, timeout, start=start)

    def wait_closed(self, timeout: float = 10.0) -> int:
        assert self.ended.wait(timeout), "on_close was not called"
        thread = next((t for t in threading.enumerate() if t.name == self.thread_name), None)
        if thread is not None:
            thread.join(timeout)
            assert not thread.is_alive(), "the session thread is still running"
        assert len(self.statuses) == 1, self.statuses
        return self.statuses[0]

    @property
    def thread_name(self) -> str:
        return f"opsconsole-repl-{self.session.session_id}"


Opener = Callable[..., Running]


@pytest.fixture
def repl() -> Iterator[Opener]:
    """Opens started sessions at their first prompt; closes them all and checks they ended."""
    yield from session_opener()


def session_opener() -> Iterator[Opener]:
    """The body of the ``repl`` fixture (also used by test_repl_helpers)."""
    opened: list[Running] = []

    def open_session(
        *, namespace: dict[str, object] | None = None, record: Callable[[str], None] | None = None, **kw: Any
    ) -> Running:
        n = len(opened) + 1
        recorded: list[str] = []
        screen = Screen()
        holder: list[Running] = []

        def on_close(status: int) -> None:
            holder[0].statuses.append(status)
            holder[0].ended.set()

        session = ReplSession(
            session_id=kw.pop("session_id", f"t{n}-{os.getpid()}-{time.monotonic_ns()}"),
            user="tester",
            namespace=namespace if namespace is not None else {},
            sink=screen,
            on_close=on_close,
            record_input=record or recorded.append,
            **kw,
        )
        running = Running(session, screen, recorded)
        holder.append(running)
        opened.append(running)
        session.start()
        screen.wait_for(PROMPT)
        return running

    yield open_session
    for running in opened:
        running.session.close()
    for running in opened:
        running.wait_closed()


# -- the basics ---------------------------------------------------------------------------------


def test_one_plus_one(repl: Opener) -> None:
    r = repl()
    r.run("1+1", r"^2$")
    assert r.recorded == ["1+1"]
    assert r.screen.threads == {r.thread_name}  # the sink only ever runs on the session thread


def test_top_level_await_runs_on_the_session_loop(repl: Opener) -> None:
    r = repl()
    r.run("import asyncio, threading", PROMPT)
    r.run("await asyncio.sleep(0.1, result=42)", r"^42$")
    r.run("threading.current_thread().name", rf"^'{r.thread_name}'$")


def test_output_is_crlf_and_print_lands_in_the_session(
    repl: Opener, capsys: pytest.CaptureFixture[str]
) -> None:
    r = repl()
    r.run("print('printed' + '-marker'); import sys; print('err' + '-marker', file=sys.stderr)", PROMPT)
    r.screen.wait_for(r"^printed-marker$")
    r.screen.wait_for(r"^err-marker$")
    r.run("raise KeyError('tb' + '-marker')", r"KeyError: 'tb-marker'")
    assert re.search(r"(?<!\r)\n", r.screen.raw) is None  # xterm.js has no ONLCR
    captured = capsys.readouterr()
    assert "marker" not in captured.out + captured.err


def test_executor_jobs_and_binary_writes_land_in_the_session(
    repl: Opener, capsys: pytest.CaptureFixture[str]
) -> None:
    r = repl()
    r.run("import asyncio, sys", PROMPT)
    r.run("await asyncio.get_running_loop().run_in_executor(None, print, 'ex' + 'ecutor')", r"^executor$")
    r.run("await asyncio.to_thread(print, 'to' + '-thread')", r"^to-thread$")
    r.run("sys.stdout.buffer.write(('bin' + 'ary\\n').encode()) and None", r"^binary$")
    r.run("sys.stdout.isatty(), sys.stdin.isatty()", r"^\(False, False\)$")
    r.run("sys.stdout.fileno()", r"UnsupportedOperation")
    print("outside-any-session")  # the host's own prints pass through untouched
    assert "outside-any-session" in capsys.readouterr().out
    assert "outside-any-session" not in r.screen.text


def test_logging_last_resort_lands_in_the_session(repl: Opener) -> None:
    r = repl()
    r.run(
        "import logging; log = logging.getLogger('opsconsole-test-lastresort'); log.propagate = False", PROMPT
    )
    r.run("log.warning('last' + '-resort-marker')", r"^last-resort-marker$")


def test_input_reads_the_session_keyboard(repl: Opener) -> None:
    r = repl()
    start = len(r.screen.text)
    r.session.feed("answer = input('name? ')\r")
    r.screen.wait_for(r"name\? $", start=start)
    r.session.feed("bobx\x7f\r")  # Backspace edits, as in a terminal
    r.run("answer", r"^'bob'$")
    start = len(r.screen.text)
    r.session.feed("input('again? ')\r")
    r.screen.wait_for(r"again\? $", start=start)
    r.session.feed("\x03")
    r.screen.wait_for(r"KeyboardInterrupt", start=start)
    r.run("1+1", r"^2$")


def test_the_profiles(repl: Opener) -> None:
    lean, full = repl(), repl(profile="full")
    lean.run("get_ptpython().complete_while_typing, get_ptpython().show_signature", r"^\(False, False\)$")
    full.run("get_ptpython().complete_while_typing, get_ptpython().show_signature", r"^\(True, True\)$")
    lean.run("p = get_ptpython()", PROMPT)
    lean.run("p.enable_open_in_editor, p.enable_system_bindings", r"^\(False, False\)$")
    lean.run("type(p.history).__name__", r"^'InMemoryHistory'$")


def test_resize_reaches_the_app(repl: Opener) -> None:
    r = repl(rows=30, cols=100)
    r.run("get_ptpython().app.output.get_size()", r"rows=30, columns=100")
    r.session.resize(40, 132)
    r.run("get_ptpython().app.output.get_size()", r"rows=40, columns=132")


# -- sessions stay apart -----------------------------------------------------------------------


def test_two_sessions_never_see_each_other(repl: Opener) -> None:
    a, b = repl(), repl()
    # Typed one character at a time, interleaved.
    for ca, cb in zip("print('al' + 'pha')\r", "print('br' + 'avo')\r", strict=True):
        a.session.feed(ca)
        b.session.feed(cb)
    a.screen.wait_for(r"^alpha$")
    b.screen.wait_for(r"^bravo$")
    a.run("x = 'only' + '-in-a'", PROMPT)
    a.run("11 * 11", r"^121$")
    b.run("x", r"NameError")
    b.run("_ == 121", r"^False$")  # ptpython's `_` is per session too
    # each session's own output is in order: past these, anything crossed over would show
    a.run("'fence' + '-a'", r"^'fence-a'$")
    b.run("'fence' + '-b'", r"^'fence-b'$")
    assert "bravo" not in a.screen.text and "br' + 'avo" not in a.screen.text
    assert "alpha" not in b.screen.text and "only-in-a" not in b.screen.text
    assert a.recorded[0] == "print('al' + 'pha')" and b.recorded[0] == "print('br' + 'avo')"
    # exit() in one session ends that one only; the other's own exit still works
    a.session.feed("exit()\r")
    assert a.wait_closed() == 0
    b.run("2+2", r"^4$")
    b.session.feed("exit()\r")
    assert b.wait_closed() == 0


def test_two_sessions_pressing_tab_at_once_both_get_their_menu(repl: Opener) -> None:
    # jedi is not thread-safe: run at once on two sessions' worker threads, one of them lost its
    # completions (the common prefix was inserted, no menu). A host thread spinning in pure
    # Python, as in production, widens the overlap; without the per-process completion lock
    # this failed in 7 of 8 tries.
    stop = threading.Event()

    def spin() -> None:
        deadline = time.monotonic() + 30  # bounded, whatever happens to the test
        while not stop.is_set() and time.monotonic() < deadline:
            sum(range(1000))

    spinner = threading.Thread(target=spin, name="host-busy", daemon=True)
    spinner.start()
    try:
        for round_ in range(3):
            sessions = [repl(namespace={"alpha_one": 1, "alpha_two": 2}) for _ in range(2)]
            past_escape_timeout()  # of the first prompt
            for r in sessions:
                r.session.feed("alp")
            for r in sessions:
                r.screen.wait_for("alp")
            for r in sessions:
                r.session.feed("ha_\t")
            for n, r in enumerate(sessions):
                try:
                    r.screen.wait_for(r"alpha_one(.|\n)*alpha_two", timeout=5)
                except AssertionError as exc:
                    raise AssertionError(f"round {round_}, session {n}: no completion menu") from exc
    finally:
        stop.set()
        spinner.join()


def test_a_blocking_eval_freezes_only_its_own_session(repl: Opener) -> None:
    gate, blocked = threading.Event(), threading.Event()
    a, b = repl(namespace={"gate": gate, "blocked": blocked}), repl()
    a.session.feed("(blocked.set(), gate.wait(60), 'sl' + 'ept')[2]\r")
    assert blocked.wait(10)
    try:
        b.run("2+2", r"^4$", timeout=30)  # answers while a's eval holds until the gate opens
        a.session.feed("3*3\r")  # typed ahead while the eval blocks
        assert not re.search(r"^'slept'$", a.screen.text, re.MULTILINE)
    finally:
        gate.set()
    a.screen.wait_for(r"^'slept'$", timeout=10)
    a.screen.wait_for(r"^9$", timeout=10)


# -- Ctrl-C and leaving ------------------------------------------------------------------------


# Each line sets ``started`` once as its eval begins: an await, a pure-Python loop, a loop in C.
# Once only: a call in the loop allocates, and a collection's weakref callbacks would then be
# where the interrupt lands (an "exception ignored", not the end of the eval).
@pytest.mark.parametrize(
    "line",
    [
        "started.set() or await asyncio.sleep(100)",
        "started.set() or exec('while True: pass')",
        "for _ in (started.set(), iter(int, 1))[1]: pass",
    ],
)
def test_ctrl_c_stops_an_eval_and_the_prompt_returns(repl: Opener, line: str) -> None:
    started = threading.Event()
    r = repl(namespace={"started": started})
    r.run("import asyncio", PROMPT)
    r.session.feed(line + "\r" + ("\r" if line.endswith(": pass") else ""))
    assert started.wait(10), "the eval never started"
    start = len(r.screen.text)
    r.session.feed("\x03")
    # the eval never ends by itself within this deadline, so the interrupt is what ended it
    r.screen.wait_for(r"KeyboardInterrupt", timeout=30, start=start)
    r.run("1+1", r"^2$")


def test_ctrl_c_at_the_prompt_clears_the_line(repl: Opener) -> None:
    r = repl()
    r.session.feed("this is not python")
    r.screen.wait_for("this is not python")
    r.session.feed("\x03")
    r.run("1+1", r"^2$")
    assert r.recorded == ["1+1"]


def test_ctrl_d_ends_the_session_with_status_0(repl: Opener) -> None:
    r = repl()
    r.session.feed("\x04")
    assert r.wait_closed() == 0
    assert r.session.closed


def test_close_stops_a_busy_eval_and_ends_the_thread(repl: Opener) -> None:
    started = threading.Event()
    r = repl(namespace={"started": started})
    r.session.feed("started.set() or exec('while True: pass')\r")
    assert started.wait(10), "the eval never started"
    r.session.close()
    r.session.close()
    assert r.wait_closed() == 0


def test_close_before_start_calls_on_close_once() -> None:
    statuses: list[tuple[int, str]] = []
    session = ReplSession(
        session_id="never-started",
        user="tester",
        namespace={},
        sink=lambda _t: None,
        on_close=lambda s: statuses.append((s, threading.current_thread().name)),
        record_input=lambda _l: None,
    )
    session.close()
    session.close()
    assert statuses == [(0, threading.current_thread().name)]
    with pytest.raises(ConsoleError):
        session.start()


def test_shell_escapes_are_refused(repl: Opener, tmp_path: Path) -> None:
    r = repl()
    target = tmp_path / "pwned"
    r.run(f"!touch {target}", r"shell escapes \(!\.\.\.\) are disabled")
    r.run(f"get_ptpython().eval('!touch {target}')", r"PermissionError")
    assert not target.exists()
    r.run("1+1", r"^2$")


# -- the audit hook ------------------------------------------------------------------------------


def test_each_line_is_recorded_before_it_runs(repl: Opener) -> None:
    seen: list[int] = []
    snapshots: list[tuple[str, list[int]]] = []

    def record(line: str) -> None:
        snapshots.append((line, list(seen)))
        if "forbidden" in line:
            raise OSError("audit disk full")

    r = repl(namespace={"seen": seen}, record=record)
    r.run("raise ValueError('x')", r"ValueError: x")
    r.run("seen.append(1)", PROMPT)
    r.run("len(seen)", r"^1$")
    assert snapshots == [("raise ValueError('x')", []), ("seen.append(1)", []), ("len(seen)", [1])]
    r.run("seen.append(2)  # forbidden", r"not run: .*audit disk full")
    r.run("len(seen)", r"^1$")
    assert seen == [1]


# -- input never blocks the caller ---------------------------------------------------------------


def test_a_1_mib_paste_returns_at_once_and_is_processed(repl: Opener) -> None:
    gate, blocked = threading.Event(), threading.Event()
    r = repl(namespace={"gate": gate, "blocked": blocked})
    body = ("y" * 63 + "\n") * (1024 * 1024 // 64)
    text = f"{PASTE_START}s = '''\n{body}'''{PASTE_END}\r\r"
    pieces = [text[i : i + 64 * 1024] for i in range(0, len(text), 64 * 1024)]  # websocket-sized
    # The session's thread is held in an eval, so feed() can return only if it never waits for it.
    r.session.feed("(blocked.set(), gate.wait(60))[0]\r")
    assert blocked.wait(10)
    try:
        feeder = threading.Thread(target=lambda: [r.session.feed(piece) for piece in pieces])
        feeder.start()
        feeder.join(30)
        assert not feeder.is_alive(), "feed() waited for the session's thread"
    finally:
        gate.set()
    r.run("len(s)", rf"^{len(body) + 1}$", timeout=30)


def test_keys_typed_past_an_enter_are_type_ahead_for_the_next_prompt(repl: Opener) -> None:
    r = repl()
    start = len(r.screen.text)
    r.session.feed("1+1\r6*7\r")  # one message: the second line waits while the first runs
    r.screen.wait_for(r"^2$", start=start)
    r.screen.wait_for(r"^42$", start=start)


def test_keys_typed_during_an_eval_reach_the_next_prompt(repl: Opener) -> None:
    started, release = threading.Event(), threading.Event()
    r = repl(namespace={"started": started, "release": release})
    start = len(r.screen.text)
    r.session.feed("started.set(); release.wait(10)\r")
    assert started.wait(10), "the eval never started"
    r.session.feed("6*7\r")  # typed while the eval blocks
    release.set()
    r.screen.wait_for(r"^42$", start=start)


def test_each_keystroke_is_drawn_in_one_frame(repl: Opener) -> None:
    # one sink call per key: the frame is drawn right after the key, and nothing (an idle
    # suggestion task, a postponed redraw) draws it a second time
    r = repl()
    past_escape_timeout()  # of the first prompt
    for ch in "xyz":
        calls = r.screen.calls
        start = len(r.screen.text)
        r.session.feed(ch)
        r.screen.wait_for(re.escape(ch), start=start)
        past_escape_timeout()  # its flush draws nothing either
        assert r.screen.calls - calls == 1


def test_the_keyboard_queue_is_bounded_and_ends_with_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyboard, "MAX_QUEUED", 10)
    board = keyboard.Keyboard()  # not attached to a loop: what is fed stays queued
    board.feed("12345678")
    board.feed("abcde")  # would exceed 10 characters: dropped
    assert board.pending and not board.closed
    board.discard()  # Ctrl-C during an eval drops type-ahead
    assert not board.pending
    board.feed("1+1\r")
    board.close()
    assert board.closed and not board.pending
    board.feed("more")  # after EOF: ignored
    assert not board.pending


def test_the_switch_interval_is_held_while_sessions_are_open() -> None:
    interval, before = gil.SwitchInterval(), sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        release_a = interval.hold(0.001)
        assert sys.getswitchinterval() == pytest.approx(0.001)
        release_b = interval.hold(0.002)  # never lengthened by a later, longer ask
        assert sys.getswitchinterval() == pytest.approx(0.001)
        release_a()
        release_a()  # idempotent
        assert sys.getswitchinterval() == pytest.approx(0.002)  # b still holds: at most 2 ms
        release_b()
        assert sys.getswitchinterval() == pytest.approx(0.005)
        assert interval.hold(0) is not None and sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


def test_a_host_that_sets_its_own_switch_interval_keeps_it() -> None:
    interval, before = gil.SwitchInterval(), sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        release = interval.hold(0.001)
        sys.setswitchinterval(0.003)  # the host changes it while a session is open
        release()
        assert sys.getswitchinterval() == pytest.approx(0.003)
        sys.setswitchinterval(0.0005)  # already shorter than asked: left as it is
        interval.hold(0.001)()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)


# -- the recording -------------------------------------------------------------------------------


def test_the_session_is_recorded_as_asciicast_v2(repl: Opener, tmp_path: Path) -> None:
    cast = tmp_path / "session.cast"
    r = repl(cast_path=cast, rows=30, cols=90, title="cast test")
    r.run("print('on the' + ' record')", r"^on the record$")
    r.session.resize(33, 101)
    r.run("getpass_like = 'typed'", PROMPT)
    r.session.feed("\x04")
    assert r.wait_closed() == 0

    assert cast.stat().st_mode & 0o777 == 0o600
    header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
    assert header["version"] == 2 and header["width"] == 90 and header["height"] == 30
    assert isinstance(header["timestamp"], int) and abs(header["timestamp"] - time.time()) < 120
    assert header["title"] == "cast test" and header["env"] == {"TERM": "xterm-256color"}
    assert events
    for event in events:
        assert isinstance(event, list) and len(event) == 3
        assert isinstance(event[0], float | int) and event[1] in ("o", "r") and isinstance(event[2], str)
    times = [e[0] for e in events]
    assert times == sorted(times) and times[0] >= 0
    assert ["r", "101x33"] in [e[1:] for e in events]
    shown = "".join(e[2] for e in events if e[1] == "o")
    assert "on the record" in ANSI.sub("", shown)
    assert shown == r.screen.raw  # the recording is exactly what the terminal got

    # asciinema itself (a pinned test dependency) as the independent reader of the file
    out = subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(cast)], capture_output=True, timeout=30, check=True
    )
    assert b"on the record" in out.stdout


def test_the_recording_is_bounded_and_ends_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "big.cast"
    recorder = CastRecorder.create(path, cols=80, rows=24, title="big", max_bytes=4096)
    for i in range(100):
        recorder.output(f"line {i} " + "x" * 50 + "\r\n")
    recorder.resize(100, 30)  # after the limit: dropped
    recorder.close()
    assert not recorder.recording
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines[1:]]
    assert len(path.read_bytes()) < 4096 + 200
    assert "recording stopped" in events[-1][2]
    assert all(e[1] == "o" for e in events)


def test_an_existing_cast_file_is_never_reused(repl: Opener, tmp_path: Path) -> None:
    def recorded_to(session_id: str, cast: Path) -> ReplSession:
        return ReplSession(
            session_id=session_id,
            user="tester",
            namespace={},
            sink=lambda _t: None,
            on_close=lambda _s: None,
            record_input=lambda _l: None,
            cast_path=cast,
        )

    cast = tmp_path / "taken.cast"
    cast.write_text("planted")
    with pytest.raises(ConsoleError, match="cannot record"):
        recorded_to("planted", cast).start()
    assert cast.read_text() == "planted"
    link = tmp_path / "link.cast"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConsoleError):
        recorded_to("symlink", link).start()
    assert not (tmp_path / "elsewhere").exists()
