"""Ctrl-C for a REPL session whose thread is not the main thread (no SIGINT ever reaches it).

When the operator presses Ctrl-C while a line is evaluating, :meth:`Interrupter.interrupt`
(called on the console's IO thread) first asks nicely: it schedules the eval's cancel
callback on the session loop — the SIGINT handler that ptpython or the operator's code
registered with the loop if there is one, else ``task.cancel()`` of the eval task. That ends
an eval that is awaiting (``await asyncio.sleep(100)``).

An eval that never yields (``while True: pass``) keeps the loop from running that callback, so
after :data:`GRACE` seconds, if the same eval is still running, an asynchronous
:class:`ReplInterrupt` is raised in the session thread with ``PyThreadState_SetAsyncExc``. It
is only sent while the thread is executing code — not while it idles in the loop's selector,
where it would surface in asyncio's own machinery (then the cancel is simply sent again).

Limits: CPython delivers it between bytecodes, so a call blocked in C (``time.sleep``,
``lock.acquire()``, a socket read) is not interrupted until it returns; code that catches
``Exception`` may swallow it (press Ctrl-C again); a thread the operator started is never
interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import sys
import threading
from collections.abc import Callable

GRACE = 0.3


class ReplInterrupt(Exception):
    """Ctrl-C, raised inside an eval that would not stop.

    Deliberately an ``Exception``, not a ``KeyboardInterrupt``/``BaseException``: asyncio
    re-raises BaseExceptions out of the event loop, which would end the whole session.
    """


def _set_async_exc(thread_ident: int, exc: type[BaseException] | None) -> None:
    # Any thread. ``None`` clears a pending one.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_ident), ctypes.py_object(exc) if exc is not None else ctypes.py_object()
    )


def _idle_in_selector(thread_ident: int) -> bool:
    # Any thread. The innermost Python frame of a loop waiting for events is selectors.py.
    frame = sys._current_frames().get(thread_ident)
    try:
        return frame is None or frame.f_code.co_filename.endswith("selectors.py")
    finally:
        del frame


class Interrupter:
    """Tracks the one running eval of a session and interrupts it on request."""

    def __init__(self, name: str, *, grace: float = GRACE) -> None:
        self._name = name
        self._grace = grace
        self._lock = threading.Lock()
        self._generation = 0
        self._active = False
        self._requested = False
        self._thread_ident = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel: Callable[[], object] | None = None
        self._sigint: Callable[[], Callable[[], object] | None] = lambda: None

    def use_sigint_handler(self, lookup: Callable[[], Callable[[], object] | None]) -> None:
        """Where to find a SIGINT handler captured by the session loop (preferred over cancel)."""
        self._sigint = lookup

    # -- the session thread ----------------------------------------------------------------

    def begin(self, loop: asyncio.AbstractEventLoop, cancel: Callable[[], object]) -> None:
        """An eval starts on the calling (session) thread; ``cancel`` stops it if it awaits."""
        with self._lock:
            self._generation += 1
            self._active = True
            self._requested = False
            self._thread_ident = threading.get_ident()
            self._loop = loop
            self._cancel = cancel

    def end(self) -> bool:
        """The eval is over; clears a pending async exception. Returns whether Ctrl-C was pressed.

        A ReplInterrupt delivered while this runs is absorbed: it was meant for the eval.
        """
        while True:
            try:
                with self._lock:
                    if self._active:
                        self._active = False
                        self._cancel = None
                        _set_async_exc(self._thread_ident, None)
                    return self._requested
            except ReplInterrupt:
                continue

    # -- any thread ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._active

    @property
    def requested(self) -> bool:
        """Whether Ctrl-C was pressed during the current (or last) eval."""
        return self._requested

    def interrupt(self) -> bool:
        """Ctrl-C: cancel the running eval, escalating after the grace period. False if none runs."""
        with self._lock:
            if not self._active:
                return False
            self._requested = True
            generation = self._generation
        self._send_cancel(generation)
        timer = threading.Timer(self._grace, self._escalate, args=(generation,))
        timer.name = f"{self._name}-interrupt"
        timer.daemon = True
        timer.start()
        return True

    def _send_cancel(self, generation: int) -> None:
        with self._lock:
            if not self._active or self._generation != generation or self._loop is None:
                return
            callback = self._sigint() or self._cancel
            loop = self._loop
        if callback is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback)

    def _escalate(self, generation: int) -> None:
        # the timer thread
        with self._lock:
            if not self._active or self._generation != generation:
                return
            if not _idle_in_selector(self._thread_ident):
                _set_async_exc(self._thread_ident, ReplInterrupt)
                return
        self._send_cancel(generation)
