"""One expensive dump at a time, on a worker thread — never on the console's IO loop.

A second request while one runs gets ``BusyError`` (HTTP 429 with Retry-After) instead of
queueing: queued heap walks would stack their pauses on the host.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from opsconsole.errors import BusyError

T = TypeVar("T")


class OneAtATime:
    """A single worker thread named ``opsconsole-dump`` that refuses overlapping work."""

    def __init__(self, name: str = "opsconsole-dump") -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._running: str | None = None
        self._started = 0.0
        self._expected = 1.0

    def submit(
        self, what: str, fn: Callable[[], T], *, expected_seconds: float = 1.0
    ) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the worker, or raise BusyError if a job is running. Any thread."""
        with self._lock:
            if self._running is not None:
                left = max(1.0, self._expected - (time.monotonic() - self._started))
                raise BusyError(f"{self._running} is running; one expensive dump at a time", retry_after=left)
            self._running, self._started, self._expected = what, time.monotonic(), expected_seconds
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _f: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._running = None

    @property
    def running(self) -> str | None:
        return self._running

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
