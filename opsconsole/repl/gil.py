"""A shorter GIL switch interval while an operator has a REPL session open.

Why: a thread that comes back from a blocking call — every selector wait of an event loop,
every socket send or receive, even with nothing to wait for — must take the GIL back. If a
host thread is running pure Python, it keeps the GIL until the interpreter's switch interval
(``sys.getswitchinterval()``, 5 ms by default) has passed. A keystroke crosses about ten such
points between the websocket and the screen (the IO loop receives it and wakes the session
loop, which draws and wakes the IO loop, which sends), so on a host whose main thread spins,
each keystroke waits about ten switch intervals for the GIL alone. A shorter interval while a
session is open cuts that wait; much shorter gains nothing, as the session then only gets its
fair half of the CPU. ``bench/terminal.py`` measures the echo with and without it, and
``bench/README.md`` holds the figures.

The cost, paid only while at least one session is open: the interpreter hands the GIL between
*CPU-bound* threads ten times as often. Each hand-off costs microseconds (and some cache
warmth), so a host with two or more threads competing for the GIL runs them a few percent
slower while an operator is connected; a host whose threads mostly wait on I/O sees no
difference, or answers a little sooner. ``bench/repl_pipe.py`` prints the throughput of a
spinning host thread with and without it, side by side.

The interval is process-wide, so it is changed with care: lowered when the first session
opens (only if that makes it shorter), restored when the last one ends — and only if nobody
else changed it meanwhile (a host that sets its own value wins). ``0`` leaves it alone.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable


class SwitchInterval:
    """Holds on the process's switch interval; one instance per process (:data:`INTERVAL`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._held: dict[int, float] = {}  # hold id → the interval it asks for
        self._saved: float | None = None  # the value before the first hold
        self._ours: float | None = None  # what we set, to recognise a change made by someone else
        self._foreign = False  # changed by someone else while held: theirs until the last release

    def hold(self, seconds: float) -> Callable[[], None]:
        """Ask for an interval of at most ``seconds`` until the returned release is called.

        Any thread. ``seconds <= 0`` asks for nothing. The release is idempotent.
        """
        if seconds <= 0:
            return _nothing
        with self._lock:
            key = next(self._ids)
            self._held[key] = seconds
            self._apply()

        def release() -> None:
            with self._lock:
                if self._held.pop(key, None) is not None:
                    self._apply()

        return release

    def _apply(self) -> None:
        # under _lock: the shortest interval asked for, or the saved one back when nobody asks
        current = sys.getswitchinterval()
        if self._ours is not None and current != self._ours:  # the host set its own value: it wins
            self._saved = self._ours = None
            self._foreign = True
        if not self._held:
            if self._saved is not None:
                sys.setswitchinterval(self._saved)
            self._saved = self._ours = None
            self._foreign = False
            return
        if self._foreign:
            return
        if self._saved is None:
            self._saved = current
        target = min(*self._held.values(), self._saved)  # never longer than the host's own value
        if target != current:
            sys.setswitchinterval(target)
        self._ours = sys.getswitchinterval()


INTERVAL = SwitchInterval()
hold = INTERVAL.hold


def _nothing() -> None:
    pass
