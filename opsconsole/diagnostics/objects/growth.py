"""What grew: named baselines of the census and "what grew since last time", like objgraph's
``show_growth``.

A baseline is the census's per-class counts (``Counts``: flat str → int dicts, which CPython does not
GC-track, so a stored baseline never shows up in the next census). Runs on the console's dump worker
thread or the operator's REPL thread.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from opsconsole.diagnostics.budget import DEFAULT_LIMIT
from opsconsole.diagnostics.objects.census import Census, Counts, check_top, summary, take_counts
from opsconsole.errors import InvalidRequestError, NotFoundError

MAX_BASELINES = 16
_BASELINE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class TypeGrowth:
    name: str
    count: int
    delta: int
    size: int
    size_delta: int  # 0 unless both sides were taken with sizes


@dataclass(frozen=True, slots=True)
class Growth:
    since: str  # a baseline name, "previous" or "empty" (the first call without a baseline)
    taken_at: float
    rows: tuple[TypeGrowth, ...]


def _growth_rows(now: Counts, before: Counts, top: int) -> list[TypeGrowth]:
    sized = now.sizes is not None and before.sizes is not None
    now_sizes = now.sizes or {}
    before_sizes = before.sizes or {}
    rows = []
    for name, count in now.counts.items():
        delta = count - before.counts.get(name, 0)
        if delta > 0:
            size = now_sizes.get(name, 0)
            size_delta = size - before_sizes.get(name, 0) if sized else 0
            rows.append(TypeGrowth(name, count, delta, size, size_delta))
    rows.sort(key=lambda r: (-r.delta, -r.size_delta, r.name))
    return rows[:top]


class GrowthTracker:
    """Named baselines and "what grew since last time", like objgraph's ``show_growth``.

    ``growth()`` without ``since`` compares with the previous ``growth()`` call. The very first call
    compares with an empty state (``since="empty"``), exactly as objgraph's first ``show_growth``:
    every class shows up with its full count, which is the useful first look; from the second call on
    only real growth is shown. A host that wants a meaningful first answer calls ``growth()`` once
    when the console starts (on the dump worker) and discards it.

    Thread-safe: one lock serialises the calls (the dump worker and the REPL may both use it); it is
    held for the census too, so two overlapping calls cannot interleave their "previous" states.
    """

    def __init__(self, *, memory_budget: int = DEFAULT_LIMIT) -> None:
        self._memory_budget = memory_budget
        self._lock = threading.Lock()
        self._baselines: dict[str, Counts] = {}  # insertion order = age; the oldest is dropped first
        self._previous: Counts | None = None

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or _BASELINE_NAME.fullmatch(name) is None:
            raise InvalidRequestError(f"baseline names match [A-Za-z0-9_.-]{{1,64}}: {name!r:.80}")

    def baseline(self, name: str = "default", *, top: int = 30, sizes: bool = True) -> Census:
        """Record the per-class counts (and sizes) under ``name``; re-using a name replaces it."""
        self._check_name(name)
        check_top(top)
        with self._lock:
            state, elapsed = take_counts(sizes, self._memory_budget)
            self._baselines.pop(name, None)
            self._baselines[name] = state
            while len(self._baselines) > MAX_BASELINES:
                del self._baselines[next(iter(self._baselines))]
        return summary(state, top, elapsed)

    def baselines(self) -> tuple[str, ...]:
        """Stored baseline names, oldest first."""
        with self._lock:
            return tuple(self._baselines)

    def growth(self, since: str | None = None, *, top: int = 30, sizes: bool = True) -> Growth:
        """Classes whose count grew since baseline ``since`` (or the previous call), most growth first."""
        if since is not None:
            self._check_name(since)
        check_top(top)
        with self._lock:
            if since is not None:
                before = self._baselines.get(since)
                if before is None:
                    raise NotFoundError(f"no baseline named {since!r}")
                label = since
            elif self._previous is None:
                before, label = Counts(0.0, {}, {}), "empty"
            else:
                before, label = self._previous, "previous"
            now, _elapsed = take_counts(sizes, self._memory_budget)
            if since is None:
                self._previous = now
        return Growth(since=label, taken_at=now.taken_at, rows=tuple(_growth_rows(now, before, top)))
