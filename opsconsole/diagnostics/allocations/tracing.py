"""tracemalloc on and off, and how much it sees.

Tracing is off until an operator turns it on: it makes allocation-heavy code several times
slower, more so the more frames it keeps, so the frame count is explicit and capped. ``start``
is cheap. ``stop`` frees every trace in one C call holding the GIL, and ``status`` with
``top > 0`` takes a snapshot (GIL held throughout): on a big trace count both take long enough
to belong on the console's dump worker thread, not the IO loop.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Collection
from dataclasses import dataclass

from opsconsole import log
from opsconsole.diagnostics.allocations import diff
from opsconsole.diagnostics.allocations.diff import KeyType, Site
from opsconsole.errors import InvalidRequestError, StateError

_log = log.get("diagnostics.heap")
MAX_TRACEBACK_FRAMES = 64  # the most frames tracemalloc may keep per allocation (``start(frames)``)


@dataclass(frozen=True, slots=True)
class HeapStatus:
    tracing: bool
    frames: int  # traceback limit while tracing, 0 when off
    traced_current: int  # bytes of the blocks tracemalloc traces now
    traced_peak: int
    tracemalloc_memory: int  # tracemalloc's own bookkeeping, in bytes
    group_by: KeyType
    traces: int  # traces in the snapshot the sites come from (0: no snapshot taken)
    excluded_traces: int  # of those, the console's own and tracemalloc's
    snapshot_seconds: float  # take_snapshot + grouping
    top: tuple[Site, ...]


def start(frames: int = 1) -> HeapStatus:
    """Start tracing with ``frames`` frames per traceback (1–64).

    Already tracing with that frame count: nothing happens. With another count: StateError,
    because tracemalloc.start would silently change it — stop first, which drops the traces.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_TRACEBACK_FRAMES:
        raise InvalidRequestError(
            f"frames must be an integer from 1 to {MAX_TRACEBACK_FRAMES}, not {frames!r}"
        )
    if tracemalloc.is_tracing():
        current = tracemalloc.get_traceback_limit()
        if current != frames:
            raise StateError(
                f"tracemalloc is already tracing with {current} frame(s); stop it first to use {frames}"
            )
    else:
        tracemalloc.start(frames)
        _log.info("tracemalloc started with %d frame(s)", frames)
    return status(0)


def stop() -> HeapStatus:
    """Stop tracing; the traces are freed. Stored snapshot files are left alone. Idempotent."""
    if tracemalloc.is_tracing():
        tracemalloc.stop()
        _log.info("tracemalloc stopped")
    return status(0)


def status(
    top: int = 10,
    *,
    group_by: str = "lineno",
    exclude_prefixes: Collection[str] = diff.DEFAULT_EXCLUDE_PREFIXES,
    exclude_files: Collection[str] = diff.DEFAULT_EXCLUDE_FILES,
) -> HeapStatus:
    """Counters, and with ``top > 0`` while tracing the ``top`` largest allocation sites.

    The sites come from a fresh snapshot grouped by ``diff`` (not Snapshot.statistics,
    which is many times slower under tracing); the console's own and tracemalloc's allocations are
    left out (the defaults: opsconsole minus its host-side demo, and tracemalloc.py).
    ``top=0`` takes no snapshot and is cheap.
    """
    key = diff.check_key(group_by)
    diff.check_top(top, minimum=0)
    tracing = tracemalloc.is_tracing()
    # Read the counters before the snapshot: taking one allocates a lot, which would show
    # up as a new peak.
    current, peak = tracemalloc.get_traced_memory()
    own = tracemalloc.get_tracemalloc_memory()
    frames = tracemalloc.get_traceback_limit() if tracing else 0
    sites: tuple[Site, ...] = ()
    traces = excluded = 0
    seconds = 0.0
    if tracing and top > 0:
        t0 = time.perf_counter()
        try:
            snapshot = tracemalloc.take_snapshot()
        except RuntimeError as exc:  # stopped by another thread in between
            raise StateError("tracemalloc stopped while the snapshot was taken") from exc
        grouped = diff.group(snapshot, key, exclude_files=exclude_files, exclude_prefixes=exclude_prefixes)
        del snapshot  # the largest object here; free it before building the rows
        seconds = time.perf_counter() - t0
        sites = diff.top_sites(grouped, top)
        traces, excluded = grouped.traces + grouped.excluded_traces, grouped.excluded_traces
    return HeapStatus(tracing, frames, current, peak, own, key, traces, excluded, seconds, sites)
