"""The one path from a REPL session to its terminal: ``\\n`` → ``\\r\\n``, coalescing, recording.

Everything the operator sees goes through :class:`SessionOutput`: prompt_toolkit's rendering
(``Vt100_Output`` flushes one whole frame per ``flush``) and text written to the routed
``sys.stdout``/``sys.stderr``. One ordered buffer serves both, so a print and the prompt drawn
after it can never swap places.

Why translate: xterm.js (and an SSH channel in raw mode) has no ONLCR, so a bare ``\\n`` moves
down without returning to column 0. prompt_toolkit's renderer already emits ``\\r\\n`` for its
own line breaks and ``print_formatted_text``, but ptpython writes some bare ``\\n`` (the blank
line after a result, ``KeyboardInterrupt``) and so does every ``print()``. Existing ``\\r\\n``
pairs are kept as they are.

Coalescing: the stdout route is line-buffered like a terminal's stdout (``print(x)`` is two
writes, one sink call); the stderr route and prompt_toolkit flush at once. The sink is only ever
called on the session thread; a write from another thread (an executor job that copied the
session's context) is buffered and the flush is scheduled on the session loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from opsconsole import log
from opsconsole.repl.asciicast import CastRecorder

_log = log.get("repl.output")
# A line longer than this is passed on without waiting for its newline.
FLUSH_AT = 64 * 1024


def terminal_text(text: str) -> str:
    """``\\n`` → ``\\r\\n`` (keeping existing pairs) and valid UTF-8 (lone surrogates → ``?``)."""
    if "\n" in text:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class SessionOutput:
    """Buffered output of one session. ``write``/``flush`` from any thread; sink on the session thread.

    It also serves as the ``stdout`` of prompt_toolkit's ``Vt100_Output`` (``write``, ``flush``,
    ``encoding``), which writes one frame and flushes it.
    """

    encoding = "utf-8"

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink = sink
        self._recorder: CastRecorder | None = None
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._pending_size = 0
        self._thread_ident: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._closed = False
        self._sink_failed = False

    def record_to(self, recorder: CastRecorder) -> None:
        """Also write everything to ``recorder`` (set before the session thread starts)."""
        self._recorder = recorder

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the session thread once its loop exists: from now on the sink runs here."""
        with self._lock:
            self._thread_ident = threading.get_ident()
            self._loop = loop

    # -- the file-like side (any thread) -------------------------------------------------------

    def write(self, text: str) -> int:
        """Buffer ``text``; a newline (or a big buffer) flushes it. Returns ``len(text)``."""
        with self._lock:
            if self._closed:
                return len(text)
            self._pending.append(text)
            self._pending_size += len(text)
            due = "\n" in text or self._pending_size >= FLUSH_AT
        if due:
            self.flush()
        return len(text)

    def flush(self) -> None:
        """Hand everything buffered to the sink — now on the session thread, else scheduled there."""
        if threading.get_ident() != self._thread_ident:
            self._schedule_flush()
            return
        with self._lock:
            if not self._pending:
                return
            data = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        self._emit(terminal_text(data))

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        """Flush what is left (the session thread) and drop everything written later."""
        self.flush()
        with self._lock:
            self._closed = True
            self._pending.clear()

    # -- internals ---------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        # any thread but the session's: the session loop flushes as soon as it is free
        with self._lock:
            if self._flush_scheduled or self._loop is None or not self._pending:
                return
            self._flush_scheduled = True
            loop = self._loop
        with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
            loop.call_soon_threadsafe(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        # session loop
        with self._lock:
            self._flush_scheduled = False
        self.flush()

    def _emit(self, data: str) -> None:
        # session thread; output must never raise into the operator's print()
        if self._recorder is not None:
            self._recorder.output(data)
        if self._sink_failed:
            return
        try:
            self._sink(data)
        except Exception:
            self._sink_failed = True
            _log.exception("REPL output sink failed; further output of this session is dropped")


class Unbuffered:
    """The stderr face of a SessionOutput: every write is passed on at once."""

    def __init__(self, output: SessionOutput) -> None:
        self._output = output

    def write(self, text: str) -> int:
        written = self._output.write(text)
        self._output.flush()
        return written

    def flush(self) -> None:
        self._output.flush()
