"""Keystroke → echo latency of a ReplSession driven in-process: the baseline for the doors.

One character is fed with ``session.feed`` (as the websocket adapter does on the console IO
loop) and the clock stops when the sink (called on the session thread) has delivered output
showing it. No network, no JSON: what is measured is the queue → pipe → prompt_toolkit →
render → sink path alone. The websocket (and later SSH) figures are compared against these.

Both profiles are measured, idle and with a busy host thread (pure Python, competing for the
GIL as a service's request handlers do); plus one ``1+1`` → ``2`` eval round trip.

    .venv/bin/python bench/repl_pipe.py [N]

Importable: ``measure(session_factory, n)`` takes any ``factory(sink) -> started ReplSession``.
"""

from __future__ import annotations

import itertools
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from opsconsole.repl.session import ReplSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the repo root

from tests.terminal_client import ANSI

LINE = 40  # characters typed before the line is cleared with Ctrl-C, so the line stays short
TIMEOUT = 10.0

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
def busy_host() -> Iterator[None]:
    """A host thread spinning in pure Python, as a CPU-bound request handler would."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    thread = threading.Thread(target=spin, name="host-busy", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(f"keystroke → echo, {n} keystrokes per row (in-process, no transport)")
    for profile in ("lean", "full"):
        for busy in (False, True):
            factory = default_factory(profile)
            if busy:
                with busy_host():
                    p50, p99 = measure(factory, n)
            else:
                p50, p99 = measure(factory, n)
            label = f"{profile} profile, {'busy host thread' if busy else 'idle host'}"
            print(f"  {label:<34} p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms")
    p50, p99 = measure_eval(default_factory("lean"))
    print(f"eval round trip `1+1` → `2` (lean)  p50 {p50 * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
