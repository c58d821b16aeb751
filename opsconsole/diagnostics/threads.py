"""Thread and asyncio task dumps of the host process, read from outside like ``py-spy dump``.

Everything here runs on the console's dump worker thread (or its IO loop thread for a quick
call), never on a host thread: it only *reads* other threads' frames, which works whatever
they are doing — spinning in pure Python, sleeping, or deadlocked on a lock — because the
caller holds the GIL while it reads, and those threads either released it or were made to.

Frames of the other threads are borrowed only for the duration of one call and dropped
before returning, so no host locals are kept alive by a dump.
"""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
import types
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from opsconsole.log import get as get_logger

log = get_logger("diagnostics.threads")

# A host with runaway recursion can have thousands of frames per thread; the innermost ones
# are the interesting ones, so the dump keeps these many and counts the rest.
MAX_STACK_FRAMES = 256  # frames kept per thread stack or task await chain; the rest are counted
# asyncio.all_tasks() copies a WeakSet that the loop thread mutates; it retries internally,
# and we retry a few more times with a short pause before reporting the loop as unreadable.
_ALL_TASKS_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One frame; ``source`` is the stripped source line ('' when the file is unreadable)."""

    function: str
    file: str
    line: int
    source: str


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """A thread and its stack, innermost frame first (as py-spy prints it).

    ``name``/``daemon``/``native_id`` come from ``threading``; a thread started outside
    ``threading`` (a C extension's thread) has ``known=False`` and ``daemon``/``native_id`` None.
    """

    name: str
    ident: int
    native_id: int | None
    daemon: bool | None
    known: bool
    frames: tuple[StackFrame, ...]
    omitted_frames: int


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One asyncio task: ``state`` is 'pending', 'done' or 'cancelled'; ``frames`` is its
    await chain, innermost (the awaiting leaf) first, outermost (the task's coroutine) last."""

    name: str
    state: str
    coroutine: str
    frames: tuple[StackFrame, ...]


@dataclass(frozen=True, slots=True)
class LoopTasks:
    """The tasks of one registered event loop. ``error`` is set when they could not be read."""

    loop_id: str
    running: bool
    closed: bool
    thread_ident: int | None
    tasks: tuple[TaskInfo, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class ThreadDump:
    """All threads (main first) except ``excluded`` of the console's own, plus app loop tasks."""

    threads: tuple[ThreadInfo, ...]
    loops: tuple[LoopTasks, ...]
    excluded: int


def _frame(f: types.FrameType) -> StackFrame:
    code = f.f_code
    line = f.f_lineno or 0
    # linecache may read the file from disk on first use: fine on the dump worker thread.
    source = linecache.getline(code.co_filename, line).strip() if line else ""
    return StackFrame(function=code.co_qualname, file=code.co_filename, line=line, source=source)


def _stack(f: types.FrameType | None) -> tuple[tuple[StackFrame, ...], int]:
    """Innermost first, walking ``f_back``; at most MAX_STACK_FRAMES, the rest counted."""
    frames: list[StackFrame] = []
    omitted = 0
    while f is not None:
        if len(frames) < MAX_STACK_FRAMES:
            frames.append(_frame(f))
        else:
            omitted += 1
        f = f.f_back
    return tuple(frames), omitted


def _threads(exclude: Collection[int]) -> tuple[tuple[ThreadInfo, ...], int]:
    by_ident = {t.ident: t for t in threading.enumerate() if t.ident is not None}
    main_ident = threading.main_thread().ident
    current = sys._current_frames()
    try:
        # Main thread first, then threading's order, then threads threading does not know.
        # (sort is stable, so threading's own order survives within each group)
        order = [*by_ident, *(i for i in current if i not in by_ident)]
        order.sort(key=lambda i: (i != main_ident, i not in by_ident))
        out: list[ThreadInfo] = []
        excluded = 0
        for ident in order:
            if ident in exclude:
                excluded += 1
                continue
            frames, omitted = _stack(current.get(ident))
            t = by_ident.get(ident)
            out.append(
                ThreadInfo(
                    name=t.name if t is not None else "(unknown)",
                    ident=ident,
                    native_id=t.native_id if t is not None else None,
                    daemon=t.daemon if t is not None else None,
                    known=t is not None,
                    frames=frames,
                    omitted_frames=omitted,
                )
            )
        return tuple(out), excluded
    finally:
        # The dict holds this very frame too: drop it now rather than leave a cycle for gc.
        del current


def _await_chain(coro: object) -> tuple[StackFrame, ...]:
    """Follow ``cr_await`` from the task's coroutine down to the leaf it is suspended in.

    ``Task.get_stack()`` only returns the outermost frame of a suspended coroutine, so the
    nested ``await`` chain is walked here; it ends at a Future or another non-coroutine.
    """
    chain: list[StackFrame] = []
    obj: object | None = coro
    while obj is not None and len(chain) < MAX_STACK_FRAMES:
        frame = (
            getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        )
        if not isinstance(frame, types.FrameType):
            break
        chain.append(_frame(frame))
        obj = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )
    chain.reverse()
    return tuple(chain)


def _task(task: asyncio.Task[Any]) -> TaskInfo:
    # Only side-effect-free reads: task.exception() would mark the error as retrieved and
    # silence the host's own "exception was never retrieved" log.
    state = "cancelled" if task.cancelled() else "done" if task.done() else "pending"
    coro = task.get_coro()
    frames = _await_chain(coro)
    if not frames:
        frames = tuple(reversed([_frame(f) for f in task.get_stack()]))
    name = getattr(coro, "__qualname__", None) or type(coro).__qualname__
    return TaskInfo(name=task.get_name(), state=state, coroutine=str(name), frames=frames)


def _loop_tasks(loop: asyncio.AbstractEventLoop) -> LoopTasks:
    # BaseEventLoop remembers the thread running it; other loop implementations may not.
    thread_ident = getattr(loop, "_thread_id", None)
    tasks: set[asyncio.Task[Any]] | None = None
    error: str | None = None
    for attempt in range(_ALL_TASKS_ATTEMPTS):
        try:
            tasks = asyncio.all_tasks(loop)
            break
        except RuntimeError as e:  # "Set changed size during iteration" from the loop thread
            error = f"tasks could not be read: {e}"
            time.sleep(0.001 * (attempt + 1))
    infos: tuple[TaskInfo, ...] = ()
    if tasks is not None:
        error = None
        ordered = sorted(tasks, key=lambda t: t.get_name())
        infos = tuple(_task(t) for t in ordered)
    else:
        log.warning("could not read the tasks of loop 0x%x", id(loop))
    return LoopTasks(
        loop_id=f"0x{id(loop):x}",
        running=loop.is_running(),
        closed=loop.is_closed(),
        thread_ident=thread_ident if isinstance(thread_ident, int) else None,
        tasks=infos,
        error=error,
    )


def dump_threads(
    app_loops: Sequence[asyncio.AbstractEventLoop] = (), *, exclude_idents: Collection[int] = ()
) -> ThreadDump:
    """Stacks of every thread but ``exclude_idents`` (the console's own), and the tasks of each
    registered application loop. Runs on the dump worker thread; blocks no host thread."""
    exclude = frozenset(exclude_idents)
    threads, excluded = _threads(exclude)
    loops = tuple(_loop_tasks(loop) for loop in app_loops)
    return ThreadDump(threads=threads, loops=loops, excluded=excluded)
