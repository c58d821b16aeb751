"""One façade over every diagnostic, shared by the HTTP routes and the REPL helpers.

It owns the long-lived pieces — growth baselines, the snapshot store, the GC pause
monitor, the one-at-a-time worker — and knows which threads are the console's own so
dumps leave them out. Methods are synchronous; expensive ones are meant to be called
through :meth:`Diagnostics.expensive`, which runs them on the dump worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from opsconsole.diagnostics import gcstats, process, threads
from opsconsole.diagnostics.allocations import tracing
from opsconsole.diagnostics.allocations.diff import HeapDiff
from opsconsole.diagnostics.allocations.snapshots import SnapshotInfo, SnapshotStore
from opsconsole.diagnostics.budget import DEFAULT_LIMIT
from opsconsole.diagnostics.heapsnapshot import document
from opsconsole.diagnostics.jobs import OneAtATime
from opsconsole.diagnostics.leaks.detector import LeakDetector
from opsconsole.diagnostics.leaks.report import LeakReport
from opsconsole.diagnostics.objects import census as census_mod
from opsconsole.diagnostics.objects import refchain
from opsconsole.diagnostics.objects.growth import Growth, GrowthTracker
from opsconsole.diagnostics.profiler import sampler

T = TypeVar("T")
# Threads whose name starts with this are the console's own (IO loop, dump worker, REPL
# sessions, samplers); dumps and root sets leave them out.
OWN_THREAD_PREFIX = "opsconsole"


def own_thread_idents() -> frozenset[int]:
    return frozenset(
        t.ident for t in threading.enumerate() if t.name.startswith(OWN_THREAD_PREFIX) and t.ident
    )


class Diagnostics:
    def __init__(
        self,
        *,
        dump_dir: Path,
        app_loops: Sequence[asyncio.AbstractEventLoop] = (),
        memory_budget: int = DEFAULT_LIMIT,
    ) -> None:
        self.app_loops = tuple(app_loops)
        self.memory_budget = memory_budget  # bytes a whole-heap walk may add (BudgetError past it)
        self.jobs = OneAtATime()
        self.growth_tracker = GrowthTracker(memory_budget=memory_budget)
        self.snapshots = SnapshotStore(dump_dir)
        self.gc_monitor = gcstats.GcPauseMonitor()
        self.leak_detector = LeakDetector()
        self._closing = threading.Event()  # cuts a running profile short at shutdown

    def close(self) -> None:
        # runs on the thread that stops the console
        self._closing.set()
        self.gc_monitor.stop()
        self.leak_detector.close()
        self.jobs.shutdown()
        self.snapshots.close()

    def expensive(
        self, what: str, fn: Callable[[], T], *, expected_seconds: float = 1.0
    ) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the dump worker; raises BusyError while another one runs."""
        return self.jobs.submit(what, fn, expected_seconds=expected_seconds)

    # -- cheap: fine on the console IO loop ------------------------------------------------

    def threads(self) -> threads.ThreadDump:
        return threads.dump_threads(self.app_loops, exclude_idents=own_thread_idents())

    def gc(self) -> gcstats.GcInfo:
        return gcstats.gc_info(self.gc_monitor if self.gc_monitor.running else None)

    def process(self) -> process.ProcessInfo:
        return process.process_info()

    def leaks(self) -> LeakReport:
        return self.leak_detector.report()

    def leaks_start(self, interval: float) -> LeakReport:
        """Start the leak detector's sampler thread; StateError if it runs already."""
        self.leak_detector.start(interval)
        return self.leak_detector.report()

    def leaks_stop(self) -> LeakReport:
        """Stop sampling (the report stays); StateError if it is not running."""
        self.leak_detector.stop()
        return self.leak_detector.report()

    def heap_status(self, top: int = 10) -> tracing.HeapStatus:
        return tracing.status(top)

    def heap_start(self, frames: int) -> tracing.HeapStatus:
        return tracing.start(frames)

    def heap_stop(self) -> tracing.HeapStatus:
        return tracing.stop()

    # -- expensive: call through expensive() -------------------------------------------------

    def census(self, top: int = 30, *, sizes: bool = True) -> census_mod.Census:
        return census_mod.census(top=top, sizes=sizes, memory_budget=self.memory_budget)

    def baseline(self, name: str = "default") -> census_mod.Census:
        return self.growth_tracker.baseline(name)

    def growth(self, since: str | None = None, top: int = 30) -> Growth:
        return self.growth_tracker.growth(since, top=top)

    def refchain(
        self, target: str | type | object, *, max_depth: int = 40, time_limit: float = 5.0
    ) -> refchain.RefChain:
        roots = refchain.SearchRoots(
            extra=tuple((f"app loop {i}", loop) for i, loop in enumerate(self.app_loops))
        )
        return refchain.refchain(
            target,
            roots=roots,
            max_depth=max_depth,
            time_limit=time_limit,
            exclude=own_thread_idents(),
            memory_budget=self.memory_budget,
        )

    def snapshot(self, name: str) -> SnapshotInfo:
        return self.snapshots.take(name)

    def snapshot_after_gc(self, name: str, *, collect: bool = False, timeout: float = 300.0) -> SnapshotInfo:
        return self.snapshots.take_after_gc(name, collect=collect, timeout=timeout)

    def diff(
        self,
        base: str,
        other: str | None = None,
        *,
        key: Literal["lineno", "traceback"] = "lineno",
        top: int = 20,
    ) -> HeapDiff:
        return self.snapshots.diff(base, other, key=key, top=top)

    def profile(self, seconds: float, *, interval: float = 0.005) -> sampler.CpuProfile:
        return sampler.sample(
            seconds, interval=interval, exclude_idents=own_thread_idents(), stop_event=self._closing
        )

    def heapsnapshot(self, *, contents: document.Contents = "redacted") -> document.HeapSnapshot:
        """The ``.heapsnapshot`` document as an iterable of bytes; the walk runs on the thread that
        iterates it (through expensive(): the dump worker), the console's own threads left out."""
        loops = tuple((f"app loop {i}", loop) for i, loop in enumerate(self.app_loops))
        return document.HeapSnapshot(
            contents=contents,
            extra_roots=loops,
            exclude_threads=own_thread_idents(),
            memory_budget=self.memory_budget,
        )

    def heapsnapshot_file(
        self, path: Path, *, contents: document.Contents = "redacted"
    ) -> document.HeapSnapshotInfo:
        """Write the ``.heapsnapshot`` to a new 0600 file (refuses to overwrite or follow a symlink)."""
        return document.write_file(path, self.heapsnapshot(contents=contents))
