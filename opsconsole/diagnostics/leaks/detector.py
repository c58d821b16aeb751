"""The leak detector: a sampler thread that watches memory grow and says whether it leaks.

Off until started (the ``leak_interval`` setting, ``POST /ops/leaks/start`` or
``ops.leaks_start()``). Every ``interval`` seconds its thread, ``opsconsole-leaks``, takes:

* RSS — one read of ``/proc/self/statm`` (microseconds);
* live counts of the classes (``objects.census``: it walks ``gc.get_objects()`` in
  chunks so host threads keep running). Every ``SIZED_EVERY``-th census also sums shallow
  sizes (dearer than counting) to turn objects/min into bytes/min;
* tracemalloc's traced total, only when an operator turned tracing on (a counter read), and
  then every ``SITES_EVERY``-th sample a snapshot grouped by line, for the allocation sites
  behind the growth. The default signals never need tracemalloc: it slows allocation-heavy
  code several times over.

Memory is bounded: ``history`` samples per series, at most ``MAX_TYPES`` classes tracked
(the ones that grew most since the run started; a class that grows faster takes the slot of
the one that grew least), ``MAX_SITE_SNAPSHOTS`` site tables of ``SITES_KEPT`` rows. The
detector does not count itself: its series are ``array`` objects (the GC tracks them, so
each census's ``array.array`` count is lowered by the run's own), its site tables are
str → int dicts (which the GC does not track), and everything a sample or a report
allocates is gone before the next census.
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
import tracemalloc
from array import array
from collections import deque

from opsconsole import log
from opsconsole.diagnostics import process
from opsconsole.diagnostics.allocations import diff
from opsconsole.diagnostics.leaks.report import LeakReport, RunCopy, build
from opsconsole.diagnostics.objects import census as census_mod
from opsconsole.errors import InvalidRequestError, StateError

_log = log.get("diagnostics.leaks")
DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 1.0
MAX_INTERVAL = 3600.0
HISTORY = 720  # samples: 6 h at the default interval
MAX_TYPES = 32
MAX_BASELINE = 4096  # class names remembered with their first count
SIZED_EVERY = 10
SITES_EVERY = 5
MAX_SITE_SNAPSHOTS = 8
SITES_KEPT = 500
THREAD_NAME = "opsconsole-leaks"
_NAN = math.nan
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> float:
    """Resident set size now: one small read on Linux, the portable process facts elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return float(int(fh.read().split()[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        rss = process.process_info().rss_bytes
        return _NAN if rss is None else float(rss)


def check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) or math.isnan(interval):
        raise InvalidRequestError(f"interval must be a number of seconds, not {interval!r}")
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidRequestError(
            f"interval must be between {MIN_INTERVAL:g} and {MAX_INTERVAL:g} seconds, not {interval:g}"
        )
    return float(interval)


class _Run:
    """One run's history. ``sample`` runs on the sampler thread (or a test's); ``copy`` on any."""

    def __init__(self, interval: float, history: int) -> None:
        self.interval = interval
        self.capacity = history
        self.started_at = time.time()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.taken = 0  # samples ever taken in this run
        self.seconds = 0.0  # wall time spent sampling
        self.last_sized = 0  # the first census needs no sizes: nothing is tracked yet
        self.census_complete = True
        self.t = array("d")
        self.rss = array("d")
        self.traced = array("d")
        self.types: dict[str, array[float]] = {}
        self.baseline: dict[str, int] = {}
        self.mean_size: dict[str, float] = {}
        # Two deques, not one of (time, table) tuples: tuples holding a dict are GC-tracked.
        self.site_times: deque[float] = deque(maxlen=MAX_SITE_SNAPSHOTS)
        self.site_sizes: deque[dict[str, int]] = deque(maxlen=MAX_SITE_SNAPSHOTS)

    def _want_sizes(self) -> bool:
        """Every ``SIZED_EVERY``-th census sums sizes; sooner (at most every 3rd) while a tracked
        class has no size yet."""
        if self.taken - self.last_sized >= SIZED_EVERY:
            return True
        unsized = any(name not in self.mean_size for name in self.types)
        return unsized and self.taken - self.last_sized >= 3

    def sample(self) -> None:
        started = time.perf_counter()
        now = time.time()
        # Before the census, whose object list (8 bytes an object) would count as RSS.
        rss = rss_bytes()
        tracing = tracemalloc.is_tracing()
        traced = float(tracemalloc.get_traced_memory()[0]) if tracing else _NAN
        sized = self._want_sizes()
        own_arrays = 3 + len(self.types)  # only this thread changes the tracked set
        c = census_mod.census(top=census_mod.MAX_TOP, sizes=sized)
        sites = _site_sizes() if tracing and self.taken % SITES_EVERY == 0 else None
        with self.lock:
            self.t.append(now)
            self.rss.append(rss)
            self.traced.append(traced)
            self._add_counts(c, sized, own_arrays)
            if sites is not None:
                self.site_times.append(now)
                self.site_sizes.append(sites)
            self._trim()
            self.taken += 1
            self.seconds += time.perf_counter() - started

    def _add_counts(self, c: census_mod.Census, sized: bool, own_arrays: int) -> None:
        counts = {s.name: s.count for s in c.types}
        if "array.array" in counts:
            counts["array.array"] = max(0, counts["array.array"] - own_arrays)
        first = self.taken == 0
        if first:
            self.census_complete = c.distinct_types <= len(c.types)
        for name, n in counts.items():
            if name not in self.baseline and len(self.baseline) < MAX_BASELINE:
                # A class first seen later is new (0) when the first census saw every class.
                self.baseline[name] = n if first or not self.census_complete else 0
        self._admit(counts)
        absent = 0.0 if c.distinct_types <= len(c.types) else _NAN
        for name, series in self.types.items():
            series.append(float(counts[name]) if name in counts else absent)
        if sized:
            self.last_sized = self.taken
            for s in c.types:
                if s.name in self.types:
                    self.mean_size[s.name] = s.size / s.count if s.count else 0.0
        # Sizes only for what is tracked: the dict stays as small as the tracked set.
        for name in [n for n in self.mean_size if n not in self.types]:
            del self.mean_size[name]

    def _admit(self, counts: dict[str, int]) -> None:
        """Track the classes that grew most since the run started (the newest sample excluded)."""
        score = {n: c - self.baseline.get(n, c) for n, c in counts.items()}
        growing = sorted((n for n, s in score.items() if s > 0), key=lambda n: -score[n])[:MAX_TYPES]
        for name in growing:
            if name in self.types:
                continue
            if len(self.types) >= MAX_TYPES:
                weakest = min(self.types, key=lambda n: score.get(n, 0))
                # Twice the growth to take a slot: two close rivals must not swap every sample.
                if score[name] <= 2 * max(score.get(weakest, 0), 0):
                    continue
                del self.types[weakest]
            self.types[name] = array("d", [_NAN]) * (len(self.t) - 1)

    def _trim(self) -> None:
        extra = len(self.t) - self.capacity
        if extra > 0:
            for series in (self.t, self.rss, self.traced, *self.types.values()):
                del series[:extra]

    def copy(self, running: bool) -> RunCopy:
        with self.lock:
            return RunCopy(
                running=running,
                interval=self.interval,
                started_at=self.started_at,
                t=self.t.tolist(),
                rss=self.rss.tolist(),
                traced=self.traced.tolist(),
                types={n: s.tolist() for n, s in self.types.items()},
                mean_size=dict(self.mean_size),
                sites=list(zip(self.site_times, self.site_sizes, strict=True)),
                sample_seconds=self.seconds / self.taken if self.taken else 0.0,
            )


def _site_sizes() -> dict[str, int] | None:
    """The traced bytes of the ``SITES_KEPT`` largest allocation lines, the console's own left out."""
    try:
        snapshot = tracemalloc.take_snapshot()
    except RuntimeError:  # tracing stopped meanwhile
        return None
    grouped = diff.group(snapshot, "lineno")
    del snapshot
    top = heapq.nlargest(SITES_KEPT, grouped.stats.items(), key=lambda kv: kv[1][0])
    # "file:line" keys: a dict of str → int is not GC-tracked, so it never shows in a census.
    return {f"{key[0][0]}:{key[0][1]}" if key else "<unknown>:0": size for key, (size, _n) in top}


class LeakDetector:
    """Start, stop and report. Thread-safe; start/stop are cheap (fine on the IO loop)."""

    def __init__(self, *, history: int = HISTORY) -> None:
        self._history = history
        self._lock = threading.Lock()
        self._run: _Run | None = None  # the current or last run: its report survives a stop
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        run = self._run
        return run is not None and not run.stop.is_set()

    def start(self, interval: float = DEFAULT_INTERVAL) -> None:
        """Start a new run (a fresh history) sampling every ``interval`` seconds."""
        interval = check_interval(interval)
        with self._lock:
            if self.running:
                assert self._run is not None
                raise StateError(
                    f"the leak detector is already running every {self._run.interval:g} s; stop it first"
                )
            run = self._run = _Run(interval, self._history)
            self._thread = threading.Thread(target=self._loop, args=(run,), name=THREAD_NAME, daemon=True)
            self._thread.start()
        _log.info("leak detector started, every %g s", interval)

    def stop(self, *, wait: float = 0.0) -> None:
        """Stop sampling; the history stays for the report. ``wait``: join the thread that long."""
        with self._lock:
            if not self.running:
                raise StateError("the leak detector is not running")
            assert self._run is not None
            self._run.stop.set()
            thread = self._thread
        _log.info("leak detector stopped")
        if wait > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    def close(self) -> None:
        # runs on the thread that stops the console
        if self.running:
            self.stop(wait=5.0)

    def sample(self) -> None:
        """Take one sample now on this thread (tests, or a caller with its own schedule)."""
        with self._lock:
            if self._run is None:
                self._run = _Run(0.0, self._history)
                self._run.stop.set()  # sampled by hand: no thread to stop
            run = self._run
        run.sample()

    def report(self) -> LeakReport:
        """The verdict and rates of the current (or last) run; cheap, any thread."""
        run = self._run
        if run is None:
            return build(RunCopy(False, 0.0, None, [], [], [], {}, {}, [], 0.0))
        return build(run.copy(running=not run.stop.is_set()))

    @staticmethod
    def _loop(run: _Run) -> None:
        # runs on the opsconsole-leaks thread until the run is stopped
        next_at = time.monotonic()
        while not run.stop.is_set():
            try:
                run.sample()
            except Exception:  # a failing sample must never end the host's process or the run
                _log.exception("leak detector sample failed")
            next_at += run.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a long census): skip, never burst
                next_at, delay = time.monotonic(), 0.0
            run.stop.wait(delay)
