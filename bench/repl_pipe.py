"""Keystroke → echo latency of a ReplSession driven in-process: the baseline for the doors.

One character is fed with ``session.feed`` (as the websocket adapter does on the console IO
loop) and the clock stops when the sink (called on the session thread) has delivered output
showing it. No network, no JSON: what is measured is the keyboard queue → prompt_toolkit →
render → sink path alone. The websocket (and SSH) figures are compared against these.

Both profiles are measured, idle and with a busy host thread (pure Python, competing for the
GIL as a service's request handlers do) — the busy rows side by side with the interpreter's
GIL switch interval and with ``repl_switch_interval`` (what the console sets while a session
is open, see ``opsconsole.repl.gil``); plus one ``1+1`` → ``2`` eval round trip. Then the
host's side of that setting: the throughput of CPU-bound host threads with and without it,
while nobody types and while an operator types at a steady 20 keys/s.

    .venv/bin/python bench/repl_pipe.py [N]

Importable: ``measure(session_factory, n)`` takes any ``factory(sink) -> started ReplSession``.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from opsconsole.config import Settings
from opsconsole.repl import gil
from opsconsole.repl.session import ReplSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from testkit.terminal_client import ANSI

LINE = 40  # characters typed before the line is cleared with Ctrl-C, so the line stays short
TIMEOUT = 10.0
SWITCH = Settings().repl_switch_interval  # the console's default while a session is open
TYPING_PACE = 0.05  # seconds between keys of the steady typist in host_cost()

SessionFactory = Callable[[Callable[[str], None]], ReplSession]


class Probe:
    """A sink that lets the driver wait for text to appear after a given point."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._parts: list[str] = []

    def __call__(self, text: str) -> None:
        # the session thread
        with self._cond:
            self._parts.append(text)
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._parts)

    def wait(self, since: int, pattern: str) -> None:
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + TIMEOUT
        with self._cond:
            while not regex.search(ANSI.sub("", "".join(self._parts[since:])).replace("\r", "")):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{pattern!r} not echoed within {TIMEOUT}s")
                self._cond.wait(left)


def default_factory(profile: str = "lean") -> SessionFactory:
    counter = itertools.count(1)

    def factory(sink: Callable[[str], None]) -> ReplSession:
        session = ReplSession(
            session_id=f"bench-{profile}-{next(counter)}",
            user="bench",
            namespace={},
            sink=sink,
            on_close=lambda _status: None,
            record_input=lambda _line: None,
            profile="full" if profile == "full" else "lean",
        )
        session.start()
        return session

    return factory


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def measure(session_factory: SessionFactory, n: int = 300) -> tuple[float, float]:
    """Feed ``n`` single characters, each after the previous one's echo; (p50, p99) in seconds."""
    probe = Probe()
    session = session_factory(probe)
    try:
        probe.wait(0, r">>> ?$")
        samples: list[float] = []
        letters = itertools.cycle("abcdefghijklmnopqrstuvwxyz")
        for i in range(n):
            if i and i % LINE == 0:
                mark = probe.mark()
                session.feed("\x03")  # Ctrl-C at the prompt clears the line
                probe.wait(mark, r">>> ?$")
            ch = next(letters)
            mark = probe.mark()
            t0 = time.perf_counter()
            session.feed(ch)
            probe.wait(mark, re.escape(ch))
            samples.append(time.perf_counter() - t0)
        return percentiles(samples)
    finally:
        session.close()


def measure_eval(session_factory: SessionFactory, n: int = 50) -> tuple[float, float]:
    """``1+1`` Enter → ``2`` shown, ``n`` times; (p50, p99) in seconds."""
    probe = Probe()
    session = session_factory(probe)
    try:
        probe.wait(0, r">>> ?$")
        session.feed("1+1")
        time.sleep(0.2)
        samples = []
        for _ in range(n):
            mark = probe.mark()
            t0 = time.perf_counter()
            session.feed("\r")
            probe.wait(mark, r"^2$")
            samples.append(time.perf_counter() - t0)
            probe.wait(mark, r">>> ?$")
            session.feed("1+1")
            time.sleep(0.02)
        return percentiles(samples)
    finally:
        session.close()


@contextmanager
def busy_host(threads: int = 1) -> Iterator[list[int]]:
    """Host threads spinning in pure Python, as CPU-bound request handlers would.

    Yields a list whose items count each thread's rounds of 1000 additions (final at exit).
    """
    stop = threading.Event()
    rounds = [0] * threads

    def spin(k: int) -> None:
        x = n = 0
        while not stop.is_set():
            for i in range(1000):
                x += i
            n += 1
        rounds[k] = n

    workers = [
        threading.Thread(target=spin, args=(k,), name=f"host-busy-{k}", daemon=True) for k in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        yield rounds
    finally:
        stop.set()
        for worker in workers:
            worker.join()


@contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """The interval the console holds while a session is open (0: the interpreter's own)."""
    release = gil.hold(seconds)
    try:
        yield
    finally:
        release()


def host_cost(seconds: float, *, typing: bool, duration: float = 2.0) -> float:
    """Rounds/s of two CPU-bound host threads over ``duration`` s with switch interval ``seconds``.

    ``typing``: a session is open and a key is fed every TYPING_PACE s (waiting for each echo).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(switch_interval(seconds))
        probe = Probe()
        session = None
        if typing:
            session = default_factory("lean")(probe)
            stack.callback(session.close)
            probe.wait(0, r">>> ?$")
        letters = itertools.cycle("abcdefghijklmnopqrstuvwxyz")
        with busy_host(2) as rounds:
            t0 = time.perf_counter()
            typed = 0
            while time.perf_counter() - t0 < duration:
                if session is None:
                    time.sleep(TYPING_PACE)
                    continue
                typed += 1
                mark = probe.mark()
                if typed % LINE == 0:
                    session.feed("\x03")
                    probe.wait(mark, r">>> ?$")
                else:
                    ch = next(letters)
                    session.feed(ch)
                    probe.wait(mark, re.escape(ch))
                time.sleep(max(0.0, t0 + typed * TYPING_PACE - time.perf_counter()))
            elapsed = time.perf_counter() - t0
        return sum(rounds) / elapsed


def print_host_cost(duration: float = 1.5, pairs: int = 4) -> None:
    """Side by side, ``pairs`` times alternating (medians: other work on the machine is noise):
    the host's throughput at the interpreter's interval vs SWITCH."""
    interpreter = sys.getswitchinterval()
    print(f"host cost of repl_switch_interval={SWITCH * 1e3:g} ms: two CPU-bound host threads, rounds/s")
    for typing in (False, True):
        base, ours = [], []
        for _ in range(pairs):
            base.append(host_cost(0, typing=typing, duration=duration))
            ours.append(host_cost(SWITCH, typing=typing, duration=duration))
        b, o = statistics.median(base), statistics.median(ours)
        label = f"operator types {1 / TYPING_PACE:.0f} keys/s" if typing else "no keystrokes"
        print(
            f"  {label:<24} {interpreter * 1e3:g} ms: {b / 1e3:7.1f} k/s   "
            f"{SWITCH * 1e3:g} ms: {o / 1e3:7.1f} k/s   ({(o / b - 1) * 100:+.1f} %)"
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    interpreter = sys.getswitchinterval()
    print(f"keystroke → echo, {n} keystrokes per row (in-process, no transport)")
    for profile in ("lean", "full"):
        rows: list[tuple[str, float, bool]] = [("idle host", 0, False)]
        rows.append((f"busy host thread, {interpreter * 1e3:g} ms switch", 0, True))
        rows.append((f"busy host thread, {SWITCH * 1e3:g} ms switch", SWITCH, True))
        for what, seconds, busy in rows:
            with switch_interval(seconds), busy_host() if busy else contextlib.nullcontext():
                p50, p99 = measure(default_factory(profile), n)
            label = f"{profile} profile, {what}"
            print(f"  {label:<44} p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms")
    p50, p99 = measure_eval(default_factory("lean"))
    print(f"eval round trip `1+1` → `2` (lean)  p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms")
    print_host_cost()


if __name__ == "__main__":
    main()
