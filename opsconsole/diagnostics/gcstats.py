"""Garbage collector state, and an opt-in monitor of the host's collection pauses.

``gc_info`` only reads counters (it never collects) and is cheap enough for any console
thread. ``GcPauseMonitor``'s callback, by contrast, runs *inside every collection of the
host*, on whichever host thread triggered it, so it is a handful of integer operations on a
preallocated list: no locks (a collection can start while another thread holds one), no
containers created, no logging.
"""

from __future__ import annotations

import gc
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Upper bounds of the pause buckets; a last, open bucket takes everything from 250 ms up.
BUCKET_BOUNDS_MS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250)
_BOUNDS_NS = tuple(int(b * 1_000_000) for b in BUCKET_BOUNDS_MS)
_GENERATIONS = 3
# Layout of the monitor's flat counter list: [seq, gen0..., gen1..., gen2...] where each
# generation is [collections, total_ns, max_ns, bucket0, ..., bucketN].
_HEAD = 3
_STRIDE = _HEAD + len(_BOUNDS_NS) + 1
_MAX_GARBAGE_TYPES = 20


@dataclass(frozen=True, slots=True)
class PauseBucket:
    """Pauses in ``[from_ms, below_ms)``; ``below_ms`` is None for the open last bucket."""

    from_ms: float
    below_ms: float | None
    count: int


@dataclass(frozen=True, slots=True)
class GenerationPauses:
    generation: int
    collections: int
    total_ms: float
    max_ms: float
    buckets: tuple[PauseBucket, ...]


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Since interpreter start, from ``gc.get_stats()``."""

    generation: int
    collections: int
    collected: int
    uncollectable: int


@dataclass(frozen=True, slots=True)
class GcInfo:
    """``counts``/``thresholds`` are per generation as ``gc.get_count()``/``get_threshold()``
    give them; ``pauses`` is empty unless a pause monitor is running (``pauses_since`` is when
    it started, epoch seconds)."""

    enabled: bool
    counts: tuple[int, ...]
    thresholds: tuple[int, ...]
    generations: tuple[GenerationStats, ...]
    garbage: int
    garbage_types: tuple[str, ...]
    frozen: int
    pause_monitor: bool
    pauses_since: float | None
    pauses: tuple[GenerationPauses, ...]


class GcPauseMonitor:
    """Histograms of collection pauses per generation, measured from ``gc.callbacks``.

    ``start``/``stop`` are called from console threads (IO loop or dump worker) and are
    idempotent; the callback is in ``gc.callbacks`` only between them. ``start`` begins a
    fresh window; ``snapshot`` may be called from any thread at any time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # serialises start/stop; the callback never takes it
        self._data = [0] * (1 + _GENERATIONS * _STRIDE)
        self._t0 = 0
        self._installed: Callable[[str, dict[str, Any]], None] | None = None
        self.started_at: float | None = None

    @property
    def running(self) -> bool:
        return self._installed is not None

    def start(self) -> None:
        with self._lock:
            if self._installed is not None:
                return
            self._data = [0] * (1 + _GENERATIONS * _STRIDE)
            self._t0 = 0
            self.started_at = time.time()
            # Keep the very bound-method object we append so stop() removes exactly it.
            self._installed = self._on_gc
            gc.callbacks.append(self._installed)

    def stop(self) -> None:
        with self._lock:
            cb, self._installed = self._installed, None
            if cb is not None:
                # Identity, not ==: another monitor's bound method must never be removed.
                for i, other in enumerate(gc.callbacks):
                    if other is cb:
                        del gc.callbacks[i]
                        break

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the host's collection, on the host thread that triggered it. The
        # interpreter runs one collection at a time, so start/stop pairs never interleave.
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        t0 = self._t0
        if not t0:  # started mid-collection: no start time for this one
            return
        elapsed = time.perf_counter_ns() - t0
        self._t0 = 0
        gen = info["generation"]
        if not 0 <= gen < _GENERATIONS:
            return
        data = self._data
        base = 1 + gen * _STRIDE
        # Odd sequence number = update in progress (a seqlock: snapshot() retries on it).
        data[0] += 1
        data[base] += 1
        data[base + 1] += elapsed
        data[base + 2] = max(data[base + 2], elapsed)
        data[base + _HEAD + bisect_right(_BOUNDS_NS, elapsed)] += 1
        data[0] += 1

    def _consistent_copy(self) -> list[int]:
        for _ in range(100):
            copy = self._data[:]  # one C-level copy: atomic under the GIL
            if copy[0] % 2 == 0:
                return copy
            time.sleep(0.0005)  # the collecting thread was preempted mid-update: let it finish
        return copy

    def snapshot(self) -> tuple[GenerationPauses, ...]:
        data = self._consistent_copy()
        lows = (0.0, *BUCKET_BOUNDS_MS)
        highs: tuple[float | None, ...] = (*BUCKET_BOUNDS_MS, None)
        out = []
        for gen in range(_GENERATIONS):
            base = 1 + gen * _STRIDE
            counts = data[base + _HEAD : base + _STRIDE]
            out.append(
                GenerationPauses(
                    generation=gen,
                    collections=data[base],
                    total_ms=data[base + 1] / 1e6,
                    max_ms=data[base + 2] / 1e6,
                    buckets=tuple(
                        PauseBucket(from_ms=lo, below_ms=hi, count=c)
                        for lo, hi, c in zip(lows, highs, counts, strict=True)
                    ),
                )
            )
        return tuple(out)


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def gc_info(monitor: GcPauseMonitor | None = None) -> GcInfo:
    """The collector's counters and, if ``monitor`` runs, its pause histograms. Never collects."""
    stats = gc.get_stats()
    garbage = gc.garbage
    sample = garbage[:_MAX_GARBAGE_TYPES]  # a copy, so the host may mutate the list meanwhile
    running = monitor is not None and monitor.running
    return GcInfo(
        enabled=gc.isenabled(),
        counts=tuple(gc.get_count()),
        thresholds=tuple(gc.get_threshold()),
        generations=tuple(
            GenerationStats(
                generation=i,
                collections=int(s.get("collections", 0)),
                collected=int(s.get("collected", 0)),
                uncollectable=int(s.get("uncollectable", 0)),
            )
            for i, s in enumerate(stats)
        ),
        garbage=len(garbage),
        garbage_types=tuple(_type_name(o) for o in sample),
        frozen=gc.get_freeze_count(),
        pause_monitor=running,
        pauses_since=monitor.started_at if monitor is not None and running else None,
        pauses=monitor.snapshot() if monitor is not None and running else (),
    )
