"""``ops``: the diagnostics an operator calls from the REPL, the same ones the HTTP API serves.

Every helper goes through the one ``Diagnostics`` façade, prints the result as the CLI and
``?format=text`` show it, and returns the result dataclass for further work. The REPL does
not echo a result a helper has just printed (see ``display``), so ``ops.census()`` shows one
table, while ``c = ops.census()`` shows it too and keeps the data in ``c``.

Helpers run on the calling thread — the session thread in the REPL. Cheap ones (threads,
gc, process, heap_start) run right there; expensive ones go to the console's one dump worker
through ``diag.expensive`` exactly like the HTTP routes, so a REPL census and an HTTP heap
dump never run together (the second gets BusyError, whose message says what is running).
Waiting for the worker polls, so Ctrl-C stops the wait; the dump itself finishes on the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from opsconsole.diagnostics.allocations.diff import HeapDiff
from opsconsole.diagnostics.allocations.snapshots import SnapshotInfo
from opsconsole.diagnostics.allocations.tracing import HeapStatus
from opsconsole.diagnostics.gcstats import GcInfo
from opsconsole.diagnostics.heapsnapshot.document import Contents, HeapSnapshotInfo
from opsconsole.diagnostics.leaks.report import LeakReport
from opsconsole.diagnostics.objects.census import Census
from opsconsole.diagnostics.objects.growth import Growth
from opsconsole.diagnostics.objects.refchain import RefChain
from opsconsole.diagnostics.process import ProcessInfo
from opsconsole.diagnostics.profiler.sampler import CpuProfile
from opsconsole.diagnostics.service import Diagnostics, own_thread_idents
from opsconsole.diagnostics.threads import ThreadDump, dump_threads
from opsconsole.errors import StateError
from opsconsole.repl import display
from opsconsole.repl.display import as_text
from opsconsole.repl.interrupt import ReplInterrupt

T = TypeVar("T")
_POLL = 0.1  # seconds between checks while waiting, so an async Ctrl-C is delivered

# The order ops.help() lists them in.
HELPERS = (
    "help",
    "threads",
    "tasks",
    "gc",
    "process",
    "census",
    "baseline",
    "growth",
    "refchain",
    "heap_start",
    "top",
    "snapshot",
    "diff",
    "heap_stop",
    "profile",
    "heapsnapshot",
    "leaks",
    "leaks_start",
    "leaks_stop",
    "run",
)


def _wait(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    # Future.result() blocks in C, where Ctrl-C's async exception cannot land; poll instead.
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
        try:
            return future.result(step)
        except concurrent.futures.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise


class Ops:
    """Diagnostics helpers for the REPL; ``ops.help()`` lists them."""

    def __init__(self, diag: Diagnostics, *, app_loop: asyncio.AbstractEventLoop | None) -> None:
        self._diag = diag
        self._app_loop = app_loop

    def __repr__(self) -> str:
        return "<ops: diagnostics helpers — call ops.help() for the list>"

    def _show(self, result: T) -> T:
        text = as_text(result) or repr(result)
        print(text if text.endswith("\n") else text + "\n", end="")
        display.mark_shown(result)
        return result

    def _expensive(self, what: str, fn: Callable[[], T], *, expected_seconds: float = 1.0) -> T:
        return self._show(_wait(self._diag.expensive(what, fn, expected_seconds=expected_seconds)))

    # -- the helpers -----------------------------------------------------------------------------

    def help(self) -> None:
        """List the helpers with what each one does."""
        rows = []
        for name in HELPERS:
            fn = getattr(self, name)
            params = ", ".join(
                p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                for p in inspect.signature(fn).parameters.values()
            )
            doc = (inspect.getdoc(fn) or "").splitlines()
            what = (doc[0] if doc else "").replace("``", "")
            rows.append((f"ops.{name}({params})", what))
        width = max(len(call) for call, _ in rows)
        lines = [f"{call:<{width}}  {what}" for call, what in rows]
        lines.append("(*) runs on the console's dump worker: one such dump at a time, HTTP ones included")
        print("\n".join(lines))

    def threads(self) -> ThreadDump:
        """Every host thread's stack (not the console's own) and the app loop's tasks."""
        return self._show(self._diag.threads())

    def tasks(self) -> ThreadDump:
        """The asyncio tasks of the app loop, each with its await chain."""
        loops = self._diag.app_loops or (() if self._app_loop is None else (self._app_loop,))
        if not loops:
            raise StateError("no app loop is registered with the console, so there are no tasks to show")
        dump = dump_threads(loops, exclude_idents=own_thread_idents())
        return self._show(ThreadDump(threads=(), loops=dump.loops, excluded=0))

    def gc(self) -> GcInfo:
        """Garbage collector counters, thresholds and pause times."""
        return self._show(self._diag.gc())

    def process(self) -> ProcessInfo:
        """Memory, CPU, file descriptors and threads of the process."""
        return self._show(self._diag.process())

    def census(self, top: int = 30) -> Census:
        """Live objects per class, the ``top`` most numerous. (*)"""
        return self._expensive("census", lambda: self._diag.census(top))

    def baseline(self, name: str = "default") -> Census:
        """Remember the per-class counts now as baseline ``name``, for growth(). (*)"""
        return self._expensive("baseline", lambda: self._diag.baseline(name))

    def growth(self, since: str | None = None) -> Growth:
        """Classes whose count grew since baseline ``since`` (or the previous call). (*)"""
        return self._expensive("growth", lambda: self._diag.growth(since))

    def refchain(self, obj_or_type: object) -> RefChain:
        """Why is it alive: a reference chain to an object, a class or a 'module.Class'. (*)"""
        return self._expensive("refchain", lambda: self._diag.refchain(obj_or_type))

    def heap_start(self, frames: int = 1) -> HeapStatus:
        """Start tracemalloc with ``frames`` frames per allocation (slows the host while on)."""
        return self._show(self._diag.heap_start(frames))

    def top(self, n: int = 10) -> HeapStatus:
        """tracemalloc's ``n`` biggest allocation sites now. (*)"""
        return self._expensive("heap status", lambda: self._diag.heap_status(n))

    def snapshot(self, name: str, after_gc: bool = False) -> SnapshotInfo:
        """Store a tracemalloc snapshot; after_gc=True waits for the next full collection. (*)"""
        if after_gc:
            return self._show(self._after_gc(name))
        return self._expensive("snapshot", lambda: self._diag.snapshot(name))

    def _after_gc(self, name: str) -> SnapshotInfo:
        # The wait for the host's next full collection can take minutes and blocks in C, so it
        # runs on its own thread (as the HTTP route does) and this one polls: Ctrl-C stops the
        # waiting, not the snapshot, which stays pending like an HTTP 202 one.
        future: concurrent.futures.Future[SnapshotInfo] = concurrent.futures.Future()

        def work() -> None:
            # its own opsconsole-aftergc thread
            try:
                future.set_result(self._diag.snapshot_after_gc(name))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, name="opsconsole-aftergc", daemon=True).start()
        try:
            return _wait(future)
        except (ReplInterrupt, KeyboardInterrupt):
            print(f"stopped waiting; snapshot {name!r} is still taken after the next full collection")
            raise

    def diff(self, base: str, other: str | None = None) -> HeapDiff:
        """What grew between snapshot ``base`` and ``other`` (default: now). (*)"""
        return self._expensive("diff", lambda: self._diag.diff(base, other))

    def heap_stop(self) -> HeapStatus:
        """Stop tracemalloc and free its traces. (*)"""
        return self._expensive("heap stop", self._diag.heap_stop)

    def profile(self, seconds: float = 5.0) -> CpuProfile:
        """Sample every host thread for ``seconds``: where does the time go. (*)"""
        return self._expensive("profile", lambda: self._diag.profile(seconds), expected_seconds=seconds)

    def heapsnapshot(self, path: str | Path, contents: Contents = "redacted") -> HeapSnapshotInfo:
        """Write the heap to a new 0600 ``.heapsnapshot`` file for Chrome DevTools (Memory → Load). (*)

        str/bytes contents are redacted unless ``contents="full"`` (secrets: the REPL line is audited)."""
        if contents not in ("redacted", "full"):
            raise ValueError('contents must be "redacted" or "full"')
        dest = Path(path)

        def write() -> HeapSnapshotInfo:  # on the dump worker
            return self._diag.heapsnapshot_file(dest, contents=contents)

        return self._expensive("heapsnapshot", write, expected_seconds=30.0)

    def leaks(self) -> LeakReport:
        """The leak detector's verdict and growth per class (start it with leaks_start)."""
        return self._show(self._diag.leaks())

    def leaks_start(self, interval: float = 30.0) -> LeakReport:
        """Start the leak detector, sampling every ``interval`` seconds (30 s: < 1 % CPU)."""
        return self._show(self._diag.leaks_start(interval))

    def leaks_stop(self) -> LeakReport:
        """Stop the leak detector; its report stays until the next start."""
        return self._show(self._diag.leaks_stop())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the app's event loop; its result, or TimeoutError after ``timeout``."""
        if not inspect.iscoroutine(coro):
            raise TypeError(f"ops.run() takes a coroutine, e.g. ops.run(fetch(1)), not {type(coro).__name__}")
        loop = self._app_loop
        if loop is None or loop.is_closed():
            coro.close()  # never awaited by design: no "never awaited" warning
            raise StateError(
                "ops.run needs the app's event loop, and the console has none: start the console "
                "from inside the running loop or pass app_loop= to opsconsole.start()"
            )
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return _wait(future, timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"the app loop did not finish the coroutine within {timeout:g} s and it was cancelled; "
                "the loop may be stuck — ops.threads() shows what its thread is doing"
            ) from None
        except BaseException:
            future.cancel()  # Ctrl-C: do not leave it running on the app loop
            raise
