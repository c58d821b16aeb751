"""A host thread that wants to run every 1 ms: how long did a call stall it?

Shared by the stall tests and the benchmarks (bench/ imports it), so every figure
is measured the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from testkit.support import poll_until

T = TypeVar("T")


class Ticker:
    """Sleeps 1 ms in a loop on its own thread and records the longest gap between ticks."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="host-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The ticker thread: its 1 ms sleeps are the host work whose stalls are measured.
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    def _next_tick(self) -> None:
        seen = self.ticks
        assert poll_until(lambda: self.ticks > seen, 10, interval=0.001), "the ticker stopped ticking"

    def measure(self, fn: Callable[[], T]) -> tuple[T, float, float]:
        """Run ``fn`` here; return its result, its duration and the longest tick gap meanwhile."""
        self._next_tick()  # the window starts clean
        self.longest = 0.0
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        self._next_tick()  # a gap still open when fn returned is counted
        return result, elapsed, self.longest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
