"""Failure counting with exponential backoff, per user and per source address.

An attempt is counted as a failure when it *starts* and forgiven when it succeeds, so a
burst of parallel attempts cannot all slip in before the first failure is recorded.
Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opsconsole.errors import AuthError

# Bound on remembered keys (users and addresses); idle ones are pruned past this.
MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


class Lockout:
    def __init__(
        self,
        *,
        threshold: int,
        base_delay: float,
        max_delay: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._threshold = threshold
        self._base = base_delay
        self._max = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def begin(self, keys: Iterable[str]) -> bool:
        """Start an attempt for ``keys`` (e.g. ``user:alice``, ``source:10.0.0.1``).

        Raises ``AuthError("locked")`` when any key is locked. Otherwise counts the attempt
        as a failure up front and returns True when this attempt engaged a new lock.
        """
        now = self._clock()
        keys = tuple(keys)
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None and now < entry.locked_until:
                    raise AuthError("locked", f"{key} for {entry.locked_until - now:.1f}s more")
            engaged = False
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                if now - entry.last_seen > self._max and now >= entry.locked_until:
                    entry.failures = 0  # a long quiet period forgives old failures
                entry.failures += 1
                entry.last_seen = now
                if entry.failures >= self._threshold:
                    delay = min(self._max, self._base * 2 ** (entry.failures - self._threshold))
                    entry.locked_until = now + delay
                    engaged = True
            self._prune(now)
        return engaged

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forgive the attempt begun for ``keys`` and every earlier failure."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def _prune(self, now: float) -> None:
        if len(self._entries) <= MAX_TRACKED:
            return
        for key in [k for k, e in self._entries.items() if now >= e.locked_until]:
            del self._entries[key]
            if len(self._entries) <= MAX_TRACKED // 2:
                break
